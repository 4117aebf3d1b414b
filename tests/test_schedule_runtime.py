"""Schedules at run time: paused (no tick fires, resuming counts from then), triggered now,
backfilled over past ticks under the ids the tick loop uses (so a backfill racing the workers
never doubles a tick), created and deleted through the API or CLI as well as in code; bad
input a clear error. In-process tests drive a virtual clock on both stores; the crash test kills
a real worker process in the middle of firing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

import durable
from durable import Context, ExecutionStatus, UsageError, workflow
from durable.errors import ScheduleExists, ScheduleNotFound
from durable.testing import VirtualClock
from tests.crashkit import CrashLab
from tests.kit import ROOT
from tests.schedkit import fleet, spawn, utc
from tests.serverkit import Server
from tests.test_cli import Cli
from tests.test_schedules import T0, ended, every_five_minutes, run_ids, tick_id

pytestmark = pytest.mark.usefixtures("registry_restored")

SCHED_APP = "tests.apps.sched_app"  # imports tests.apps: run with the repository on the path
ON_PATH = {"PYTHONPATH": str(ROOT)}


def tick_of(run_id: str) -> str:
    """The tick a schedule's run id names, as its workflow received it."""
    return datetime.fromisoformat(run_id.split("@", 1)[1]).isoformat()


@pytest.fixture
def db_url(any_db: str) -> str:
    return any_db


def minute(m: int) -> float:
    return utc(2025, 1, 1, 12, m)


async def test_a_paused_schedule_fires_nothing_and_resumes_from_its_next_tick(
        db_url: str, client: durable.Client) -> None:
    clock = VirtualClock(T0)
    wf = every_five_minutes([])
    ops = durable.Client(client.store, clock=clock)
    async with fleet(db_url, [wf], size=2, clock=clock) as workers:
        await workers.ticking()
        assert ops.pause_schedule(wf.name).paused
        for m in (5, 10):
            clock.advance_to(minute(m) + 1)
            workers.wake()
            await workers.ticking()
        await asyncio.sleep(0.05)  # give a wrongly firing worker the chance to show
        assert run_ids(client, wf) == []
        resumed = ops.resume_schedule(wf.name)
        assert not resumed.paused
        assert resumed.next_fire == datetime.fromtimestamp(minute(15), UTC)  # 12:10 skipped
        clock.advance_to(minute(15) + 1)
        workers.wake()
        await ended(client, tick_id(wf, minute(15)))
    assert run_ids(client, wf) == [tick_id(wf, minute(15))]


async def test_backfill_fills_past_ticks_once_even_racing_the_tick_loop(
        db_url: str, client: durable.Client) -> None:
    """The 12:05 tick is fired by the workers and backfilled at the same moment; the other
    ticks of the range come from the backfill alone; a second backfill makes nothing."""
    clock = VirtualClock(T0)
    seen: list[str] = []
    wf = every_five_minutes(seen)
    ops = durable.Client(client.store, clock=clock)
    async with fleet(db_url, [wf], size=2, clock=clock) as workers:
        await workers.ticking()
        clock.advance_to(minute(5) + 1)
        workers.wake()
        filled = await asyncio.to_thread(ops.backfill_schedule, wf.name, utc(2025, 1, 1, 11, 50),
                                         minute(5))
        assert [r.run_id for r, _ in filled] == [
            tick_id(wf, t) for t in (utc(2025, 1, 1, 11, 50), utc(2025, 1, 1, 11, 55),
                                     minute(0), minute(5))]
        for run, _ in filled:
            await ended(client, run.run_id)
        again = ops.backfill_schedule(wf.name, utc(2025, 1, 1, 11, 50), minute(5))
        assert [created for _, created in again] == [False] * 4
    assert len(run_ids(client, wf)) == 4
    assert sorted(seen) == sorted(datetime.fromtimestamp(t, UTC).isoformat() for t in (
        utc(2025, 1, 1, 11, 50), utc(2025, 1, 1, 11, 55), minute(0), minute(5)))  # each once
    for run_id in run_ids(client, wf):
        assert [e.type for e in client.history(run_id)].count("ExecutionStarted") == 1


async def test_trigger_starts_a_run_now_with_the_moment_as_its_tick(
        db_url: str, client: durable.Client) -> None:
    clock = VirtualClock(T0)
    seen: list[str] = []
    wf = every_five_minutes(seen)
    ops = durable.Client(client.store, clock=clock)
    async with fleet(db_url, [wf], clock=clock) as workers:
        await workers.ticking()
        ops.pause_schedule(wf.name)  # a paused schedule can still be triggered by hand
        run = ops.trigger_schedule(wf.name)
        assert run.run_id == tick_id(wf, T0)
        await ended(client, run.run_id)
    assert seen == [datetime.fromtimestamp(T0, UTC).isoformat()]
    (info,) = ops.schedules([wf])
    assert info.last_tick is None  # the schedule's own ticks are untouched


async def test_a_schedule_created_at_run_time_fires_on_a_worker_until_deleted(
        db_url: str, client: durable.Client) -> None:
    clock = VirtualClock(T0)
    ticks: list[str] = []

    def note(tick: str) -> None:
        ticks.append(tick)

    @workflow(name=f"plain-{uuid.uuid4().hex[:8]}")
    async def plain(ctx: Context, tick: datetime) -> None:
        await ctx.step(note, tick.isoformat(), name="note")

    ops = durable.Client(client.store, clock=clock)
    created = ops.create_schedule(plain.name, "*/5 * * * *")
    assert (created.source, created.registered) == ("api", True)
    with pytest.raises(ScheduleExists):
        ops.create_schedule(plain.name, "0 * * * *")
    async with fleet(db_url, [plain], size=2, clock=clock) as workers:
        await workers.ticking()
        clock.advance_to(minute(5) + 1)
        workers.wake()
        await ended(client, tick_id(plain, minute(5)))
        ops.delete_schedule(plain.name)
        clock.advance_to(minute(10) + 1)  # past the workers' next read of stored schedules
        workers.wake()
        await workers.ticking()
        await asyncio.sleep(0.05)
    assert ticks == [datetime.fromtimestamp(minute(5), UTC).isoformat()]
    assert run_ids(client, plain) == [tick_id(plain, minute(5))]
    assert ops.schedules() == []


def test_bad_schedule_requests_are_clear_errors(client: durable.Client) -> None:
    with pytest.raises(ScheduleNotFound, match="no schedule for workflow 'nope'"):
        client.pause_schedule("nope")
    with pytest.raises(ScheduleNotFound):
        client.backfill_schedule("nope", T0 - 600, T0 - 60)
    with pytest.raises(UsageError, match="invalid cron expression"):
        client.create_schedule("wf", "every day")
    with pytest.raises(UsageError, match="unknown time zone"):
        client.create_schedule("wf", "0 * * * *", "Mars/Olympus")
    client.create_schedule("wf", "* * * * * *")
    now = client.clock()
    with pytest.raises(UsageError, match="in the future"):
        client.backfill_schedule("wf", now - 10, now + 3600)
    with pytest.raises(UsageError, match="before its start"):
        client.backfill_schedule("wf", now - 10, now - 20)
    with pytest.raises(UsageError, match="more than 1000 ticks"):
        client.backfill_schedule("wf", now - 7200, now - 1)


def test_schedules_from_the_cli_and_the_api(db_url: str, tmp_path: Path) -> None:
    """`durable server --worker tests/apps/sched_app.py` fires `sched.every_second`; the CLI
    and the API pause, list, trigger, backfill, create and delete, and refuse bad input."""
    cli = Cli(db_url)
    cli.env.update(ON_PATH)
    name = "sched.every_second"
    with Server(tmp_path, db=db_url, app=SCHED_APP, env=ON_PATH) as server, \
            server.client() as api:
        listed = cli.json("schedules")  # every schedule in the database, no code needed
        assert [(s["workflow"], s["source"]) for s in listed] == [(name, "code")]
        assert [s["workflow"] for s in cli.json("schedules", SCHED_APP)] == [name]

        assert api.post(f"/api/schedules/{name}/pause").json()["paused"] is True
        assert cli.json("schedules")[0]["paused"] is True
        triggered = cli.json("schedules", "trigger", name)
        assert triggered["run_id"].startswith(f"{name}@")
        assert api.get(f"/api/runs/{triggered['run_id']}").status_code == 200
        assert cli.json("schedules", "resume", name)["paused"] is False

        now = datetime.now(UTC).replace(microsecond=0).timestamp()
        span = {"from": datetime.fromtimestamp(now - 4, UTC).isoformat(),
                "to": datetime.fromtimestamp(now - 2, UTC).isoformat()}
        filled = api.post(f"/api/schedules/{name}/backfill", json=span)
        assert filled.status_code == 200 and len(filled.json()) == 3
        by_cli = cli.json("schedules", "backfill", name, "--from", span["from"], "--to",
                          span["to"])
        assert [r["run_id"] for r in by_cli] == [r["run_id"] for r in filled.json()]
        assert not any(r["created"] for r in by_cli)

        made = api.post("/api/schedules", json={"workflow": "elsewhere", "cron": "0 3 * * *",
                                                "timezone": "Europe/Paris"})
        assert made.status_code == 201 and made.json()["source"] == "api"
        assert api.post("/api/schedules", json={"workflow": "elsewhere",
                                                "cron": "0 4 * * *"}).status_code == 409
        assert cli.json("schedules", "delete", "elsewhere")["workflow"] == "elsewhere"

        assert api.post("/api/schedules/nope/pause").status_code == 404
        assert api.post("/api/schedules", json={"workflow": "x", "cron": "nope"}
                        ).status_code == 400
        assert api.post(f"/api/schedules/{name}/backfill", json={"from": "yesterday",
                                                                 "to": span["to"]}
                        ).status_code == 422
        assert api.delete(f"/api/schedules/{name}").status_code == 400  # declared in code
        for args in (["pause", "nope"], ["create", "x", "nope"],
                     ["backfill", name, "--from", "soon", "--to", span["to"]],
                     ["delete", name]):
            refused = cli("schedules", *args)
            assert refused.returncode == 2, (args, refused.stderr)
            assert "Traceback" not in refused.stderr and refused.stderr.strip()


def test_a_worker_killed_while_firing_leaves_each_tick_exactly_one_run(
        crash_lab: CrashLab) -> None:
    """Workers of `sched.every_second` SIGKILLed one after another, each at its first
    invocation (a tick fired: its run exists, recorded with the tick), then a backfill over
    those seconds and a worker that survives: every second has one run at most, no tick the
    dead workers fired is lost, and each run's body ran once."""
    lab = crash_lab
    for _ in range(3):
        doomed = spawn(lab, "--serve", "schedule", "--crash-on-first-invoke")
        doomed.wait_exit()
    fired = {r.run_id for r in lab.client.list(workflow="sched.every_second", limit=1000)}
    now = datetime.now(UTC).timestamp()
    filled = lab.client.backfill_schedule("sched.every_second", now - 5, now - 1)
    survivor = spawn(lab, "--serve", "schedule")
    kills = [e.split(":", 1)[1] for e, _ in lab.effects().lines if e.startswith("crash:")]
    assert len(kills) == 3  # each died invoking a tick's run: its own, or one a dead one left
    crashed = set(kills)
    assert crashed <= fired
    for run, created in filled:
        # A tick the dead workers fired (one may fire a second before it dies invoking the
        # first) is not fired again; every other second of the range is.
        assert created is (run.run_id not in fired)
    runs = lab.client.list(workflow="sched.every_second", limit=1000)
    assert crashed <= {r.run_id for r in runs}  # the killed workers lost none of their ticks
    for run in runs:
        assert lab.finish(run.run_id).status is ExecutionStatus.SUCCEEDED
    os.kill(survivor.pid, signal.SIGKILL)
    ticks = [e.split(":", 1)[1] for e, _ in lab.effects().lines if e.startswith("tick:")]
    assert len(ticks) == len(set(ticks))  # no tick's body ran twice
    assert {tick_of(r.run_id) for r in runs} <= set(ticks)
