"""durable.temporal's activity heartbeats, cancellation and async completion, written as
Temporal's documentation and samples write them, run in a worker on both stores.

Each expected value is Temporal's documented behaviour: heartbeat details reach the next
attempt as `info().heartbeat_details`, an activity that stops heartbeating is timed out and
retried, cancellation reaches an async activity as asyncio.CancelledError and a sync one from
`activity.heartbeat()`, a handle's `cancellation_type` decides what the workflow sees, and an
activity that raised `raise_complete_async()` is completed through the client.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import timedelta
from typing import Any

import pytest

from durable import ExecutionStatus
from durable.errors import UsageError
from durable.model import OperationStatus
from durable.temporal import activity, workflow
from durable.temporal.client import Client, WorkflowFailureError
from durable.temporal.common import RetryPolicy
from durable.temporal.exceptions import ActivityError, ApplicationError, CancelledError
from durable.temporal.serverless import run_async
from durable.temporal.worker import Worker
from tests.kit import wait_until_async
from tests.test_temporal_workflows import load_example

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works
EVENTS: list[str] = []
FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=50))


@pytest.fixture(autouse=True)
def events() -> Iterator[list[str]]:
    EVENTS.clear()
    yield EVENTS
    EVENTS.clear()


# -- heartbeat details -------------------------------------------------------------------------

@activity.defn
async def process_units(total: int) -> list[int]:
    """Resumes from the unit its last heartbeat named; attempt 1 fails half way."""
    info = activity.info()
    start = info.heartbeat_details[0] if info.heartbeat_details else 0
    EVENTS.append(f"attempt {info.attempt} starts at {start}")
    for unit in range(start, total):
        if info.attempt == 1 and unit == 3:
            raise ApplicationError("the backend went away")
        EVENTS.append(f"unit {unit}")
        activity.heartbeat(unit + 1)
    return list(range(total))


@workflow.defn
class ProcessUnits:
    @workflow.run
    async def run(self, total: int) -> list[int]:
        return await workflow.execute_activity(
            process_units, total, start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=10), retry_policy=FAST_RETRY)


async def test_heartbeat_details_reach_the_next_attempt_which_resumes_from_them(
        any_db: str) -> None:
    """The last details (here throttled, never sent before the failure) travel with it."""
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[ProcessUnits],
                      activities=[process_units]):
        result = await asyncio.wait_for(client.execute_workflow(
            ProcessUnits.run, 5, id="units", task_queue="q"), HANG_GUARD)
    assert result == [0, 1, 2, 3, 4]
    assert EVENTS == ["attempt 1 starts at 0", "unit 0", "unit 1", "unit 2",
                      "attempt 2 starts at 3", "unit 3", "unit 4"]
    client.durable.close()


async def test_heartbeat_details_survive_the_serverless_entry_between_calls(
        db_url: str) -> None:
    client = Client(db_url)
    handle = await client.start_workflow(ProcessUnits.run, 5, id="units-serverless",
                                         task_queue="q")

    async def call_until_finished() -> None:  # as a scheduler would call the function
        while client.durable.get(handle.id).status is not ExecutionStatus.SUCCEEDED:
            await run_async([ProcessUnits], [process_units], db=db_url)
    await asyncio.wait_for(call_until_finished(), HANG_GUARD)
    assert await handle.result() == [0, 1, 2, 3, 4]
    assert EVENTS.count("attempt 2 starts at 3") == 1
    client.durable.close()


# -- heartbeat timeout -------------------------------------------------------------------------

@activity.defn
async def goes_quiet() -> str:
    """Attempt 1 heartbeats once, then hangs without heartbeating."""
    if activity.info().attempt > 1:
        return f"done on attempt {activity.info().attempt}"
    activity.heartbeat("started")
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        EVENTS.append("attempt 1 cancelled")
        raise
    return "never"


@workflow.defn
class QuietActivity:
    @workflow.run
    async def run(self, attempts: int) -> str:
        try:
            return await workflow.execute_activity(
                goes_quiet, start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=timedelta(seconds=1),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50),
                                         maximum_attempts=attempts))
        except ActivityError as e:
            return f"{type(e.cause).__name__}: {e.cause}"


async def test_an_activity_that_stops_heartbeating_is_timed_out_and_retried(
        any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[QuietActivity],
                      activities=[goes_quiet]):
        retried = await asyncio.wait_for(client.execute_workflow(
            QuietActivity.run, 0, id="quiet-retried", task_queue="q"), HANG_GUARD)
        spent = await asyncio.wait_for(client.execute_workflow(
            QuietActivity.run, 1, id="quiet-spent", task_queue="q"), HANG_GUARD)
    assert retried == "done on attempt 2"
    assert spent.startswith("TimeoutError: activity heartbeat timeout")
    assert EVENTS == ["attempt 1 cancelled", "attempt 1 cancelled"]
    client.durable.close()


# -- cancellation ------------------------------------------------------------------------------

@activity.defn
async def heartbeat_until_cancelled() -> str:
    try:
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        EVENTS.append(f"cancelled, is_cancelled() {activity.is_cancelled()}")
        raise


@workflow.defn
class LongActivity:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            heartbeat_until_cancelled, start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=2))


async def test_a_cancelled_workflow_cancels_its_running_async_activity_at_its_next_await(
        any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[LongActivity],
                      activities=[heartbeat_until_cancelled]):
        handle = await client.start_workflow(LongActivity.run, id="long", task_queue="q")
        await wait_until_async(lambda: any(
            op.status is OperationStatus.STARTED for op in client.durable.operations("long")),
            "the activity to run")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(handle.result(), HANG_GUARD)
    assert isinstance(failed.value.cause, CancelledError)
    assert EVENTS == ["cancelled, is_cancelled() True"]
    [step] = client.durable.operations("long")
    assert step.status is OperationStatus.CANCELLED  # so a replay meets the same
    client.durable.close()


async def test_the_hello_cancellation_sample_cancels_its_sync_activity_through_heartbeat(
        any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temporal's sample, imports changed only: the cancelled workflow's sync activity gets
    CancelledError from activity.heartbeat(), and the cleanup activity runs once."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", any_db)
    sample = load_example("hello_cancellation")
    out = io.StringIO()
    with redirect_stdout(out):
        await asyncio.wait_for(sample.main("hello-cancellation"), HANG_GUARD)
        # the activity's thread learns at its next heartbeat, maybe after the run ended
        await wait_until_async(lambda: "Activity cancelled" in out.getvalue(),
                               "the activity to be told")
    lines = out.getvalue().splitlines()
    assert lines.count("Executing cleanup activity") == 1
    assert "Heartbeating activity" in lines and lines.count("Activity cancelled") == 1
    assert any(line.startswith("Got expected exception:") for line in lines)
    run = Client(any_db).durable.get("hello-cancellation")
    assert run.status is ExecutionStatus.STOPPED


@activity.defn
def heartbeat_forever_sync() -> None:
    try:
        while True:
            activity.heartbeat()
            time.sleep(0.05)
    except CancelledError:
        EVENTS.append("sync activity stopped")
        raise


@workflow.defn
class ForeverSync:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(heartbeat_forever_sync,
                                        start_to_close_timeout=timedelta(hours=1),
                                        heartbeat_timeout=timedelta(seconds=2))


async def test_a_terminated_runs_sync_activity_is_stopped_by_its_next_refused_heartbeat(
        any_db: str) -> None:
    """Terminating fences the invocation out: the activity's next report is refused, as one
    from a worker whose run was taken over would be, and its thread stops instead of running
    on unheard."""
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[ForeverSync],
                      activities=[heartbeat_forever_sync]):
        await client.start_workflow(ForeverSync.run, id="forever", task_queue="q")
        await wait_until_async(lambda: any(
            op.status is OperationStatus.STARTED for op in client.durable.operations("forever")),
            "the activity to run")
        client.durable.terminate("forever", reason="operator")
        await wait_until_async(lambda: EVENTS == ["sync activity stopped"],
                               "the activity to stop")
    assert client.durable.get("forever").status is ExecutionStatus.STOPPED
    client.durable.close()


@activity.defn
async def quick() -> str:
    return "quick"


@activity.defn
async def cancellable(cleans_up: bool) -> str:
    try:
        while True:
            activity.heartbeat()
            await asyncio.sleep(0.1)
    except asyncio.CancelledError:
        EVENTS.append("activity cancelled")
        if cleans_up:
            await asyncio.sleep(0.2)
            EVENTS.append("activity cleaned up")
            return "cleaned up"
        raise


@workflow.defn
class CancelOne:
    """Start an activity, cancel it through its handle once another activity is done."""

    @workflow.run
    async def run(self, cancellation_type: int, cleans_up: bool) -> str:
        handle = workflow.start_activity(
            cancellable, cleans_up, start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=timedelta(seconds=5),
            cancellation_type=workflow.ActivityCancellationType(cancellation_type))

        async def cancel_after_quick() -> str:
            done = await workflow.execute_activity(
                quick, start_to_close_timeout=timedelta(seconds=5))
            handle.cancel()
            return done

        try:
            result, _ = await asyncio.gather(handle, cancel_after_quick())
            return f"result: {result}"
        except ActivityError as e:
            return f"ActivityError caused by {type(e.cause).__name__}"


@pytest.mark.parametrize(("cancellation_type", "cleans_up", "workflow_sees", "activity_saw"), [
    (workflow.ActivityCancellationType.TRY_CANCEL, False,
     "ActivityError caused by CancelledError", ["activity cancelled"]),
    (workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED, False,
     "ActivityError caused by CancelledError", ["activity cancelled"]),
    (workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED, True,
     "result: cleaned up", ["activity cancelled", "activity cleaned up"]),
    (workflow.ActivityCancellationType.ABANDON, False,  # stopped by its next heartbeat
     "ActivityError caused by CancelledError", ["activity cancelled"]),  # once it ended
])
async def test_cancelling_an_activity_handle_follows_its_cancellation_type(
        any_db: str, cancellation_type: int, cleans_up: bool, workflow_sees: str,
        activity_saw: list[str]) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[CancelOne],
                      activities=[cancellable, quick]):
        handle = await client.start_workflow(CancelOne.run, args=[cancellation_type, cleans_up],
                                             id="cancel-one", task_queue="q")
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == workflow_sees
        # TRY_CANCEL and ABANDON do not wait for the activity to hear of it
        await wait_until_async(lambda: len(EVENTS) >= len(activity_saw),
                               "the activity to hear of it")
    assert activity_saw == EVENTS
    # the cancelled step is recorded as such: replays see the same (never retried)
    [step] = [op for op in client.durable.operations("cancel-one") if op.name == "cancellable"]
    assert step.attempt == 1
    client.durable.close()


# -- async completion --------------------------------------------------------------------------

async def test_the_hello_async_activity_completion_sample_completes_through_the_client(
        any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", any_db)
    sample = load_example("hello_async_activity_completion")
    out = io.StringIO()
    with redirect_stdout(out):
        result = await asyncio.wait_for(sample.main("hello-async"), HANG_GUARD)
    assert result == "Hello, World!"
    assert out.getvalue().splitlines() == ["Completing activity asynchronously",
                                           "Waiting one second...", "Waiting one second...",
                                           "Waiting one second...", "Result: Hello, World!"]


TOKENS: list[bytes] = []


@activity.defn
async def hand_out_token() -> str:
    TOKENS.append(activity.info().task_token)
    activity.raise_complete_async()


@workflow.defn
class AwaitsCompletion:
    @workflow.run
    async def run(self) -> str:
        try:
            return await workflow.execute_activity(
                hand_out_token, start_to_close_timeout=timedelta(seconds=30))
        except ActivityError as e:
            return f"{type(e.cause).__name__}: {e.cause}"


def handed_out(handed: list[bytes], count: int) -> Callable[[], bool]:
    return lambda: len(handed) >= count


@contextmanager
def tokens() -> Iterator[list[bytes]]:
    TOKENS.clear()
    yield TOKENS
    TOKENS.clear()


async def test_an_async_completion_can_fail_or_report_cancellation_by_token_or_ids(
        any_db: str) -> None:
    client = Client(any_db)
    outcomes: dict[str, Any] = {}
    with tokens() as handed:
        async with Worker(client, task_queue="q", workflows=[AwaitsCompletion],
                          activities=[hand_out_token]):
            for how in ("fail", "cancel", "by-ids"):
                handle = await client.start_workflow(AwaitsCompletion.run, id=f"async-{how}",
                                                     task_queue="q")
                await wait_until_async(handed_out(handed, len(outcomes) + 1),
                                       "the token to be handed out")
                token = handed[-1]
                if how == "fail":
                    await client.get_async_activity_handle(task_token=token).fail(
                        ApplicationError("card declined", type="Declined"))
                elif how == "cancel":
                    await client.get_async_activity_handle(
                        task_token=token).report_cancellation()
                else:
                    activity_id = json.loads(token)["activity_id"]
                    await client.get_async_activity_handle(
                        workflow_id=handle.id, activity_id=activity_id).complete("by ids")
                outcomes[how] = await asyncio.wait_for(handle.result(), HANG_GUARD)
            with pytest.raises(UsageError, match="no longer waiting"):
                await client.get_async_activity_handle(task_token=handed[-1]).complete("again")
    assert outcomes == {"fail": "Declined: card declined",
                        "cancel": "CancelledError: Cancelled", "by-ids": "by ids"}
    with pytest.raises(UsageError, match="not a task token"):
        client.get_async_activity_handle(task_token=b"nonsense")
    client.durable.close()


async def test_an_async_completion_through_the_serverless_entry_holds_nothing_meanwhile(
        db_url: str) -> None:
    """A call runs the activity, which hands out its token; the run then waits, suspended,
    between calls; the completion makes the next call finish it."""
    client = Client(db_url)
    with tokens() as handed:
        handle = await client.start_workflow(AwaitsCompletion.run, id="async-serverless",
                                             task_queue="q")
        first = await run_async([AwaitsCompletion], [hand_out_token], db=db_url)
        assert first["completed"] == 0 and len(handed) == 1
        assert client.durable.get(handle.id).status is ExecutionStatus.RUNNING
        idle = await run_async([AwaitsCompletion], [hand_out_token], db=db_url)
        assert idle["invocations"] == 0  # nothing is due until the completion comes
        await client.get_async_activity_handle(task_token=handed[0]).complete("done")
        await run_async([AwaitsCompletion], [hand_out_token], db=db_url)
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == "done"
        assert len(handed) == 1  # the body ran once
    client.durable.close()
