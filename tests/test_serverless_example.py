"""examples/serverless: the checkout workflow served with uvicorn, invoked by `durable server`,
started through AWS's Invoke API and through `durable start`, approved with `durable callback`,
as the README shows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.apps.serverless_kit import (
    DURABLE,
    callback_id,
    lambda_client,
    register,
    start_function_host,
    start_server,
    wait_status,
)
from tests.kit import ROOT, stopping

ORDER = {"id": "17", "sku": "book", "quantity": 1, "amount": 25}


def durable(*args: str) -> str:
    done = subprocess.run([DURABLE, *args], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    return done.stdout


def test_checkout_runs_as_a_served_function(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/durable.db"
    server = start_server(tmp_path, db)
    host = start_function_host(tmp_path, "examples.serverless.app:app", server.url)
    with stopping(server, host):
        register(db, "checkout", f"{host.url}/checkout")
        client = lambda_client(server.url)
        arn = client.invoke(FunctionName="checkout", InvocationType="Event",
                            DurableExecutionName="order-17",
                            Payload=json.dumps(ORDER))["DurableExecutionArn"]
        durable("callback", "succeed", callback_id(client, arn), "--payload", '"approve"',
                "--db", db)
        done = wait_status(client, arn, 60)
        assert done["Status"] == "SUCCEEDED", done
        assert json.loads(done["Result"])["payment"] == "charge-17-25"

        run_id = durable("start", "examples/serverless/app.py:checkout", "--input",
                         json.dumps({**ORDER, "id": "18"}), "--db", db).strip()
        arn18 = arn.rsplit("/", 3)[0] + f"/durable-execution/{run_id}/{run_id}"
        durable("callback", "succeed", callback_id(client, arn18), "--payload", '"reject"',
                "--db", db)
        result = json.loads(durable("result", run_id, "--wait", "--json", "--db", db))
        assert "rejected" in json.dumps(result)
