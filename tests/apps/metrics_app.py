"""Workflows for tests/test_metrics.py: a step that fails its first attempt, and a queue."""

from __future__ import annotations

from durable import Context, Queue, RetryPolicy, workflow

_attempts: dict[str, int] = {}


@workflow(name="metered")
async def metered(ctx: Context, n: int) -> int:
    def flaky() -> int:
        _attempts[ctx.run_id] = _attempts.get(ctx.run_id, 0) + 1
        if _attempts[ctx.run_id] == 1:
            raise RuntimeError("the first attempt fails on purpose")
        return n
    ctx.logger.info("metered %d", n)
    return int(await ctx.step(flaky, name="flaky", retry=RetryPolicy(initial_interval=0.01,
                                                                    jitter=0)))


@workflow(name="queued", queue=Queue("metered-q", limit=1))
async def queued(ctx: Context, n: int) -> int:
    return int(await ctx.step(lambda: n, name="echo"))
