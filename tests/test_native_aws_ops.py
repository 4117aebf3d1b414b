"""AWS durable functions' operations in Durable's own SDK, so that none is AWS-handler-only:
callback heartbeat timeouts, custom completion rules for `gather`/`map`, invoking a function or
workflow by name with a tenant id, and an execution timeout on any workflow. Each is checked on
the engine (both stores, on the virtual clock of `durable.testing`) and in the history as AWS's
GetDurableExecutionHistory shows it. The crash tests of the deadlines are in
tests/test_crash_native_aws_ops.py."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

import durable
from durable import (
    BatchFailed,
    BatchProgress,
    CallbackHeartbeatTimeout,
    ChildFailed,
    Completion,
    Context,
    ExecutionStatus,
    UsageError,
    WaitTimeout,
    workflow,
)
from durable.engine.worker import Worker
from durable.invoke.executions import Executions
from durable.invoke.push import FunctionSpec, FunctionWorker, register
from durable.model import ABANDONED, OperationType
from durable.sdk.workflow import REGISTRY
from durable.store import Store, open_store
from durable.testing import TestEnvironment
from tests.kit import DURABLE, ROOT, wait_until_async

Wire = dict[str, Any]


@pytest.fixture
async def env(any_db: str) -> AsyncIterator[TestEnvironment]:
    async with TestEnvironment(db=any_db) as e:
        yield e


async def aws_history(store: Store, run_id: str) -> list[Wire]:
    """The run's history as AWS's GetDurableExecutionHistory gives it."""
    answer = await Executions(store, time.time).history(run_id, True, False, 0, 10_000)
    events: list[Wire] = answer["Events"]
    return events


def of_type(events: list[Wire], kind: str) -> list[Wire]:
    return [e for e in events if e["EventType"] == kind]


# -- callback heartbeat timeouts ---------------------------------------------------------------

@workflow(name="native.beating")
async def beating(ctx: Context, heartbeat: float) -> dict[str, Any]:
    callback = await ctx.create_callback(name="job", timeout=3600, heartbeat_timeout=heartbeat)
    try:
        return {"result": await callback.result()}
    except CallbackHeartbeatTimeout as e:
        return {"heartbeat_timed_out": str(e)}


async def test_a_callback_hearing_no_heartbeat_times_out_one_interval_after_it_began(
        env: TestEnvironment) -> None:
    handle = env.start(beating, 60)
    began = env.now
    assert await env.result(handle) == {
        "heartbeat_timed_out": "callback 'job' timed out: no heartbeat came in time"}
    (op,) = [op for op in env.operations(handle.run_id) if op.type is OperationType.CALLBACK]
    assert op.ended_at == pytest.approx(began + 60)  # the virtual clock: not an hour later

    events = await aws_history(env.store, handle.run_id)
    (started,) = of_type(events, "CallbackStarted")
    assert started["CallbackStartedDetails"]["HeartbeatTimeout"] == 60
    assert started["CallbackStartedDetails"]["Timeout"] == 3600
    (timed_out,) = of_type(events, "CallbackTimedOut")
    assert timed_out["CallbackTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == (
        "Callback.Heartbeat")


async def test_each_heartbeat_starts_the_interval_afresh_until_the_result_arrives(
        env: TestEnvironment) -> None:
    handle = env.start(beating, 60)
    await env.settle()
    (callback_id,) = env.pending_callbacks(handle.run_id)
    for _ in range(3):  # 150 s in all, well past one interval, heartbeats every 50 s
        await env.skip(50)
        env.heartbeat_callback(callback_id)
    await env.skip(50)
    assert env.pending_callbacks(handle.run_id) == [callback_id]
    env.complete_callback(callback_id, "done")
    assert await env.result(handle) == {"result": "done"}
    history = [e.type for e in env.client.history(handle.run_id)]
    assert history.count("CallbackHeartbeat") == 3 and "CallbackTimedOut" not in history


@workflow(name="native.submitted")
async def submitted(ctx: Context) -> str:
    try:
        return str(await ctx.wait_for_callback(lambda callback_id: callback_id, name="job",
                                               timeout=100, heartbeat_timeout=30))
    except CallbackHeartbeatTimeout:
        return "heartbeat"
    except WaitTimeout:
        return "timeout"


async def test_wait_for_callback_times_out_on_heartbeat_or_at_its_own_timeout_if_sooner(
        env: TestEnvironment) -> None:
    quiet = env.start(submitted)
    assert await env.result(quiet) == "heartbeat"
    beaten = env.start(submitted)
    await env.settle()
    (callback_id,) = env.pending_callbacks(beaten.run_id)
    for _ in range(3):  # heartbeats keep it past 30 s; its own 100 s timeout still ends it
        await env.skip(25)
        env.heartbeat_callback(callback_id)
    assert await env.result(beaten) == "timeout"


def test_the_cli_sends_a_heartbeat_and_refuses_an_unknown_callback_with_exit_2(
        db_url: str) -> None:
    client = durable.Client(db_url)
    try:
        run_id = client.start(beating, 60).run_id
        worker = Worker([beating], client.store)
        asyncio.run(worker.run_due())
        (callback_id,) = [op.callback_id for op in client.operations(run_id) if op.callback_id]
        env = {"DURABLE_DB": db_url, "PATH": str(ROOT)}
        sent = subprocess.run([DURABLE, "callback", "heartbeat", callback_id], env=env,
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert [e.type for e in client.history(run_id)].count("CallbackHeartbeat") == 1
        unknown = subprocess.run([DURABLE, "callback", "heartbeat", "nope"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert unknown.returncode == 2 and "Traceback" not in unknown.stderr, unknown.stderr
        assert "no pending callback" in unknown.stderr
    finally:
        client.close()


# -- completion rules for gather and map ------------------------------------------------------

ASKED: list[tuple[int, int]] = []


def two_succeeded(progress: BatchProgress) -> bool:
    ASKED.append((progress.succeeded, progress.failed))
    return progress.succeeded >= 2


async def _quick(ctx: Context, i: int) -> int:
    return int(await ctx.step(lambda: i * 10, name=f"quick-{i}"))


async def _slow(ctx: Context) -> int:
    await ctx.sleep(1000, name="slow")
    return int(await ctx.step(lambda: -1, name="never"))


@workflow(name="native.quorum")
async def quorum(ctx: Context) -> dict[str, Any]:
    batch = await ctx.gather(_quick(ctx, 1), _slow(ctx), _quick(ctx, 2),
                             completion=Completion.until(two_succeeded))
    await ctx.sleep(5, name="after")  # the next invocation replays the gather
    return {"reason": batch.completion_reason, "statuses": [i.status for i in batch.items],
            "results": batch.results}


async def test_a_custom_rule_ends_the_gather_early_abandons_the_rest_and_replays_as_decided(
        env: TestEnvironment) -> None:
    ASKED.clear()
    handle = env.start(quorum)
    assert await env.result(handle) == {
        "reason": "CUSTOM_COMPLETION_SUCCEEDED",
        "statuses": ["SUCCEEDED", "NOT_COMPLETED", "SUCCEEDED"], "results": [10, 20]}
    # Asked before any branch ran and after each of the two that ended; never on replay.
    assert ASKED == [(0, 0), (1, 0), (2, 0)]
    ops = env.operations(handle.run_id)
    branches = [op for op in ops if op.sub_type == "ParallelBranch"]
    abandoned = [op for op in branches if op.error is not None]
    assert [op.name for op in abandoned] == ["1"]
    assert abandoned[0].error is not None and abandoned[0].error.type == ABANDONED
    assert not [op for op in ops if op.name == "never"]

    events = await aws_history(env.store, handle.run_id)
    (parallel,) = [e for e in of_type(events, "ContextSucceeded") if e.get("SubType") == "Parallel"]
    assert "CUSTOM_COMPLETION_SUCCEEDED" in parallel["ContextSucceededDetails"]["Result"]["Payload"]


def fail_on_first_failure(progress: BatchProgress) -> str | None:
    return "FAILED" if progress.failed else None


def never_enough(progress: BatchProgress) -> str | None:
    return "FAILED" if progress.total - progress.failed < 2 else None


def shaky(i: int) -> int:
    if i == 2:
        raise ValueError("item 2 is bad")
    return i


@workflow(name="native.custom_failure")
async def custom_failure(ctx: Context) -> dict[str, Any]:
    try:
        await ctx.map(shaky, range(4), max_concurrency=1,
                      completion=Completion.until(fail_on_first_failure))
    except BatchFailed as e:
        return {"reason": e.result.completion_reason, "message": str(e),
                "statuses": [i.status for i in e.result.items]}
    return {}


async def test_a_custom_rule_can_fail_the_batch_and_stop_it_there(
        env: TestEnvironment) -> None:
    result = await env.run(custom_failure)
    assert result["reason"] == "CUSTOM_COMPLETION_FAILED"
    assert "should_complete rule failed it" in result["message"]
    assert result["statuses"] == ["SUCCEEDED", "SUCCEEDED", "FAILED", "NOT_COMPLETED"]


def done_at_once(progress: BatchProgress) -> bool:
    return progress.total < 10


@workflow(name="native.nothing_needed")
async def nothing_needed(ctx: Context) -> str:
    batch = await ctx.map(shaky, range(3), completion=Completion.until(done_at_once))
    return batch.completion_reason


async def test_a_rule_satisfied_before_anything_ran_runs_no_item(env: TestEnvironment) -> None:
    handle = env.start(nothing_needed)
    assert await env.result(handle) == "CUSTOM_COMPLETION_SUCCEEDED"
    assert [op for op in env.operations(handle.run_id) if op.type is OperationType.STEP] == []


def test_a_custom_rule_cannot_be_combined_with_thresholds() -> None:
    with pytest.raises(UsageError, match="cannot be combined with min_successful"):
        Completion(min_successful=2, should_complete=two_succeeded)
    with pytest.raises(UsageError, match="ratio from 0 to 1"):
        Completion(tolerated_failure_ratio=10)


# -- invoking by name -------------------------------------------------------------------------

@workflow(name="native.adder")
async def adder(ctx: Context, numbers: list[int]) -> int:
    return int(await ctx.step(sum, numbers, name="add"))


@workflow(name="native.by_name")
async def by_name(ctx: Context, function: str) -> Any:
    return await ctx.invoke(function, [1, 2, 3] if function == "native.adder" else {"n": 4},
                            tenant_id="acme")


async def test_invoke_by_name_runs_a_workflow_another_deployment_serves_recorded_as_aws_does(
        any_db: str) -> None:
    async with TestEnvironment(by_name, db=any_db) as env:  # this deployment: the parent only
        other = Worker([adder], env.store, clock=env.clock)  # another: the child only
        handle = env.start(by_name, "native.adder")
        for _ in range(20):
            await env.worker.run_due()
            await other.run_due()
            if not env.get(handle.run_id).status.live:
                break
        assert handle.result() == 6

        events = await aws_history(env.store, handle.run_id)
        (started,) = of_type(events, "ChainedInvokeStarted")
        details = started["ChainedInvokeStartedDetails"]
        assert (details["FunctionName"], details["TenantId"]) == ("native.adder", "acme")
        assert details["Input"] == {"Payload": "[1,2,3]", "Truncated": False}
        (succeeded,) = of_type(events, "ChainedInvokeSucceeded")
        assert succeeded["ChainedInvokeSucceededDetails"]["Result"]["Payload"] == "6"


@workflow(name="native.by_name_with_fallback")
async def by_name_with_fallback(ctx: Context, function: str) -> Any:
    try:
        return await ctx.invoke(function, {"seconds": 600})
    except ChildFailed as e:
        return e.error.type


async def test_invoke_by_name_runs_a_registered_aws_function_within_its_execution_timeout(
        any_db: str) -> None:
    pytest.importorskip("aws_durable_execution_sdk_python")
    store = open_store(any_db)
    register(store, FunctionSpec("doubler", handler="tests.apps.aws_sdk_functions:doubler"))
    register(store, FunctionSpec("waiter", handler="tests.apps.aws_sdk_functions:waiter",
                                 execution_timeout=1.0))
    functions = FunctionWorker(store, "http://unused")
    workflows = Worker([by_name, by_name_with_fallback], store)
    tasks = [asyncio.create_task(functions.run()), asyncio.create_task(workflows.run_async())]
    client = durable.Client(store)
    try:
        doubled = client.start(by_name, "doubler")
        slow = client.start(by_name_with_fallback, "waiter")
        await wait_until_async(lambda: not any(client.get(h.run_id).status.live
                                               for h in (doubled, slow)), "both runs to end")
        assert doubled.result() == 8
        # The function's execution timeout held for a child the data plane never saw start.
        assert slow.result() == "Execution.TimedOut"
        events = await aws_history(store, doubled.run_id)
        (started,) = of_type(events, "ChainedInvokeStarted")
        assert started["ChainedInvokeStartedDetails"]["TenantId"] == "acme"
        assert started["ChainedInvokeStartedDetails"]["Input"]["Payload"] == '{"n":4}'
    finally:
        functions.stop()
        workflows.stop()
        await asyncio.gather(*tasks)
        store.close()


@workflow(name="native.two_inputs")
async def two_inputs(ctx: Context) -> Any:
    return await ctx.invoke("native.adder", 1, 2)


async def test_invoke_by_name_takes_one_input_value(env: TestEnvironment) -> None:
    with pytest.raises(durable.WorkflowFailed, match="takes one input value"):
        await env.run(two_inputs)


@workflow(name="native.fixed_child")
async def fixed_child(ctx: Context, numbers: list[int]) -> Any:
    try:
        return await ctx.invoke(adder, numbers, id="fixed")
    except ChildFailed as e:
        return e.error.type, e.error.message


async def test_an_invoke_whose_child_id_another_run_holds_fails_instead_of_waiting_forever(
        env: TestEnvironment) -> None:
    env.start(adder, [1], id="fixed")
    error_type, message = await env.run(fixed_child, [2, 3])
    assert error_type == "RunIdTaken" and "give the child another id" in message
    assert env.get("fixed").input == "[1]"  # the run holding the id is left as it was


# -- execution timeouts -----------------------------------------------------------------------

async def waits_for_a_callback(ctx: Context) -> str:
    """Waits on a callback nobody completes: only its execution timeout ends it."""
    callback = await ctx.create_callback(name="never")
    return str(await callback.result())


bounded = workflow(name="native.bounded", execution_timeout=120)(waits_for_a_callback)


async def test_an_execution_timeout_ends_a_run_waiting_on_a_callback_recorded_as_aws_does(
        env: TestEnvironment) -> None:
    handle = env.start(bounded)
    with pytest.raises(durable.WorkflowFailed, match="TIMED_OUT"):
        await env.result(handle)
    run = env.get(handle.run_id)
    assert run.status is ExecutionStatus.TIMED_OUT
    assert run.ended_at == pytest.approx(run.created_at + 120)
    events = await aws_history(env.store, handle.run_id)
    assert of_type(events, "ExecutionStarted")[0]["ExecutionStartedDetails"][
        "ExecutionTimeout"] == 120
    (timed_out,) = of_type(events, "ExecutionTimedOut")
    assert timed_out["ExecutionTimedOutDetails"]["Error"]["Payload"]["ErrorType"] == (
        "Execution.TimedOut")
    # The callback it waited on is cancelled with it (an event AWS's history has no type for).
    assert [e.type for e in env.client.history(handle.run_id)].count("CallbackCancelled") == 1


@pytest.mark.usefixtures("registry_restored")
async def test_a_run_started_by_name_where_its_code_is_unknown_gets_its_deadline_when_claimed(
        env: TestEnvironment) -> None:
    del REGISTRY[bounded.name]  # this process starts it by name, as the HTTP API would
    run, _ = env.client.start_run(bounded.name, None, "by-name")
    assert run.timeout_at is None
    env.worker = Worker([bounded], env.store, clock=env.clock)
    await env.settle()
    assert env.get("by-name").timeout_at == pytest.approx(run.created_at + 120)
    await env.skip(121)
    assert env.get("by-name").status is ExecutionStatus.TIMED_OUT


brief = workflow(name="native.brief", execution_timeout=0.5)(waits_for_a_callback)


async def test_a_run_a_worker_of_this_process_takes_at_its_start_has_its_deadline_too(
        db_url: str) -> None:
    """`start_async` beside a worker serving the workflow leases the run to it at the start, so
    no claim sets the deadline: the start must."""
    client = durable.Client(db_url)
    worker = Worker([brief], client.store)
    serving = asyncio.create_task(worker.run_async())
    try:
        await wait_until_async(lambda: worker.takes(client.store.url, brief.name),
                               "the worker to serve")
        handle = await client.start_async(brief)
        assert client.get(handle.run_id).timeout_at is not None
        ended = await wait_until_async(
            lambda: (run := client.get(handle.run_id)).status.live is False and run,
            "the run to time out")
        assert ended.status is ExecutionStatus.TIMED_OUT
    finally:
        worker.stop()
        await serving
        client.close()


def test_an_execution_timeout_must_be_positive() -> None:
    async def wf(ctx: Context) -> None:
        return None
    with pytest.raises(UsageError, match="execution_timeout must be positive"):
        durable.Workflow(wf, "native.never", execution_timeout=0)
