"""Functions for tests/test_push_wire.py: branches that complete together, a chain of steps,
branches that leave a line in an effects file (`PUSH_EFFECTS`) each time a body runs, and
a run that waits for a signal (tests/test_pause_push.py)."""

from __future__ import annotations

import asyncio
import os
import threading

import durable
from durable import Context, workflow


async def double(i: int) -> int:
    return i * 2


async def noted(i: int) -> int:
    """Note the run of this body, then take a little while (a different while per branch),
    so branches finish at different moments and checkpoints go out in several batches."""
    fd = os.open(os.environ["PUSH_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{i}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    await asyncio.sleep(0.01 * (i % 7))
    return i


@workflow(name="fanout")
async def fanout(ctx: Context, n: int) -> list[int]:
    return list(await ctx.gather(*(ctx.step(double, i, name=f"double{i}") for i in range(n))))


@workflow(name="chain")
async def chain(ctx: Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.step(double, i, name=f"double{i}")
    return total


@workflow(name="waves")
async def waves(ctx: Context, rounds: int, width: int) -> int:
    total = 0
    for r in range(rounds):
        got = await ctx.map(noted, [r * width + i for i in range(width)], name=f"wave{r}")
        total += sum(list(got))
    return total




@workflow(name="signalled")
async def signalled(ctx: Context, n: int) -> int:
    """A step, a wait for the signal `go`, a step: for pausing a run served over HTTP."""
    first = await ctx.step(double, n, name="first")
    extra = await ctx.wait_for_signal("go")
    return int(await ctx.step(double, first + int(extra), name="second"))


ENTERED, GATE = threading.Event(), threading.Event()
"""`gated`'s first step says it began and waits to be let go: for a host in the test's own
process (tests/test_pause_push.py)."""


def held_step() -> str:
    ENTERED.set()
    assert GATE.wait(30)
    return "slow"


@workflow(name="gated")
async def gated(ctx: Context) -> list[str]:
    return [await ctx.step(held_step, name="slow"), await ctx.step(lambda: "after", name="after")]


app = durable.serve(fanout, chain, waves, signalled, gated)
