"""Direction 1: handlers written with AWS's durable-execution SDK run unmodified on
`durable server`.

The server and the function host are real processes on 127.0.0.1 (uvicorn). The handlers
(tests/apps/aws_sdk_functions.py) find the server through AWS_ENDPOINT_URL_LAMBDA alone, with
dummy credentials; the test drives everything through boto3's `lambda` client, and through AWS's
testing package's DurableFunctionCloudTestRunner.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.apps.serverless_kit import (
    DUMMY_AWS,
    Service,
    callback_id,
    history,
    lambda_client,
    register,
    start_function_host,
    start_server,
    wait_status,
)
from tests.kit import free_port, wait_until

pytest.importorskip("aws_durable_execution_sdk_python")

FUNCTIONS = ["steps", "waits", "callbacks", "children", "mapper", "fanout", "condition",
             "invoker", "doubler", "waiter", "failing"]


class Stack:
    def __init__(self, server: Service, host: Service, db: str) -> None:
        self.server, self.host, self.db = server, host, db
        self.client = lambda_client(server.url)

    def start(self, function: str, payload: Any, name: str | None = None) -> str:
        kwargs = {"DurableExecutionName": name} if name else {}
        answer = self.client.invoke(FunctionName=function, InvocationType="Event",
                                    Payload=json.dumps(payload), **kwargs)
        assert answer["StatusCode"] == 202
        arn: str = answer["DurableExecutionArn"]
        return arn

    def run(self, function: str, payload: Any, timeout: float = 60) -> dict[str, Any]:
        done = wait_status(self.client, self.start(function, payload), timeout)
        assert done["Status"] != "RUNNING", done
        return done

    def events(self, arn: str) -> list[dict[str, Any]]:
        return history(self.client, arn)

    def callback_id(self, arn: str, name: str) -> str:
        return callback_id(self.client, arn, name)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("direction1")
    db = f"sqlite:///{tmp}/durable.db"
    server = start_server(tmp, db)
    try:
        host = start_function_host(tmp, "tests.apps.aws_sdk_functions:app", server.url)
    except Exception:
        server.stop()
        raise
    try:
        for name in FUNCTIONS:
            register(db, name, f"{host.url}/{name}")
        register(db, "timeboxed", f"{host.url}/waiter", "--execution-timeout", "2")
        yield Stack(server, host, db)
    finally:
        host.stop()
        server.stop()


def result(done: dict[str, Any]) -> Any:
    assert done["Status"] == "SUCCEEDED", done
    return json.loads(done["Result"])


def test_steps_with_retries_and_both_semantics(stack: Stack) -> None:
    done = stack.run("steps", {"n": 21})
    assert result(done) == {"double": 42, "flaky": {"attempt": 3}, "charge": "charged",
                            "doomed": "StepError"}
    events = stack.events(done["DurableExecutionArn"])
    flaky = [e for e in events if e.get("Name") == "flaky" and e["EventType"] == "StepFailed"]
    assert [e["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"] for e in flaky] == [1, 2]
    assert all(e["StepFailedDetails"]["RetryDetails"]["NextAttemptDelaySeconds"] == 1
               for e in flaky)
    assert flaky[0]["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] == "ConnectionError"
    doomed = [e for e in events if e.get("Name") == "doomed" and e["EventType"] == "StepFailed"]
    assert len(doomed) == 3 and "NextAttemptDelaySeconds" not in (
        doomed[-1]["StepFailedDetails"]["RetryDetails"])
    charge = [e["EventType"] for e in events if e.get("Name") == "charge"]
    assert charge == ["StepStarted", "StepSucceeded"]  # at-most-once: START checkpointed first
    kinds = {e["EventType"] for e in events}
    assert {"ExecutionStarted", "InvocationCompleted", "ExecutionSucceeded"} <= kinds


def test_durable_wait(stack: Stack) -> None:
    started = time.monotonic()
    done = stack.run("waits", {"seconds": 2})
    assert result(done) == "before-after"
    assert time.monotonic() - started >= 2
    events = stack.events(done["DurableExecutionArn"])
    wait = next(e for e in events if e["EventType"] == "WaitStarted")
    assert wait["WaitStartedDetails"]["Duration"] == 2
    invocations = [e for e in events if e["EventType"] == "InvocationCompleted"]
    assert len(invocations) == 2  # one before the wait, one after: nothing ran in between


def test_callbacks_success_heartbeat_and_heartbeat_timeout(stack: Stack) -> None:
    arn = stack.start("callbacks", {"heartbeat": 2})
    approval = stack.callback_id(arn, "approval")
    stack.client.send_durable_execution_callback_success(CallbackId=approval, Result=b"yes")
    beating = stack.callback_id(arn, "beating create callback id")
    for _ in range(2):  # heartbeats keep it alive past its 2 s heartbeat timeout...
        time.sleep(1.2)  # the scenario, not a wait: beats 1.2 s apart outlive the 2 s timeout
        stack.client.send_durable_execution_callback_heartbeat(CallbackId=beating)
    assert stack.client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    done = wait_status(stack.client, arn, 30)  # ... and it times out once they stop
    assert result(done)["decision"] == "yes"
    assert "heartbeat" in result(done)["beat"].lower()
    timed_out = [e for e in stack.events(arn) if e["EventType"] == "CallbackTimedOut"]
    assert timed_out[0]["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == (
        "Callback.Heartbeat")
    with pytest.raises(ClientError) as gone:  # resolved callbacks are gone
        stack.client.send_durable_execution_callback_success(CallbackId=approval, Result=b"1")
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_callback_failure_and_callback_timeout(stack: Stack) -> None:
    arn = stack.start("callbacks", {})
    approval = stack.callback_id(arn, "approval")
    stack.client.send_durable_execution_callback_failure(
        CallbackId=approval, Error={"ErrorType": "Rejected", "ErrorMessage": "no budget"})
    done = wait_status(stack.client, arn, 30)
    assert done["Status"] == "FAILED" and "no budget" in done["Error"]["ErrorMessage"]

    timed = wait_status(stack.client, stack.start("callbacks", {"timeout": 1}), 30)
    assert timed["Status"] == "FAILED"
    assert "timed out" in timed["Error"]["ErrorMessage"].lower()


def test_child_context_map_parallel(stack: Stack) -> None:
    assert result(stack.run("children", {})) == ["a", "b", "done"]
    assert result(stack.run("mapper", {"items": [1, 2, 3, 4]})) == [1, 4, 9, 16]
    fan = stack.run("fanout", {})
    assert result(fan) == ["X", "Y", "Z"]
    contexts = [e for e in stack.events(fan["DurableExecutionArn"])
                if e["EventType"].startswith("Context")]
    assert {e["EventType"] for e in contexts} == {"ContextStarted", "ContextSucceeded"}
    assert any(e.get("SubType") == "Parallel" for e in contexts)


def test_wait_for_condition(stack: Stack) -> None:
    done = stack.run("condition", {"target": 3})
    assert result(done) == 3
    retries = [e for e in stack.events(done["DurableExecutionArn"])
               if e["EventType"] == "StepSucceeded" and e.get("Name") == "poll"]
    assert retries  # each poll's state was checkpointed


def test_chained_invoke(stack: Stack) -> None:
    done = stack.run("invoker", {"n": 21})
    assert result(done) == {"got": 42}
    started = next(e for e in stack.events(done["DurableExecutionArn"])
                   if e["EventType"] == "ChainedInvokeStarted")
    child_arn = started["ChainedInvokeStartedDetails"]["DurableExecutionArn"]
    assert started["ChainedInvokeStartedDetails"]["FunctionName"] == "doubler"
    assert result(wait_status(stack.client, child_arn)) == 42


def test_failed_execution_reports_the_error(stack: Stack) -> None:
    done = stack.run("failing", {"order": 7})
    assert done["Status"] == "FAILED"
    assert done["Error"]["ErrorType"] == "ValueError"
    assert done["Error"]["ErrorMessage"] == "bad order 7"


def test_invoke_is_idempotent_by_name_and_conflicts_on_other_input(stack: Stack) -> None:
    first = stack.start("waiter", {"mode": "callback"}, name="order-17")
    again = stack.start("waiter", {"mode": "callback"}, name="order-17")
    assert first == again
    with pytest.raises(ClientError) as conflict:
        stack.start("waiter", {"mode": "callback", "other": 1}, name="order-17")
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert conflict.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    listed = stack.client.list_durable_executions_by_function(
        FunctionName="waiter", Statuses=["RUNNING"], DurableExecutionName="order-17")
    assert [e["DurableExecutionArn"] for e in listed["DurableExecutions"]] == [first]
    stopped = stack.client.stop_durable_execution(
        DurableExecutionArn=first, Error={"ErrorType": "Ops", "ErrorMessage": "not needed"})
    assert stopped["StopTimestamp"]
    got = stack.client.get_durable_execution(DurableExecutionArn=first)
    assert got["Status"] == "STOPPED" and got["Error"]["ErrorMessage"] == "not needed"
    assert stack.events(first)[-1]["EventType"] == "ExecutionStopped"


def test_synchronous_invoke_returns_the_result(stack: Stack) -> None:
    answer = stack.client.invoke(FunctionName="doubler", Payload=json.dumps({"n": 4}))
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == 8
    failed = stack.client.invoke(FunctionName="failing", Payload=b"{}")
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["ErrorType"] == "ValueError"


def test_execution_timeout(stack: Stack) -> None:
    done = wait_status(stack.client, stack.start("timeboxed", {"mode": "callback"}), 30)
    assert done["Status"] == "TIMED_OUT"
    assert stack.events(done["DurableExecutionArn"])[-1]["EventType"] == "ExecutionTimedOut"


def test_paging_listing_and_errors(stack: Stack) -> None:
    arns = [stack.start("doubler", {"n": i}) for i in range(3)]
    for arn in arns:
        wait_status(stack.client, arn)
    page = stack.client.list_durable_executions_by_function(FunctionName="doubler",
                                                            MaxItems=2)
    assert len(page["DurableExecutions"]) == 2 and page["NextMarker"]
    for call, code in [
        (lambda: stack.client.invoke(FunctionName="nope", Payload=b"{}"),
         "ResourceNotFoundException"),
        (lambda: stack.client.get_durable_execution(
            DurableExecutionArn=arns[0].rsplit("/", 1)[0] + "/missing"),
         "ResourceNotFoundException"),
        (lambda: stack.client.get_durable_execution(DurableExecutionArn="not-an-arn"),
         "InvalidParameterValueException"),
        (lambda: stack.client.checkpoint_durable_execution(
            DurableExecutionArn=arns[0], CheckpointToken="bm9wZQ==", Updates=[]),
         "InvalidParameterValueException"),
        (lambda: stack.client.send_durable_execution_callback_success(
            CallbackId="0" * 48, Result=b"1"), "ResourceNotFoundException"),
    ]:
        with pytest.raises(ClientError) as error:
            call()
        assert error.value.response["Error"]["Code"] == code
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] < 500


def test_cloud_test_runner_works_unchanged(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from aws_durable_execution_sdk_python.execution import InvocationStatus
    from aws_durable_execution_sdk_python_testing import DurableFunctionCloudTestRunner

    for key, value in DUMMY_AWS.items():  # the runner builds its own boto3 client
        monkeypatch.setenv(key, value)
    runner = DurableFunctionCloudTestRunner(function_name="steps", region="us-east-1",
                                            lambda_endpoint=stack.server.url,
                                            poll_interval=0.2)
    outcome = runner.run(input={"n": 5}, timeout=60)
    assert outcome.status is InvocationStatus.SUCCEEDED
    assert json.loads(outcome.result or "null")["double"] == 10
    assert outcome.get_step("double").result == "10"
    assert outcome.get_step("flaky").status.value == "SUCCEEDED"

    callbacks = DurableFunctionCloudTestRunner(function_name="callbacks", region="us-east-1",
                                               lambda_endpoint=stack.server.url,
                                               poll_interval=0.2)
    arn = callbacks.run_async(input={"heartbeat": 30}, timeout=60)
    callbacks.send_callback_success(callbacks.wait_for_callback(arn, name="approval"), b"ok")
    beating = callbacks.wait_for_callback(arn, name="beating create callback id")
    callbacks.send_callback_heartbeat(beating)
    callbacks.send_callback_success(beating, b'"done"')
    final = callbacks.wait_for_result(arn, timeout=60)
    assert json.loads(final.result or "null") == {"decision": "ok", "beat": "answered"}


def test_function_host_down_then_up_is_retried(stack: Stack, tmp_path: Path) -> None:
    """Invocations that cannot reach the function are retried with backoff: the run waits,
    holding nothing, until the function is back."""
    port = free_port()
    register(stack.db, "late", f"http://127.0.0.1:{port}/doubler")
    arn = stack.start("late", {"n": 50})

    def invocations() -> list[dict[str, Any]]:
        return [e for e in stack.events(arn) if e["EventType"] == "InvocationCompleted"]
    wait_until(invocations, "a first invocation attempt of the unreachable function",
               interval=0.1)
    assert stack.client.get_durable_execution(DurableExecutionArn=arn)["Status"] == "RUNNING"
    failed = invocations()
    assert failed and "Error" in failed[0]["InvocationCompletedDetails"]
    late = start_function_host(tmp_path, "tests.apps.aws_sdk_functions:app", stack.server.url,
                               port=port)
    try:
        assert result(wait_status(stack.client, arn, 40)) == 100
    finally:
        late.stop()
