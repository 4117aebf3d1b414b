"""Processes for the serverless tests: `durable server` and function hosts under uvicorn, each in
its own subprocess on 127.0.0.1, as they would run in production; and reading their executions
through AWS's API (boto3's `lambda` client)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.kit import DURABLE, ROOT, Subprocess, free_port, wait_until

DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
ENDED = ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")


class Service(Subprocess):
    """A process serving HTTP at `url`, its output in `log`; `stop()`: SIGTERM, then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, url: str) -> None:
        super().__init__(args, log, env=env)
        self.url = url

    def wait_up(self, path: str = "/") -> Service:
        try:
            self.wait_answering(self.url + path)
        except BaseException:
            self.stop()
            raise
        return self


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DURABLE_"))}
    base["PYTHONPATH"] = f"{ROOT}{os.pathsep}{base.get('PYTHONPATH', '')}"
    return {**base, **DUMMY_AWS, **extra}


def start_server(tmp: Path, db: str, *options: str, **extra: str) -> Service:
    """`durable server` on a free port, with more `options` and `extra` environment."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Service([DURABLE, "server", "--port", str(port), "--db", db, *options],
                   env(**extra), tmp / f"server-{port}.log",
                   url).wait_up("/2025-12-01/functions/none/durable-executions")


def start_function_host(tmp: Path, app: str, backend: str, port: int | None = None,
                        **extra: str) -> Service:
    """uvicorn serving `app` (on `port`, by default a free one); the functions in it reach the
    backend by AWS_ENDPOINT_URL_LAMBDA only (and dummy credentials, which the SDK's boto3 client
    wants)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    return Service([sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level",
                    "warning", "--no-access-log"],
                   env(AWS_ENDPOINT_URL_LAMBDA=backend, **extra), tmp / f"fn-{port}.log",
                   url).wait_up("/")


def register(db: str, name: str, url: str, *extra: str) -> None:
    subprocess.run([DURABLE, "functions", "add", name, "--url", url, "--db", db, *extra],
                   check=True, capture_output=True, cwd=ROOT)


def lambda_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 0}, read_timeout=120))


def wait_status(client: Any, arn: str, timeout: float = 60.0,
                statuses: tuple[str, ...] = ENDED) -> dict[str, Any]:
    """The execution (GetDurableExecution) once its status is one of `statuses`."""
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(client.get_durable_execution(DurableExecutionArn=arn))
        return dict(last) if last["Status"] in statuses else None
    found: dict[str, Any] = wait_until(
        reached, lambda: f"execution {arn} to be {'/'.join(statuses)}; it is {last}",
        timeout=timeout, interval=0.2)
    return found


def history(client: Any, arn: str) -> list[dict[str, Any]]:
    """Every event of the execution (GetDurableExecutionHistory, page by page)."""
    events: list[dict[str, Any]] = []
    marker: dict[str, str] = {}
    while True:
        page = client.get_durable_execution_history(
            DurableExecutionArn=arn, IncludeExecutionData=True, MaxItems=25, **marker)
        events += page["Events"]
        if not page.get("NextMarker"):
            return events
        marker = {"Marker": page["NextMarker"]}


def callback_id(client: Any, arn: str, name: str | None = None, timeout: float = 30) -> str:
    """The id of the execution's callback `name` (by default its first), once it has started."""
    def started() -> str | None:
        return next((str(e["CallbackStartedDetails"]["CallbackId"])
                     for e in history(client, arn) if e["EventType"] == "CallbackStarted"
                     and name in (None, e.get("Name"))), None)
    found: str = wait_until(started, f"callback {name or ''} of {arn}", timeout=timeout,
                            interval=0.2)
    return found
