"""Temporal cron workflows: `start_workflow(..., cron_schedule=...)` as Temporal runs them.

Temporal's semantics, each pinned below: the first firing waits for the first tick after the
start; each firing starts at the next tick after the previous one closed, under the same workflow
id, whether it succeeded or failed; `workflow.info().cron_schedule` is the schedule and
`workflow.get_last_completion_result()` the previous successful firing's result; the chain ends
when the workflow is cancelled. Embedded on the virtual clock (both stores) and through the
serverless entry on the real one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from durable import ExecutionStatus
from durable.errors import UsageError
from durable.temporal import activity, durable_workflow, workflow
from durable.temporal.client import Client, WorkflowExecutionStatus
from durable.temporal.exceptions import ApplicationError, WorkflowFailureError
from durable.temporal.serverless import run_async
from durable.testing import TestEnvironment

START = datetime(2026, 1, 5, 0, 0, 10, tzinfo=UTC).timestamp()  # a Monday, 10 s past midnight
HOUR = 3600.0
TIMEOUT = timedelta(seconds=10)
HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works
firings: list[tuple[str, str | None, int, float]] = []


@pytest.fixture(autouse=True)
def no_firings_yet() -> Iterator[None]:
    firings.clear()
    yield


@activity.defn
async def record_firing(team: str, cron: str | None, number: int, at: float) -> None:
    if team == "flaky" and number == 1 and not any(f[0] == "flaky" for f in firings):
        firings.append((team, cron, number, at))
        raise ApplicationError("report server down", non_retryable=True)
    firings.append((team, cron, number, at))


@workflow.defn
class HourlyReport:
    def __init__(self) -> None:
        self.number = 0

    @workflow.run
    async def run(self, team: str) -> int:
        self.number = (workflow.get_last_completion_result(int) or 0) + 1
        await workflow.execute_activity(
            record_firing, args=[team, workflow.info().cron_schedule, self.number,
                                 workflow.now().timestamp()], start_to_close_timeout=TIMEOUT)
        await asyncio.sleep(60)  # the report takes a minute: queries see it running
        return self.number

    @workflow.query
    def current(self) -> int:
        return self.number


def seen(team: str) -> list[tuple[str | None, int, float]]:
    return [(cron, n, at) for t, cron, n, at in firings if t == team]


async def test_a_cron_workflow_fires_at_each_tick_under_one_workflow_id_until_cancelled(
        any_db: str) -> None:
    async with TestEnvironment(durable_workflow(HourlyReport), db=any_db, start=START) as env:
        client = Client(env.client)
        handle = await client.start_workflow(HourlyReport.run, "ops", id="report",
                                             task_queue="q", cron_schedule="0 * * * *")
        await env.settle()
        assert seen("ops") == []  # as in Temporal: nothing runs before the first tick

        await env.skip(HOUR)  # 01:00:10, the first firing is in its minute of work
        assert await handle.query(HourlyReport.current) == 1
        await env.skip(2 * HOUR)
        midnight = START - 10
        assert seen("ops") == [("0 * * * *", n, midnight + n * HOUR) for n in (1, 2, 3)]
        assert [r.run_id for r in env.client.list(workflow="HourlyReport")] == ["report"]
        assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
        await env.skip(120)  # the third firing has ended; the chain waits for the fourth tick
        with pytest.raises(UsageError, match="no workflow to query yet"):
            await handle.query(HourlyReport.current)

        await handle.cancel()
        await env.settle()
        with pytest.raises(WorkflowFailureError) as ended:
            await handle.result()
        assert ended.value.status == "CANCELED"
        await env.skip(3 * HOUR)
        assert len(seen("ops")) == 3  # cancelled: no more firings


async def test_a_failed_firing_does_not_end_the_cron_and_keeps_the_last_success(
        any_db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "durable")
    async with TestEnvironment(durable_workflow(HourlyReport), db=any_db, start=START) as env:
        client = Client(env.client)
        await client.start_workflow(HourlyReport.run, "flaky", id="flaky", task_queue="q",
                                    cron_schedule="30 * * * *")
        await env.skip(3 * HOUR)
        # firing 1 failed, so firing 2 found no completion result and counted 1 again
        assert [n for _, n, _ in seen("flaky")] == [1, 1, 2]
        assert "this firing failed" in caplog.text and "report server down" in caplog.text
        assert env.get("flaky").status is ExecutionStatus.RUNNING


async def test_cron_schedules_take_temporals_zone_prefix_and_bad_ones_fail_at_the_start(
        db_url: str) -> None:
    async with TestEnvironment(durable_workflow(HourlyReport), db=db_url, start=START) as env:
        client = Client(env.client)
        with pytest.raises(UsageError, match="invalid cron expression 'every hour'"):
            await client.start_workflow(HourlyReport.run, "x", id="bad", task_queue="q",
                                        cron_schedule="every hour")
        with pytest.raises(UsageError, match="unknown time zone 'Mars/Olympus'"):
            await client.start_workflow(HourlyReport.run, "x", id="bad", task_queue="q",
                                        cron_schedule="CRON_TZ=Mars/Olympus 0 9 * * *")
        assert env.client.list(workflow="HourlyReport") == []

        await client.start_workflow(HourlyReport.run, "paris", id="paris", task_queue="q",
                                    cron_schedule="CRON_TZ=Europe/Paris 0 9 * * *")
        await env.skip(24 * HOUR)
        [(_, _, at)] = seen("paris")
        assert datetime.fromtimestamp(at, UTC).hour == 8  # 09:00 in Paris, in January


@workflow.defn
class PagedExport:
    @workflow.run
    async def run(self, page: int) -> int:
        await workflow.execute_activity(
            record_firing, args=["paged", workflow.info().cron_schedule, page,
                                 workflow.now().timestamp()], start_to_close_timeout=TIMEOUT)
        if page < 3:
            workflow.continue_as_new(page + 1)
        return page


async def test_a_firing_that_continues_as_new_goes_on_at_once_and_keeps_the_schedule(
        db_url: str) -> None:
    async with TestEnvironment(durable_workflow(PagedExport), db=db_url, start=START) as env:
        client = Client(env.client)
        await client.start_workflow(PagedExport.run, 1, id="export", task_queue="q",
                                    cron_schedule="0 * * * *")
        await env.skip(2 * HOUR)
        first, second = START - 10 + HOUR, START - 10 + 2 * HOUR
        # pages 1-3 in the first firing, at once; the next tick starts from the last input
        assert seen("paged") == [("0 * * * *", 1, first), ("0 * * * *", 2, first),
                                 ("0 * * * *", 3, first), ("0 * * * *", 3, second)]


@activity.defn
async def ping(number: int) -> None:
    firings.append(("ping", None, number, 0.0))


@workflow.defn
class Ping:
    @workflow.run
    async def run(self) -> int:
        number = (workflow.get_last_completion_result(int) or 0) + 1
        await workflow.execute_activity(ping, number, start_to_close_timeout=TIMEOUT)
        return number


async def test_a_cron_workflow_fires_through_the_serverless_entry(db_url: str) -> None:
    """Each call does what is due; a firing waiting for its tick costs nothing between calls.
    The sixth (seconds) field is Durable's extension, used to keep the test short."""
    client = Client(db_url)
    handle = await client.start_workflow(Ping.run, id="ping", task_queue="q",
                                         cron_schedule="* * * * * */1")

    async def serve_until_three_fired() -> None:
        while len(seen("ping")) < 3:
            summary = await run_async([Ping], [ping], db=db_url)
            if summary["next_due"] is not None:  # nothing to do until then: the next tick
                await asyncio.sleep(max(summary["next_due"] - time.time(), 0.0))

    await asyncio.wait_for(serve_until_three_fired(), HANG_GUARD)
    assert [n for _, n, _ in seen("ping")][:3] == [1, 2, 3]
    await handle.cancel()
    await run_async([Ping], [ping], db=db_url)
    assert client.durable.get("ping").status is ExecutionStatus.STOPPED
    client.durable.close()
