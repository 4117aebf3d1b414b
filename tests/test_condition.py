"""ctx.wait_for_condition: a check polled until a wait strategy stops it, recorded as AWS's SDK
records it (one STEP of sub-type WaitForCondition; a RETRY carrying the state per poll whose
condition is not met), suspended between polls, and never redoing a poll it recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import durable
from durable import Context, WaitDecision, WaitStrategy, workflow
from durable.invoke.contract import HistoryContext, history_to_wire
from durable.model import OperationStatus, OperationType, SubType
from durable.testing import TestEnvironment
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DEADLINE

CHECKS: list[Any] = []  # the states each check was called with, in this process


def count_up(state: int) -> int:
    CHECKS.append(state)
    return state + 1


@pytest.fixture(autouse=True)
def checks_cleared() -> None:
    CHECKS.clear()


@workflow(name="condition.counter")
async def counter(ctx: Context, target: int, delay: float) -> dict[str, Any]:
    """Counts up to `target`, then sleeps: the invocation after the sleep replays the poll."""
    strategy = WaitStrategy(lambda n: n < target, initial_delay=delay, backoff_rate=1.5,
                            jitter=0)
    reached = await ctx.wait_for_condition(count_up, initial_state=0, wait_strategy=strategy,
                                           name="count")
    await ctx.sleep(delay)
    return {"reached": reached, "after": await ctx.step(lambda: "after", name="after")}


async def test_polls_until_the_strategy_stops_suspending_between_polls() -> None:
    async with TestEnvironment(counter) as env:
        handle = env.start(counter, 3, 10.0)
        assert await env.result(handle) == {"reached": 3, "after": "after"}
        history = env.client.history(handle.run_id)
        op = env.operations(handle.run_id)[0]

    assert CHECKS == [0, 1, 2]  # each poll once, from the state the previous one left
    assert (op.type, op.sub_type, op.status, op.attempt, op.result) == (
        OperationType.STEP, SubType.WAIT_FOR_CONDITION, OperationStatus.SUCCEEDED, 3, "3")
    polls = [e for e in history if e.operation_id == op.id and e.type != "StepReady"]
    assert [e.type for e in polls] == ["StepStarted", "StepFailed"] * 2 + [
        "StepStarted", "StepSucceeded"]
    retries = [e for e in polls if e.type == "StepFailed"]
    assert [(e.details["state"], e.details["error"]) for e in retries] == [("1", None),
                                                                           ("2", None)]
    assert [e.details["next_attempt_at"] - e.timestamp for e in retries] == pytest.approx(
        [10.0, 15.0])
    pending = [e for e in history if e.type == "InvocationCompleted"
               and e.details["status"] == "PENDING"]
    assert len(pending) == 3  # two between polls, one for the sleep: no process waited


async def test_a_replay_returns_the_recorded_state_without_polling_again(
        client: durable.Client) -> None:
    handle = client.start(counter, 2, 0.05)
    worker = durable.Worker([counter], client.store)
    serving = asyncio.create_task(worker.run_async())
    try:
        run = await asyncio.to_thread(client.wait, handle.run_id, DEADLINE)
    finally:
        worker.stop()
        await serving
    assert run.result is not None
    assert json.loads(run.result) == {"reached": 2, "after": "after"}
    # The last invocation, after the sleep, replayed the operation: no poll ran in it.
    assert CHECKS == [0, 1]
    ends = [e.details["status"] for e in client.history(handle.run_id)
            if e.type == "InvocationCompleted"]
    assert ends == ["PENDING", "PENDING", "SUCCEEDED"]


def _flaky(state: int) -> int:
    raise ConnectionError(f"status service down at state {state}")


@workflow(name="condition.failing")
async def failing(ctx: Context, which: str) -> dict[str, Any]:
    check = _flaky if which == "check" else count_up
    try:
        await ctx.wait_for_condition(check, initial_state=0, name="probe",
                                     wait_strategy=WaitStrategy(lambda n: True, max_attempts=2,
                                                                initial_delay=1.0, jitter=0))
    except durable.StepFailed as e:
        return {"type": e.error_type, "message": e.error_message}
    return {"type": None, "message": None}


@pytest.mark.parametrize(("which", "error"), [
    ("check", ("ConnectionError", "status service down at state 0")),
    ("strategy", ("ConditionNotMet",
                  "wait_for_condition exhausted 2 attempts before the condition was met"))])
async def test_a_raising_check_or_an_exhausted_strategy_fails_the_operation_for_good(
        which: str, error: tuple[str, str]) -> None:
    async with TestEnvironment(failing) as env:
        handle = env.start(failing, which)
        assert await env.result(handle) == {"type": error[0], "message": error[1]}
        (op,) = env.operations(handle.run_id)
    assert op.status is OperationStatus.FAILED
    assert op.attempt == (1 if which == "check" else 2)


@workflow(name="condition.custom")
async def custom(ctx: Context) -> list[int]:
    def strategy(state: list[int], polls: int) -> WaitDecision:
        return WaitDecision.stop_polling() if polls == 3 else WaitDecision.continue_waiting(0.5)
    return list(await ctx.wait_for_condition(lambda s: [*s, len(s)], initial_state=(),
                                             wait_strategy=strategy, name="grow"))


async def test_any_function_of_state_and_polls_is_a_strategy_and_the_state_is_json() -> None:
    async with TestEnvironment(custom) as env:
        assert await env.run(custom) == [0, 1, 2]  # the tuple reached the check as a list


def test_wait_decision_and_strategy_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        WaitDecision.continue_waiting(-1)
    with pytest.raises(ValueError, match="max_attempts"):
        WaitStrategy(lambda s: True, max_attempts=0)
    with pytest.raises(ValueError, match="jitter"):
        WaitStrategy(lambda s: True, jitter=2)


async def test_aws_history_shows_each_unmet_poll_as_step_succeeded_with_retry_details() -> None:
    async with TestEnvironment(counter) as env:
        handle = env.start(counter, 2, 10.0)
        await env.result(handle)
        run, ops = env.get(handle.run_id), env.operations(handle.run_id)
        events = env.client.history(handle.run_id)
    wire = history_to_wire(events, HistoryContext(run, run.run_id, ops, True,
                                                  lambda child: ("", "", None)))
    polls = [e for e in wire if e.get("SubType") == SubType.WAIT_FOR_CONDITION]
    assert wire
    assert [(e["EventType"], e.get("StepSucceededDetails", {}).get("Result"),
             e.get("StepSucceededDetails", {}).get("RetryDetails")) for e in polls] == [
        ("StepStarted", None, None),
        ("StepSucceeded", {"Payload": "1", "Truncated": False},
         {"CurrentAttempt": 1, "NextAttemptDelaySeconds": 10}),
        ("StepStarted", None, None),
        ("StepSucceeded", {"Payload": "2", "Truncated": False}, {"CurrentAttempt": 2})]


@pytest.mark.crash
def test_a_worker_killed_mid_poll_redoes_only_that_poll(crash_lab_any_db: CrashLab) -> None:
    lab = crash_lab_any_db
    run_id = lab.start(app.poller, 4, id="poller")
    lab.wait_crashed(lab.worker(lease=0.5, crash_at=["poll2:inside"]))
    (op,) = lab.client.operations(run_id)
    assert (op.status, op.attempt, op.result) == (OperationStatus.READY, 2, "2")

    lab.worker(lease=0.5)
    assert lab.finish(run_id).result == "4"

    fx = lab.effects()
    assert [fx[f"poll{n}"] for n in range(4)] == [1, 1, 2, 1]  # only the one in flight again
    (op,) = lab.client.operations(run_id)
    assert (op.status, op.attempt) == (OperationStatus.SUCCEEDED, 4)
    assert len(lab.history(run_id, "StepStarted")) == 4  # the lost poll recorded nothing
