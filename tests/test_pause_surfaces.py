"""Pause, edit and resume from the command line (both stores) and over the HTTP API: the
same run goes on with the edited value; bad input is exit code 2 / a 4xx that says why."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

import durable
from durable import Context, workflow
from tests.kit import DURABLE, wait_until
from tests.serverkit import Server
from tests.test_pause_edit import events, serving


@workflow(name="surfaces_price")
async def price(ctx: Context) -> int:
    value = await ctx.step(lambda: 10, name="price")
    await ctx.wait_for_signal("go")
    return int(value) * 2


def durable_cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DURABLE, *args, "--db", db], capture_output=True, text=True,
                          timeout=60)


def test_the_cli_pauses_edits_and_resumes_the_same_run(any_db: str) -> None:
    client = durable.Client(any_db)
    with serving(any_db, price):
        run_id = client.start(price).run_id
        wait_until(lambda: "InvocationCompleted" in events(client, run_id), "it waits")

        refused = {args: durable_cli(any_db, *args) for args in [
            ("pause", "no-such-run"), ("resume", run_id), ("edit", run_id, "price",
                                                          "--result", "1")]}
        for args, done in refused.items():
            assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done)
        assert "no run with id 'no-such-run'" in refused[("pause", "no-such-run")].stderr
        assert "neither paused nor parked" in refused[("resume", run_id)].stderr
        assert "pause it first" in refused[("edit", run_id, "price", "--result", "1")].stderr

        paused = durable_cli(any_db, "pause", run_id, "--json")
        assert paused.returncode == 0 and json.loads(paused.stdout)["status"] == "PAUSED"
        for bad in (("edit", run_id, "price"), ("edit", run_id, "nope", "--result", "1"),
                    ("edit", run_id, "price", "--result", "{not json")):
            done = durable_cli(any_db, *bad)
            assert done.returncode == 2 and "Traceback" not in done.stderr, (bad, done)
        edited = durable_cli(any_db, "edit", run_id, "price", "--result", "21", "--json")
        assert edited.returncode == 0, edited.stderr
        assert json.loads(edited.stdout)["status"] == "SUCCEEDED"
        shown = durable_cli(any_db, "show", run_id)
        assert "paused by cli" in shown.stdout and "edited by cli" in shown.stdout
        assert durable_cli(any_db, "resume", run_id).returncode == 0
        client.signal(run_id, "go")
        assert client.result(run_id, 30) == 42
    client.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("pause-api")) as s:
        yield s


def test_the_api_pauses_edits_and_resumes_with_4xx_for_wrong_state(server: Server) -> None:
    with server.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "approval",
                                             "input": {"order_id": "Q-1", "amount": 3}}
                          ).json()["run_id"]
        wait_until(lambda: api.get(f"/api/runs/{run_id}").json()["pending"], "it waits")
        base = f"/api/runs/{run_id}"

        def code(response: httpx.Response) -> tuple[int, str]:
            return response.status_code, response.json()["error"]["code"]
        assert code(api.post("/api/runs/nope/pause")) == (404, "run_not_found")
        assert code(api.post(f"{base}/resume")) == (409, "wrong_run_state")
        assert code(api.post(f"{base}/operations/reserve/succeed", json={"result": 1})) \
            == (409, "wrong_run_state")
        paused = api.post(f"{base}/pause")
        assert paused.status_code == 200 and paused.json()["status"] == "PAUSED"
        assert api.get("/api/runs", params={"status": "PAUSED"}).json()["runs"][0]["run_id"] \
            == run_id
        assert code(api.post(f"{base}/operations/nope/succeed", json={"result": 1})) \
            == (400, "bad_request")
        failed = api.post(f"{base}/operations/reserve/fail",
                          json={"message": "out of stock", "type": "Stock"})
        assert failed.status_code == 200 and failed.json()["operation"]["status"] == "FAILED"
        edited = api.post(f"{base}/operations/reserve/succeed", json={"result": "by hand"})
        assert edited.json()["operation"]["result"] == "by hand"
        history = api.get(f"{base}/history").json()["events"]
        edits = [e for e in history if e["type"] == "OperationEdited"]
        assert [e["details"]["by"] for e in edits] == ["anonymous", "anonymous"]
        assert api.post(f"{base}/resume").json()["status"] == "RUNNING"
        api.post(f"{base}/signal", json={"name": "approve", "payload": "api"})
        outcome = api.get(f"{base}/result", params={"wait": 20}).json()
        assert outcome["status"] == "SUCCEEDED"
        paths = api.get("/openapi.json").json()["paths"]
        assert {"/api/runs/{run_id}/pause", "/api/runs/{run_id}/resume",
                "/api/runs/{run_id}/operations/{operation}/succeed",
                "/api/runs/{run_id}/operations/{operation}/fail"} <= set(paths)


def test_pausing_an_ended_run_is_a_409(server: Server) -> None:
    with server.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "echo", "input": {"a": 1}}
                          ).json()["run_id"]
        assert api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).json()["status"] \
            == "SUCCEEDED"
        response = api.post(f"/api/runs/{run_id}/pause")
        assert response.status_code == 409 and "has ended" in response.json()["error"]["message"]
