"""Schedules: `@workflow(schedule=...)` starts exactly one run per cron tick, however many workers
serve it, across restarts and across a SIGKILL between a tick and its run; ticks missed while no
worker ran follow the workflow's policy; a bad cron expression or time zone fails when the
decorator runs. In-process tests drive a virtual clock; the crash test runs real worker processes
(tests/apps/sched_app.py) on the real clock.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sqlite3
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import Context, ExecutionStatus, UsageError, workflow
from durable.model.ids import check_run_id
from durable.model.schedule import MISSED_GRACE, Missed
from durable.testing import TestEnvironment, VirtualClock
from tests.crashkit import CrashLab
from tests.kit import ROOT, Subprocess, wait_until, wait_until_async
from tests.schedkit import fleet, spawn, utc

pytestmark = pytest.mark.usefixtures("registry_restored")

T0 = utc(2025, 1, 1, 12, 0, 30)  # 30 s after a tick of */5


@pytest.fixture
def db_url(any_db: str) -> str:
    """This module's tests that use `db_url` (or `client`) run on SQLite, then PostgreSQL."""
    return any_db


def every_five_minutes(seen: list[str], missed: Missed = "skip") -> durable.Workflow[..., str]:
    """A fresh scheduled workflow whose step appends the tick it was started for to `seen`."""
    def visit(tick: str) -> str:
        seen.append(tick)
        return tick

    @workflow(name=f"every5-{uuid.uuid4().hex[:8]}", schedule="*/5 * * * *", missed=missed)
    async def every5(ctx: Context, tick: datetime) -> str:
        return str(await ctx.step(visit, tick.isoformat(), name="visit"))
    return every5


def tick_id(wf: durable.Workflow[..., Any], when: float) -> str:
    return f"{wf.name}@{datetime.fromtimestamp(when, UTC).isoformat()}"


def run_ids(client: durable.Client, wf: durable.Workflow[..., Any]) -> list[str]:
    return sorted(r.run_id for r in client.list(workflow=wf.name, limit=10_000))


async def ended(client: durable.Client, run_id: str) -> None:
    def done() -> bool:
        runs = client.list(limit=10_000)
        return any(r.run_id == run_id and r.status is ExecutionStatus.SUCCEEDED for r in runs)
    await wait_until_async(done, f"run {run_id} to succeed")


# -- one run per tick ----------------------------------------------------------------------------

async def test_three_workers_started_at_once_start_exactly_one_run_per_tick(
        db_url: str, client: durable.Client) -> None:
    clock = VirtualClock(T0)
    seen: list[str] = []
    wf = every_five_minutes(seen)
    ticks = [utc(2025, 1, 1, 12, minute) for minute in (5, 10, 15, 20)]
    async with fleet(db_url, [wf], size=3, clock=clock) as workers:
        await workers.ticking()
        assert run_ids(client, wf) == []  # the 12:00 tick came before the schedule existed
        for tick in ticks:
            clock.advance_to(tick + 0.001)
            workers.wake()
            await ended(client, tick_id(wf, tick))

    assert run_ids(client, wf) == sorted(tick_id(wf, t) for t in ticks)
    assert seen == [datetime.fromtimestamp(t, UTC).isoformat() for t in ticks]
    for run_id in run_ids(client, wf):
        assert [e.type for e in client.history(run_id)].count("ExecutionStarted") == 1
    (info,) = durable.Client(client.store, clock=clock).schedules([wf])
    assert info.last_tick == datetime.fromtimestamp(ticks[-1], UTC)
    assert info.last_run_id == tick_id(wf, ticks[-1])
    assert info.next_fire == datetime.fromtimestamp(utc(2025, 1, 1, 12, 25), UTC)


@pytest.mark.parametrize("missed", ["skip", "run_once"])
async def test_a_tick_fired_before_a_restart_is_not_fired_again_after_it(
        db_url: str, client: durable.Client, missed: Missed) -> None:
    clock = VirtualClock(T0)
    wf = every_five_minutes([], missed)
    first, second = utc(2025, 1, 1, 12, 5), utc(2025, 1, 1, 12, 10)
    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()
        clock.advance_to(first + 1)
        workers.wake()
        await ended(client, tick_id(wf, first))

    clock.advance(10)  # the same tick, still well within the grace, seen by new workers
    async with fleet(db_url, [wf], size=2, clock=clock) as workers:
        await workers.ticking()
        assert run_ids(client, wf) == [tick_id(wf, first)]
        clock.advance_to(second)
        workers.wake()
        await ended(client, tick_id(wf, second))
    assert run_ids(client, wf) == [tick_id(wf, first), tick_id(wf, second)]


# -- missed ticks --------------------------------------------------------------------------------

@pytest.mark.parametrize(("missed", "caught_up"), [("skip", []), ("run_once", [(13, 25)])])
async def test_ticks_missed_while_no_worker_ran_follow_the_policy(
        db_url: str, client: durable.Client, missed: Missed,
        caught_up: list[tuple[int, int]]) -> None:
    clock = VirtualClock(T0)
    seen: list[str] = []
    wf = every_five_minutes(seen, missed)
    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()  # the schedule exists from 12:00:30

    clock.advance_to(utc(2025, 1, 1, 13, 27))  # 12:05 ... 13:25: 17 ticks with no worker
    expected = [tick_id(wf, utc(2025, 1, 1, h, m)) for h, m in caught_up]
    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()
        for run_id in expected:
            await ended(client, run_id)
        assert run_ids(client, wf) == expected
        next_tick = utc(2025, 1, 1, 13, 30)
        assert workers.workers[0].next_tick == next_tick  # it sleeps until then
        clock.advance_to(next_tick)
        workers.wake()
        await ended(client, tick_id(wf, next_tick))
    assert run_ids(client, wf) == [*expected, tick_id(wf, next_tick)]
    assert len(seen) == len(expected) + 1


async def test_skip_still_fires_a_tick_that_a_restart_only_delayed_by_seconds(
        db_url: str, client: durable.Client) -> None:
    clock = VirtualClock(T0)
    wf = every_five_minutes([], "skip")
    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()
    tick = utc(2025, 1, 1, 12, 5)
    clock.advance_to(tick + MISSED_GRACE - 1)  # a deploy's worth of downtime over the tick
    async with fleet(db_url, [wf], clock=clock):
        await ended(client, tick_id(wf, tick))


# -- what the run receives -----------------------------------------------------------------------

async def test_the_run_receives_its_tick_in_the_schedules_time_zone() -> None:
    @workflow(name=f"paris-{uuid.uuid4().hex[:8]}", schedule="0 9 * * *",
              timezone="Europe/Paris")
    async def morning(ctx: Context, tick: datetime) -> str:
        return tick.isoformat()

    @workflow(name=f"plain-{uuid.uuid4().hex[:8]}", schedule="0 9 * * *")
    async def inputless(ctx: Context) -> str:
        return "done"

    async with TestEnvironment(morning, inputless, start=utc(2025, 1, 1, 12, 0)) as env:
        await env.skip(24 * 3600)  # virtual time: both 09:00s of 2 January fire
        run_id = f"{morning.name}@2025-01-02T09:00:00+01:00"
        assert await env.result(env.client.handle(run_id)) == "2025-01-02T09:00:00+01:00"
        plain = env.get(f"{inputless.name}@2025-01-02T09:00:00+00:00")
        assert plain.status is ExecutionStatus.SUCCEEDED and plain.input is None


async def test_a_workflow_named_outside_the_run_id_rule_still_starts_one_run_per_tick() -> None:
    @workflow(name=f"daily report <{uuid.uuid4().hex[:8]}>", schedule="0 9 * * *")
    async def spaced(ctx: Context) -> str:
        return "done"

    async with TestEnvironment(spaced, start=utc(2025, 1, 1, 12, 0)) as env:
        await env.skip(2 * 24 * 3600)  # the 09:00s of 2 and 3 January
        runs = env.client.list(workflow=spaced.name)
        assert sorted(r.run_id for r in runs) == [
            spaced.schedule.run_id(spaced.name, utc(2025, 1, day, 9)) for day in (2, 3)]
        assert all(check_run_id(r.run_id) == r.run_id for r in runs)
        assert {r.status for r in runs} == {ExecutionStatus.SUCCEEDED}


# -- errors at decoration time -------------------------------------------------------------------

@pytest.mark.parametrize(("options", "expected"), [
    ({"schedule": "every day at 2"}, "invalid cron expression 'every day at 2'"),
    ({"schedule": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
    ({"schedule": "0 0 31 2 *"}, "cron expression '0 0 31 2 *' never fires"),
    ({"schedule": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
    ({"schedule": "0 2 * * *", "missed": "later"}, "missed='later' is not a policy"),
    ({"timezone": "UTC"}, "timezone= and missed= only apply with a schedule"),
])
def test_a_bad_schedule_fails_at_decoration_naming_the_workflow(options: dict[str, Any],
                                                                expected: str) -> None:
    with pytest.raises(UsageError) as e:
        @workflow(name="nightly", **options)
        async def nightly(ctx: Context) -> None: ...
    assert str(e.value).startswith("@workflow nightly: ")
    assert expected in str(e.value)


def test_a_scheduled_workflow_takes_at_most_the_tick_as_input() -> None:
    with pytest.raises(UsageError, match="@workflow report: a scheduled workflow takes no input "
                                         "or one parameter, the tick's datetime"):
        @workflow(name="report", schedule="0 2 * * *")
        async def report(ctx: Context, day: datetime, region: str) -> None: ...


# -- listing -------------------------------------------------------------------------------------

async def test_client_schedules_lists_next_fire_and_last_tick(db_url: str,
                                                             client: durable.Client) -> None:
    clock = VirtualClock(T0)
    wf = every_five_minutes([], "run_once")

    @workflow(name=f"unscheduled-{uuid.uuid4().hex[:8]}")
    async def unscheduled(ctx: Context) -> None: ...

    lister = durable.Client(client.store, clock=clock)
    (info,) = lister.schedules([wf, unscheduled])
    assert (info.workflow, info.cron, info.timezone, info.missed) == (
        wf.name, "*/5 * * * *", "UTC", "run_once")
    assert not info.registered and info.last_tick is None and info.last_run_id is None
    assert info.next_fire == datetime.fromtimestamp(utc(2025, 1, 1, 12, 5), UTC)

    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()
        clock.advance_to(utc(2025, 1, 1, 12, 5))
        workers.wake()
        await ended(client, tick_id(wf, clock()))
    clock.advance_to(utc(2025, 1, 1, 12, 31))  # 12:10 ... 12:30 missed; run_once owes 12:30
    (info,) = lister.schedules([wf])
    assert info.registered and info.last_run_id == tick_id(wf, utc(2025, 1, 1, 12, 5))
    assert info.last_tick == datetime.fromtimestamp(utc(2025, 1, 1, 12, 5), UTC)
    assert info.next_fire == datetime.fromtimestamp(utc(2025, 1, 1, 12, 30), UTC)


def test_a_one_shot_run_does_not_fire_the_schedules_it_happens_to_serve(db_url: str,
                                                                         client: durable.Client
                                                                         ) -> None:
    @workflow(name=f"often-{uuid.uuid4().hex[:8]}", schedule="* * * * * *")
    async def often(ctx: Context) -> None: ...

    @workflow(name=f"once-{uuid.uuid4().hex[:8]}")
    async def once(ctx: Context) -> str:
        await ctx.sleep(1.2)  # across at least one tick of `often`
        return "ok"

    assert durable.run(once, db=db_url) == "ok"
    (info,) = client.schedules([often])
    assert not info.registered and run_ids(client, often) == []


# -- real time, real processes ---------------------------------------------------------------------

async def test_a_worker_wakes_at_each_tick_rather_than_polling(db_url: str,
                                                               client: durable.Client) -> None:
    @workflow(name=f"second-{uuid.uuid4().hex[:8]}", schedule="* * * * * *")
    async def second(ctx: Context) -> None: ...

    async with fleet(db_url, [second]):
        await wait_until_async(lambda: len(run_ids(client, second)) >= 3, "three ticks",
                               timeout=10)
    for run in client.list(workflow=second.name):
        tick = datetime.fromisoformat(run.run_id.split("@")[1]).timestamp()
        assert 0 <= run.created_at - tick < 0.5, (run.run_id, run.created_at - tick)


SCHEDULED = "sched.every_second"


@pytest.mark.crash
def test_a_worker_killed_between_a_tick_and_its_run_start_loses_and_duplicates_nothing(
        crash_lab: CrashLab) -> None:
    lab = crash_lab
    doomed = spawn(lab, "--serve", "schedule", "--crash-on-first-invoke")

    def crashed_run() -> str | None:
        events = [e for e, _ in lab.effects().lines if e.startswith("crash:")]
        return events[0].removeprefix("crash:") if events else None
    run_id = wait_until(crashed_run, "the worker to fire a tick and die invoking its run")
    doomed.wait_exit()
    run = lab.client.get(run_id)  # the tick's run was committed with the tick ...
    assert run.status is ExecutionStatus.RUNNING
    assert lab.client.operations(run_id) == []  # ... and its body never began

    survivors = [spawn(lab, "--serve", "schedule") for _ in range(2)]
    lab.finish(run_id)

    def later_runs_done() -> bool:
        done = [r for r in lab.client.list(workflow=SCHEDULED, limit=10_000)
                if r.status is ExecutionStatus.SUCCEEDED and r.run_id > run_id]
        return len(done) >= 3
    wait_until(later_runs_done, "three more ticks to run")
    for p in survivors:
        p.kill()

    runs = lab.client.list(workflow=SCHEDULED, limit=10_000)
    ticks = [e.removeprefix("tick:") for e, _ in lab.effects().lines if e.startswith("tick:")]
    for r in runs:  # a run still in flight when the workers died may or may not have run
        ran = ticks.count(r.run_id.removeprefix(f"{SCHEDULED}@"))
        assert ran in ({1} if r.status is ExecutionStatus.SUCCEEDED else {0, 1}), r
        assert [e.type for e in lab.client.history(r.run_id)].count("ExecutionStarted") == 1
    assert ticks.count(run_id.removeprefix(f"{SCHEDULED}@")) == 1
    assert len(ticks) == len(set(ticks))  # no tick's body ran twice, in any process
    assert {f"{SCHEDULED}@{t}" for t in ticks} <= {r.run_id for r in runs}
    with sqlite3.connect(lab.path) as conn:
        (last,) = conn.execute("SELECT last_run_id FROM schedules WHERE workflow = ?",
                               (SCHEDULED,)).fetchone()
    assert last == max(r.run_id for r in runs)


# -- the example ---------------------------------------------------------------------------------

SALES = [{"day": "2025-01-01", "region": "north", "amount": 120.5},
         {"day": "2025-01-01", "region": "south", "amount": 80.0},
         {"day": "2025-01-01", "region": "north", "amount": 30.0},
         {"day": "2025-01-02", "region": "north", "amount": 999.0}]


@pytest.fixture
def sales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's data file, and its reports directory (returned), under tmp_path."""
    data = tmp_path / "sales.json"
    data.write_text(json.dumps(SALES))
    monkeypatch.setenv("NIGHTLY_DATA", str(data))
    monkeypatch.setenv("NIGHTLY_REPORTS", str(tmp_path / "reports"))
    return tmp_path / "reports"


async def test_nightly_report_reports_on_the_day_before_its_tick(sales: Path) -> None:
    spec = importlib.util.spec_from_file_location("examples_nightly_report",
                                                  ROOT / "examples" / "nightly_report.py")
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example  # dataclasses look their module up here
    spec.loader.exec_module(example)
    nightly = example.nightly_report
    assert (nightly.schedule.cron, nightly.schedule.missed) == ("0 2 * * *", "run_once")

    async with TestEnvironment(nightly, start=utc(2025, 1, 1, 23, 0)) as env:
        await env.skip(6 * 3600)  # virtual time: past 02:00 on 2 January
        (run,) = env.client.list(workflow=nightly.name)
        assert run.run_id == "nightly_report@2025-01-02T02:00:00+00:00"
        assert await env.result(env.client.handle(run.run_id)) == str(sales / "2025-01-01.json")
    assert json.loads((sales / "2025-01-01.json").read_text()) == {
        "day": "2025-01-01", "orders": 3, "total": 230.5,
        "by_region": {"north": 150.5, "south": 80.0}}


def test_nightly_report_runs_under_durable_worker(sales: Path, tmp_path: Path) -> None:
    """The documented command, with the cron overridden to fire every second."""
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    worker = Subprocess(
        [str(Path(sys.executable).parent / "durable"), "worker", "examples/nightly_report.py",
         "--db", db], tmp_path / "worker.log",
        env={**os.environ, "NIGHTLY_CRON": "* * * * * *", "NIGHTLY_DATA": "/nonexistent"})
    try:
        wait_until(lambda: any(sales.glob("*.json")), "a report from the worker")
    finally:
        code = worker.stop(grace=30)
    assert code == 0, worker.output()
    report = json.loads(next(sales.glob("*.json")).read_text())
    assert report["orders"] == 0 and report["total"] == 0
