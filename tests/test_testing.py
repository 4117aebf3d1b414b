"""durable.testing: days of durable time in milliseconds of test time."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient

from durable import Context, RetryPolicy, WaitTimeout, workflow
from durable.server.app import create_app
from durable.testing import Stuck, TestEnvironment

DAY = 86_400.0
ATTEMPTS: list[int] = []  # outside the workflow: replays must not reset it


@workflow
async def onboarding(ctx: Context, user: str) -> dict[str, Any]:
    start = ctx.now()
    await ctx.sleep(timedelta(days=7))

    def flaky() -> str:
        ATTEMPTS.append(1)
        if len(ATTEMPTS) < 3:
            raise ConnectionError("mail server down")
        return f"mailed {user}"

    mail = await ctx.step(flaky, retry=RetryPolicy(max_attempts=5, initial_interval=3600,
                                                     max_interval=DAY, jitter=0))
    try:
        await ctx.wait_for_signal("feedback", timeout=timedelta(days=3))
        feedback = "given"
    except WaitTimeout:
        feedback = "none"
    elapsed = (ctx.now() - start).total_seconds()
    return {"mail": mail, "feedback": feedback, "elapsed_hours": round(elapsed / 3600, 2)}


async def test_weeks_of_sleeps_backoffs_and_timeouts_finish_instantly():
    async with TestEnvironment(onboarding) as env:
        began = time.monotonic()
        out = await env.run(onboarding, "ada")
        assert time.monotonic() - began < 5
    # 7 days + two backoffs (1 h, 2 h) + the 3-day feedback timeout
    assert out == {"mail": "mailed ada", "feedback": "none", "elapsed_hours": 7 * 24 + 3 + 72}


async def test_settle_runs_what_is_due_without_letting_time_pass():
    @workflow
    async def approval(ctx: Context) -> Any:
        return await ctx.wait_for_callback(lambda cid: None, name="manager",
                                           timeout=timedelta(days=2))

    async with TestEnvironment(approval) as env:
        handle = env.start(approval)
        before = env.now
        await env.settle()
        assert env.now == before
        [callback_id] = env.pending_callbacks(handle.run_id)
        env.complete_callback(callback_id, "approved")
        assert await env.result(handle) == "approved"


async def test_skip_moves_time_and_runs_what_fell_due():
    @workflow
    async def reminder(ctx: Context) -> None:
        ctx.set_event("stage", "waiting")
        await ctx.sleep(timedelta(hours=5))
        ctx.set_event("stage", "reminded")
        await ctx.wait_for_signal("done")

    async with TestEnvironment(reminder) as env:
        handle = env.start(reminder)
        await env.skip(4 * 3600)
        assert env.client.get_event(handle.run_id, "stage") == "waiting"
        await env.skip(3600)
        assert env.client.get_event(handle.run_id, "stage") == "reminded"
        env.signal(handle.run_id, "done")
        await env.result(handle)


async def test_a_run_waiting_on_the_outside_world_is_reported_stuck():
    @workflow
    async def forever(ctx: Context) -> None:
        await ctx.wait_for_signal("never")

    async with TestEnvironment(forever) as env:
        handle = env.start(forever)
        with pytest.raises(Stuck, match="Signal 'never'"):
            await env.result(handle)


@workflow
async def review(ctx: Context) -> str:
    try:
        await ctx.wait_for_callback(lambda callback_id: None, name="reviewer",
                                    timeout=timedelta(days=2))
    except WaitTimeout:
        return "no review"
    return "reviewed"


EPOCH_2001 = 1_000_000_000.0  # far from the wall clock: a route reading that would show


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def test_the_virtual_clock_drives_the_server_s_routes_and_a_callback_times_out():
    """A server built on the environment's client: its routes write and report virtual time,
    and a callback's timeout fires, seen through the HTTP API, as the environment skips."""
    async with TestEnvironment(review, start=EPOCH_2001) as env:
        app = create_app(env.client, workflows=[review], serve=False)
        async with app.router.lifespan_context(app), AsyncClient(
                transport=ASGITransport(app), base_url="http://127.0.0.1") as http:
            started = (await http.post("/api/runs", json={"workflow": "review"})).json()
            run_id = started["run_id"]
            assert started["created_at"] == iso(EPOCH_2001)
            await env.settle()
            [waiting] = (await http.get(f"/api/runs/{run_id}")).json()["pending"]
            assert waiting["due_at"] == iso(EPOCH_2001 + 2 * DAY)
            callback_id = waiting["callback_id"]

            await env.skip(DAY)
            assert (await http.post(f"/api/callbacks/{callback_id}/heartbeat")).status_code == 200
            aws_beat = f"/2025-12-01/durable-execution-callbacks/{callback_id}/heartbeat"
            assert (await http.post(aws_beat)).status_code == 200
            shown = (await http.get(f"/api/runs/{run_id}")).json()
            assert shown["run"]["status"] == "RUNNING"
            assert shown["run"]["elapsed_seconds"] == DAY
            [listed] = (await http.get("/api/runs")).json()["runs"]
            assert listed["elapsed_seconds"] == DAY
            assert [e["offset_seconds"] for e in shown["history"]
                    if e["type"] == "CallbackHeartbeat"] == [DAY, DAY]

            long_poll = asyncio.create_task(
                http.get(f"/api/runs/{run_id}/result", params={"wait": 30}))
            await env.skip(DAY)
            outcome = await long_poll
            assert outcome.status_code == 200
            assert outcome.json() == {"run_id": run_id, "status": "SUCCEEDED",
                                      "result": "no review", "error": None}
            events = (await http.get(f"/api/runs/{run_id}/history")).json()["events"]
            assert [e["offset_seconds"] for e in events
                    if e["type"] == "CallbackTimedOut"] == [2 * DAY]
            late = await http.post(f"/api/callbacks/{callback_id}/succeed", json={"payload": 1})
            assert late.status_code == 404


async def test_the_virtual_clock_reaches_a_tick_due_within_a_millisecond() -> None:
    """A tick less than a millisecond ahead of the virtual clock: run_due hands the wait back
    to be skipped rather than looking again, which on a clock nobody else moves would be
    forever (a schedule of every second, and a run started a fraction of a second off it)."""
    @workflow(name=f"every-second-{uuid.uuid4().hex[:8]}", schedule="* * * * * *")
    async def every_second(ctx: Context, tick: datetime) -> str:
        return tick.isoformat()

    async with TestEnvironment(every_second, start=1_000_000.9995) as env:
        await asyncio.wait_for(env.skip(2), timeout=30)
        assert len(env.client.list(workflow=every_second.name)) == 2  # 1,000,001 and 002
