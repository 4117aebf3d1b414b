"""Terminate, delete and purge over HTTP: the control API (in the OpenAPI document) and AWS's
StopDurableExecution and DeleteDurableExecution through boto3, on a real `durable server` on
each store, serving tests/apps/ending_app.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from tests.apps.serverless_kit import lambda_client
from tests.kit import wait_until
from tests.serverkit import Server

ENDING_APP = "tests/apps/ending_app.py"


@pytest.fixture
def server(any_db: str, tmp_path: Path) -> Iterator[Server]:
    with Server(tmp_path, None, "--worker", ENDING_APP, "--db", any_db,
                env={"ENDING_DIR": str(tmp_path)}) as s:
        yield s
        for held in tmp_path.glob("*.started"):  # let held steps end, so the server drains
            held.with_suffix(".release").touch()


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def start(api: httpx.Client, workflow: str, value: Any, run_id: str) -> None:
    answer = api.post("/api/runs", json={"workflow": workflow, "input": value, "id": run_id})
    assert answer.status_code == 201, answer.text


def holding(tmp: Path, tag: str) -> None:
    wait_until(lambda: (tmp / f"{tag}.started").exists(), f"{tag} to hold its step")


def ended(api: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = api.get(f"/api/runs/{run_id}/result", params={"wait": 30})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def code(answer: httpx.Response) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_terminate_delete_and_purge_are_in_the_openapi_document(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert "post" in paths["/api/runs/{run_id}/terminate"]
    assert "delete" in paths["/api/runs/{run_id}"]
    assert "post" in paths["/api/purge"]


def test_terminate_then_delete_over_the_api(api: httpx.Client, tmp_path: Path) -> None:
    start(api, "family", "h", "h")
    holding(tmp_path, "h-awaited")
    assert code(api.delete("/api/runs/h")) == (409, "run_not_ended")
    answer = api.post("/api/runs/h/terminate", json={"reason": "bad deploy",
                                                     "children": "terminate"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "STOPPED"
    assert "bad deploy" in answer.json()["error"]["message"]
    assert api.get("/api/runs/h-awaited/result").json()["status"] == "STOPPED"
    assert api.post("/api/runs/h/terminate").json()["status"] == "STOPPED"  # no body: defaults

    assert api.delete("/api/runs/h").status_code == 200
    assert code(api.get("/api/runs/h")) == (404, "run_not_found")
    assert code(api.delete("/api/runs/h")) == (404, "run_not_found")
    assert api.get("/api/runs/h-awaited").status_code == 200  # children are runs of their own


def test_bad_terminate_and_purge_requests_are_4xx(api: httpx.Client) -> None:
    assert code(api.post("/api/runs/nope/terminate")) == (404, "run_not_found")
    start(api, "quick", 1, "q")
    assert code(api.post("/api/runs/q/terminate", json={"children": "orphan"})) == (
        422, "invalid_request")
    assert code(api.post("/api/purge", json={})) == (422, "invalid_request")
    assert code(api.post("/api/purge", json={"ended_before": 0, "limit": 0})) == (
        422, "invalid_request")


def test_purge_over_the_api_pages_by_limit(api: httpx.Client) -> None:
    for i in range(3):
        start(api, "quick", i, f"p{i}")
    for i in range(3):
        ended(api, f"p{i}")
    start(api, "saga", "p-live", "p-live")
    body = {"ended_before": time.time() + 1, "limit": 2}
    assert api.post("/api/purge", json=body).json() == {"deleted": 2, "more": True}
    assert api.post("/api/purge", json=body).json() == {"deleted": 1, "more": False}
    assert [r["run_id"] for r in api.get("/api/runs").json()["runs"]] == ["p-live"]


def test_aws_stop_and_delete_through_boto3(server: Server, api: httpx.Client,
                                           tmp_path: Path) -> None:
    aws = lambda_client(server.url)
    arn = "arn:aws:lambda:us-east-1:000000000000:function:saga:$LATEST/durable-execution/a/a1"
    start(api, "saga", "a1", "a1")
    holding(tmp_path, "a1")
    with pytest.raises(ClientError) as refused:
        aws.delete_durable_execution(DurableExecutionArn=arn)
    assert refused.value.response["Error"]["Code"] == "ResourceConflictException"
    aws.stop_durable_execution(DurableExecutionArn=arn)
    assert api.get("/api/runs/a1/result").json()["status"] == "STOPPED"
    answer = aws.delete_durable_execution(DurableExecutionArn=arn)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["DeletionRequestTimestamp"].timestamp() == pytest.approx(time.time(), abs=60)
    with pytest.raises(ClientError) as gone:
        aws.get_durable_execution(DurableExecutionArn=arn)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
