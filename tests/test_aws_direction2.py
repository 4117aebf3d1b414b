"""Direction 2: workflows written with Durable's SDK, exported with `durable.lambda_handler`
(and `durable.serve`), run to the right result on AWS's own emulator from
aws-durable-execution-sdk-python-testing: its in-process DurableFunctionTestRunner, and its HTTP
WebRunner invoking a uvicorn-hosted function that checkpoints back over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apps import serverless_functions as fns
from tests.apps.serverless_kit import (
    DUMMY_AWS,
    Service,
    lambda_client,
    start_function_host,
    wait_status,
)
from tests.kit import free_port

testing = pytest.importorskip("aws_durable_execution_sdk_python_testing")
from aws_durable_execution_sdk_python.execution import InvocationStatus  # noqa: E402
from aws_durable_execution_sdk_python_testing import (  # noqa: E402
    DurableFunctionTestRunner,
    WebRunner,
    WebRunnerConfig,
)
from aws_durable_execution_sdk_python_testing.web.server import WebServiceConfig  # noqa: E402


def run(handler: Any, payload: Any, **register: Any) -> Any:
    with DurableFunctionTestRunner(handler=handler) as runner:
        for name, fn in register.items():
            runner.register_durable_function(name, fn)
        return runner.run(input=json.dumps(payload), execution_timeout=60)


def test_in_process_runner_steps_sleep_and_retries() -> None:
    done = run(fns.greet_handler, "ada")
    assert done.status is InvocationStatus.SUCCEEDED, done.error
    assert json.loads(done.result) == "hello ADA"
    assert done.get_step("shout").result == '"ADA"'

    fns.ATTEMPTS.clear()
    retried = run(fns.sturdy_handler, "order-1")
    assert json.loads(retried.result) == "order-1 after 3"
    assert retried.get_step("flaky").status.value == "SUCCEEDED"


def test_in_process_runner_gather_map_and_child_workflow() -> None:
    done = run(fns.fan_handler, [1, 2, 3])
    assert json.loads(done.result) == {"gathered": [2, 4, 6], "mapped": [2, 4, 6]}
    parent = run(fns.parent_handler, 20, child=fns.child_handler)
    assert parent.status is InvocationStatus.SUCCEEDED, parent.error
    assert json.loads(parent.result) == 41


def test_in_process_runner_accepts_the_end_recorded_for_an_abandoned_branch() -> None:
    done = run(fns.first_handler, None)
    assert done.status is InvocationStatus.SUCCEEDED, done.error
    assert json.loads(done.result) == ["NOT_COMPLETED", "SUCCEEDED"]


def test_in_process_runner_callback_and_failure() -> None:
    with DurableFunctionTestRunner(handler=fns.approve_handler) as runner:
        arn = runner.run_async(input=json.dumps({"id": 7}), execution_timeout=60)
        runner.send_callback_success(runner.wait_for_callback(arn, name="approval", timeout=30),
                                     json.dumps("granted").encode())
        done = runner.wait_for_result(arn, timeout=30)
    assert json.loads(done.result) == {"order": 7, "decision": "granted"}

    failed = run(fns.broken_handler, None)
    assert failed.status is InvocationStatus.FAILED
    assert failed.error.type == "RuntimeError"
    assert failed.error.message == "the order is invalid"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Service]]:
    """AWS's WebRunner on one port, invoking a uvicorn-hosted `durable.serve` app that
    checkpoints back to it (found through AWS_ENDPOINT_URL_LAMBDA)."""
    tmp = tmp_path_factory.mktemp("webrunner")
    patch = pytest.MonkeyPatch()
    for key, value in DUMMY_AWS.items():  # the WebRunner's own boto3 client wants some
        patch.setenv(key, value)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    host = start_function_host(tmp, "tests.apps.serverless_functions:app", url)
    runner = WebRunner(WebRunnerConfig(
        web_service=WebServiceConfig(host="127.0.0.1", port=port),
        lambda_endpoint=host.url, local_runner_region="us-east-1",
        invocation_timeout_seconds=60))
    runner.start()
    thread = threading.Thread(target=runner.serve_forever, daemon=True)
    thread.start()
    try:
        yield url, host
    finally:
        runner.stop()
        host.stop()
        patch.undo()


def start(url: str, function: str, payload: Any) -> str:
    body = {"AccountId": "123456789012", "FunctionName": function,
            "FunctionQualifier": "$LATEST", "ExecutionName": f"{function}-{time.time_ns()}",
            "ExecutionTimeoutSeconds": 60, "ExecutionRetentionPeriodDays": 1,
            "Input": json.dumps(payload)}
    request = urllib.request.Request(f"{url}/start-durable-execution",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        arn: str = json.loads(answer.read())["ExecutionArn"]
    return arn


def test_web_runner_invokes_a_served_workflow_over_http(web: tuple[str, Service]) -> None:
    url, _ = web
    client = lambda_client(url)
    done = wait_status(client, start(url, "greet", "grace"), 60)
    assert done["Status"] == "SUCCEEDED", done
    assert json.loads(done["Result"]) == "hello GRACE"

    fanned = wait_status(client, start(url, "fan", [5, 6]), 60)
    assert json.loads(fanned["Result"]) == {"gathered": [10, 12], "mapped": [10, 12]}

    failed = wait_status(client, start(url, "broken", None), 60)
    assert failed["Status"] == "FAILED"
    assert failed["Error"]["ErrorType"] == "RuntimeError"
    history = client.get_durable_execution_history(
        DurableExecutionArn=failed["DurableExecutionArn"], IncludeExecutionData=True)
    steps = [e for e in history["Events"] if e["EventType"] == "StepSucceeded"]
    assert steps and steps[0]["Name"] == "shout"


def test_lambda_handler_rejects_a_plain_event() -> None:
    from durable.errors import UsageError

    with pytest.raises(UsageError, match="invocation envelope"):
        fns.greet_handler({"name": "not an envelope"}, None)


def test_served_app_answers_bad_requests_with_4xx(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    client = TestClient(fns.app)
    assert client.get("/").json()["functions"][0] == "approve"
    assert client.post("/nope", json={}).status_code == 404
    assert client.post("/greet", content=b"{not json").status_code == 400
    assert client.post("/greet", json={"hello": 1}).status_code == 400
