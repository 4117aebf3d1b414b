"""The data plane's rules, at the transaction level and over HTTP: token rotation and fencing,
ClientToken idempotency, changed operations in each answer, state paging, size limits, the
EXECUTION update, and invocation retries with backoff."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable.engine import machine
from durable.invoke import dataplane
from durable.invoke.contract import INVALID_TOKEN, MAX_OPERATION_PAYLOAD, ContractError
from durable.invoke.push import FunctionSpec, register
from durable.model import ErrorObject, ExecutionStatus, InvocationRetry, RunInfo
from durable.store import Store, Tx, open_store
from tests.kit import wait_until_async


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/d.db")
    yield s
    s.close()


def invoked(store: Store, name: str = "e1") -> tuple[str, dict[str, Any]]:
    """A run of function `fn`, leased as the engine would, and its invocation envelope."""
    now = time.time()
    run, _ = store.write_sync(
        lambda tx: dataplane.start_execution(tx, "fn", name, '{"a": 1}', now))
    (claimed,) = store.write_sync(lambda tx: machine.claim(tx, "w", now, 1, 30, ["fn"]))
    envelope = store.write_sync(lambda tx: dataplane.open_invocation(tx, run.run_id,
                                                                     claimed.token))
    return run.run_id, envelope


def checkpoint(store: Store, run_id: str, token: str, updates: list[dict[str, Any]],
               client_token: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(store.write_sync(lambda tx: dataplane.checkpoint(
        tx, run_id, token, updates, client_token, time.time())))
    return answer


STEP = {"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Name": "one", "Payload": "1"}


def test_envelope_carries_the_execution_operation(store: Store) -> None:
    run_id, envelope = invoked(store)
    assert envelope["DurableExecutionArn"].endswith(f"/durable-execution/e1/{run_id}")
    (execution,) = envelope["InitialExecutionState"]["Operations"]
    assert execution["Id"] == run_id and execution["Type"] == "EXECUTION"
    assert execution["ExecutionDetails"]["InputPayload"] == '{"a": 1}'
    assert isinstance(execution["StartTimestamp"], int)  # milliseconds in the envelope


def test_tokens_rotate_and_old_ones_are_refused(store: Store) -> None:
    run_id, envelope = invoked(store)
    first = envelope["CheckpointToken"]
    answer = checkpoint(store, run_id, first, [STEP])
    assert answer["CheckpointToken"] != first
    assert [op["Id"] for op in answer["NewExecutionState"]["Operations"]] == ["s1"]
    with pytest.raises(ContractError, match=INVALID_TOKEN):
        checkpoint(store, run_id, first, [])
    # a newer invocation (the lease moved on) fences the old one out entirely
    later = time.time() + 60
    store.write_sync(lambda tx: machine.claim(tx, "w2", later, 1, 30, ["fn"]))
    with pytest.raises(ContractError, match=INVALID_TOKEN):
        checkpoint(store, run_id, answer["CheckpointToken"], [])


def test_client_token_replays_the_same_answer_without_applying_twice(store: Store) -> None:
    run_id, envelope = invoked(store)
    token = envelope["CheckpointToken"]
    wait = {"Id": "w1", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 60}}
    one = checkpoint(store, run_id, token, [wait], client_token="c-1")
    two = checkpoint(store, run_id, token, [wait], client_token="c-1")
    assert one == two
    events = store.read(lambda tx: tx.history(run_id))
    assert sum(e.type == "WaitStarted" for e in events) == 1


def test_answers_include_what_the_engine_changed(store: Store) -> None:
    run_id, envelope = invoked(store)
    start = {"Id": "cb", "Type": "CALLBACK", "Action": "START", "Name": "approval",
             "CallbackOptions": {"TimeoutSeconds": 0, "HeartbeatTimeoutSeconds": 0}}
    answer = checkpoint(store, run_id, envelope["CheckpointToken"], [start])
    (callback,) = answer["NewExecutionState"]["Operations"]
    callback_id = callback["CallbackDetails"]["CallbackId"]
    assert len(callback_id) == 48 and callback_id.isalnum()  # minted by the backend
    store.write_sync(lambda tx: machine.complete_callback(tx, callback_id, '"ok"', None,
                                                          time.time()))
    later = checkpoint(store, run_id, answer["CheckpointToken"], [])
    (resolved,) = later["NewExecutionState"]["Operations"]
    assert resolved["Status"] == "SUCCEEDED" and resolved["CallbackDetails"]["Result"] == '"ok"'


def test_state_pages(store: Store) -> None:
    run_id, envelope = invoked(store)
    steps = [{**STEP, "Id": f"s{i}", "Name": f"n{i}"} for i in range(5)]
    token = checkpoint(store, run_id, envelope["CheckpointToken"], steps)["CheckpointToken"]
    seen, marker = [], ""
    while True:
        page = store.read(lambda tx, at=marker: dataplane.get_state(tx, run_id, token, at, 2))
        seen += [op["Id"] for op in page["Operations"]]
        marker = page.get("NextMarker", "")
        if not marker:
            break
    assert seen == [run_id, "s0", "s1", "s2", "s3", "s4"]
    with pytest.raises(ContractError, match="Marker"):
        store.read(lambda tx: dataplane.get_state(tx, run_id, token, "x", None))


@pytest.mark.parametrize(("update", "message"), [
    ({**STEP, "Payload": "x" * (MAX_OPERATION_PAYLOAD + 1)}, "limited to"),
    ({**STEP, "Id": "bad id!"}, "Id must be"),
    ({**STEP, "Action": "EXPLODE"}, "Action one of"),
    ({"Id": "r", "Type": "STEP", "Action": "RETRY"}, "NextAttemptDelaySeconds"),
    ({"Id": "w", "Type": "WAIT", "Action": "START", "WaitOptions": {"WaitSeconds": 0}},
     "WaitSeconds"),
    ({**STEP, "Error": {"ErrorMessage": "x" * 40000}}, "the limit"),
    ({"Id": "i", "Type": "CHAINED_INVOKE", "Action": "START"}, "FunctionName"),
])
def test_bad_updates_are_refused_with_a_clear_error(store: Store, update: dict[str, Any],
                                                   message: str) -> None:
    run_id, envelope = invoked(store)
    with pytest.raises(ContractError, match=message):
        checkpoint(store, run_id, envelope["CheckpointToken"], [update])


def test_invalid_transition_is_a_contract_error(store: Store) -> None:
    run_id, envelope = invoked(store)
    token = checkpoint(store, run_id, envelope["CheckpointToken"], [STEP])["CheckpointToken"]
    with pytest.raises(ContractError, match="cannot SUCCEED"):
        checkpoint(store, run_id, token, [STEP])


def test_execution_update_ends_the_run_and_withholds_the_token(store: Store) -> None:
    run_id, envelope = invoked(store)
    end = {"Id": "execution-result-1", "Type": "EXECUTION", "Action": "SUCCEED",
           "Payload": json.dumps("big")}
    answer = checkpoint(store, run_id, envelope["CheckpointToken"], [STEP, end])
    assert "CheckpointToken" not in answer
    run = store.read(lambda tx: tx.get_run(run_id))
    assert run is not None and run.status is ExecutionStatus.SUCCEEDED
    assert run.result == '"big"'
    with pytest.raises(ContractError, match="last"):
        run2, env2 = invoked(store, "e2")
        checkpoint(store, run2, env2["CheckpointToken"], [end, STEP])


def test_unknown_invoke_target_fails_the_operation(store: Store) -> None:
    run_id, envelope = invoked(store)
    start = {"Id": "i1", "Type": "CHAINED_INVOKE", "Action": "START", "Name": "call",
             "ChainedInvokeOptions": {"FunctionName": "nowhere"}, "Payload": "{}"}
    (op,) = checkpoint(store, run_id, envelope["CheckpointToken"],
                       [start])["NewExecutionState"]["Operations"]
    assert op["Status"] == "FAILED"
    assert op["ChainedInvokeDetails"]["Error"]["ErrorType"] == "ResourceNotFoundException"


def fail_invocation(store: Store, run_id: str, error: ErrorObject, at: float,
                    policy: InvocationRetry) -> bool:
    """Claim the run at `at` (past any lease and backoff) and record that invoking it failed."""
    def fail_once(tx: Tx) -> bool:
        (claimed,) = machine.claim(tx, "w", at, 1, 30, ["fn"])
        return machine.retry_invocation(tx, run_id, claimed.token, error, at, 0.1, policy)
    return store.write_sync(fail_once)


def test_failed_invocations_back_off_capped_and_never_fail_the_run(store: Store) -> None:
    run_id, _ = invoked(store)
    error = ErrorObject("Function.Unreachable", "connection refused")
    policy = InvocationRetry(backoff=2.0, cap=10.0)
    t0 = time.time() + 1000
    delays = []
    for attempt in range(8):
        at = t0 + 1000 * attempt
        assert fail_invocation(store, run_id, error, at, policy)
        run = store.read(lambda tx: tx.get_run(run_id))
        assert run is not None and run.status is ExecutionStatus.RUNNING and run.parked is None
        assert run.ready_at is not None
        delays.append(run.ready_at - at)
        assert run.invocation_error == error and run.invocation_failures == attempt + 1
        assert run.invocation_failing_since == t0  # since the first failure in a row
    assert delays == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0, 10.0]


def test_a_function_past_its_retry_deadline_parks_the_run_and_registering_it_resumes(
        store: Store) -> None:
    run_id, _ = invoked(store)
    error = ErrorObject("Function.Unreachable", "connection refused")
    policy = InvocationRetry(backoff=1.0, cap=10.0, deadline=60.0)
    t0 = time.time() + 1000
    assert fail_invocation(store, run_id, error, t0, policy)
    assert not fail_invocation(store, run_id, error, t0 + 61, policy)
    run = store.read(lambda tx: tx.get_run(run_id))
    assert run is not None and run.status is ExecutionStatus.RUNNING
    assert run.parked is not None and "retry deadline 60 s" in run.parked.message
    assert "connection refused" in run.parked.message and run.ready_at is None
    register(store, FunctionSpec("fn", url="http://127.0.0.1:1/"))
    run = store.read(lambda tx: tx.get_run(run_id))
    assert run is not None and run.ready_at is not None  # invoked again at once


def test_stop_fences_the_invocation_and_heartbeats_extend_callbacks(store: Store) -> None:
    run_id, envelope = invoked(store)
    start = {"Id": "cb", "Type": "CALLBACK", "Action": "START",
             "CallbackOptions": {"TimeoutSeconds": 100, "HeartbeatTimeoutSeconds": 5}}
    answer = checkpoint(store, run_id, envelope["CheckpointToken"], [start])
    callback_id = answer["NewExecutionState"]["Operations"][0]["CallbackDetails"]["CallbackId"]
    due = store.read(lambda tx: tx.get_operation(run_id, "cb")).due_at  # type: ignore[union-attr]
    store.write_sync(lambda tx: machine.heartbeat_callback(tx, callback_id, time.time() + 3))
    later = store.read(lambda tx: tx.get_operation(run_id, "cb")).due_at  # type: ignore[union-attr]
    assert later > due
    store.write_sync(lambda tx: machine.terminate(tx, run_id, None, time.time()))
    with pytest.raises(ContractError, match=INVALID_TOKEN):
        checkpoint(store, run_id, answer["CheckpointToken"], [])
    run = store.read(lambda tx: tx.get_run(run_id))
    assert run is not None and run.status is ExecutionStatus.STOPPED


def test_http_errors_are_aws_shaped(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from durable.server.app import create_app

    with TestClient(create_app(f"sqlite:///{tmp_path}/h.db"),
                    base_url="http://127.0.0.1") as client:
        big = client.post("/2025-12-01/durable-executions/a%2Fb/checkpoint",
                          content=b"x" * (6 * 1024 * 1024 + 1))
        assert big.status_code == 413
        assert big.headers["x-amzn-errortype"] == "RequestTooLargeException"
        bad = client.post("/2025-12-01/durable-executions/a%2Fb/checkpoint", content=b"{x")
        assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]
        missing = client.get("/2025-12-01/durable-executions/arn%2Fnope")
        assert missing.status_code == 404
        assert missing.headers["x-amzn-errortype"] == "ResourceNotFoundException"
        assert client.post("/2015-03-31/functions/nope/invocations",
                           content=b"{}").status_code == 404
        assert client.get("/2025-12-01/functions/fn/durable-executions",
                          params={"MaxItems": "x"}).status_code == 400


async def test_in_process_handlers_run_without_http(store: Store) -> None:
    """`durable functions add NAME --handler module:fn`: an AWS SDK handler gets a service
    client over the store; a Durable @workflow runs on the engine directly."""
    import asyncio

    from durable.invoke.push import FunctionSpec, FunctionWorker, register

    pytest.importorskip("aws_durable_execution_sdk_python")
    register(store, FunctionSpec("doubler", handler="tests.apps.aws_sdk_functions:doubler"))
    register(store, FunctionSpec("child", handler="tests.apps.serverless_functions:child"))
    register(store, FunctionSpec("broken", handler="tests.apps.nowhere:fn"))
    worker = FunctionWorker(store, "http://unused")
    task = asyncio.create_task(worker.run())
    try:
        now = time.time()
        aws, _ = store.write_sync(lambda tx: dataplane.start_execution(tx, "doubler", "a",
                                                                       '{"n": 4}', now))
        ours, _ = store.write_sync(lambda tx: dataplane.start_execution(tx, "child", "b", "5",
                                                                        now))

        def both() -> list[RunInfo | None]:
            return [store.read(lambda tx, r=r: tx.get_run(r.run_id)) for r in (aws, ours)]
        await wait_until_async(
            lambda: all(r is not None and r.status is not ExecutionStatus.RUNNING
                        for r in both()), lambda: f"both runs to end: {both()}", interval=0.05)
        runs = both()
        assert [(r.status, r.result) for r in runs if r] == [
            (ExecutionStatus.SUCCEEDED, "8"), (ExecutionStatus.SUCCEEDED, "10")]
        assert sorted(worker.functions) == ["child", "doubler"]  # the broken one is skipped
    finally:
        worker.stop()
        await task
