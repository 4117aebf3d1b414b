"""Workflows written with Durable's SDK, exported as functions: an AWS Lambda handler for each
(`durable.lambda_handler`) and one ASGI app serving them all (`durable.serve`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import durable
from durable import Completion, Context, RetryPolicy, workflow

ATTEMPTS: dict[str, int] = {}


def shout(name: str) -> str:
    return name.upper()


def flaky(key: str) -> str:
    """Fails on its first two attempts (counted per key in this process)."""
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < 3:
        raise ConnectionError(f"attempt {ATTEMPTS[key]}")
    return f"{key} after {ATTEMPTS[key]}"


@workflow(name="greet")
async def greet(ctx: Context, name: str) -> str:
    loud = await ctx.step(shout, name)
    await ctx.sleep(timedelta(seconds=2))
    return f"hello {loud}"


@workflow(name="sturdy")
async def sturdy(ctx: Context, key: str) -> str:
    return await ctx.step(flaky, key, retry=RetryPolicy(max_attempts=5, initial_interval=1.0,
                                                        backoff=1.0, jitter=0))


@workflow(name="approve")
async def approve(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    callback = await ctx.create_callback(name="approval", timeout=timedelta(minutes=5))
    decision = await callback.result()
    return {"order": order["id"], "decision": decision}


async def double(n: int) -> int:
    return n * 2


@workflow(name="fan")
async def fan(ctx: Context, items: list[int]) -> dict[str, Any]:
    async def branch(n: int) -> int:
        await ctx.sleep(1)
        return await ctx.step(double, n)
    gathered = await ctx.gather(*(branch(n) for n in items))
    mapped = await ctx.map(double, items)
    return {"gathered": gathered, "mapped": list(mapped)}


@workflow(name="first")
async def first(ctx: Context) -> list[str]:
    """A quorum of one: the branch still asleep when the other answers is abandoned."""
    async def slow() -> str:
        await ctx.sleep(timedelta(hours=1))
        return "slow"
    batch = await ctx.gather(slow(), ctx.step(shout, "fast"), completion=Completion.at_least(1))
    return [item.status for item in batch.items]


@workflow(name="child")
async def child(ctx: Context, n: int) -> int:
    return await ctx.step(double, n)


@workflow(name="parent")
async def parent(ctx: Context, n: int) -> int:
    return await ctx.invoke(child, n) + 1


@workflow(name="broken")
async def broken(ctx: Context) -> None:
    await ctx.step(shout, "x")
    raise RuntimeError("the order is invalid")


@workflow(name="nap")
async def nap(ctx: Context, seconds: float) -> str:
    """Waits on a timer (or, with a negative number, on a callback): the idle test's function."""
    if seconds < 0:
        callback = await ctx.create_callback(name="wake")
        return str(await callback.result())
    await ctx.sleep(seconds)
    return "woke"


greet_handler = durable.lambda_handler(greet)
sturdy_handler = durable.lambda_handler(sturdy)
approve_handler = durable.lambda_handler(approve)
fan_handler = durable.lambda_handler(fan)
first_handler = durable.lambda_handler(first)
child_handler = durable.lambda_handler(child)
parent_handler = durable.lambda_handler(parent)
broken_handler = durable.lambda_handler(broken)

app = durable.serve(greet, sturdy, approve, fan, child, parent, broken, nap)
