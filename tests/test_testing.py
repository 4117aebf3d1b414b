"""durable.testing: days of durable time in milliseconds of test time."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from durable import Context, RetryPolicy, WaitTimeout, workflow
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
