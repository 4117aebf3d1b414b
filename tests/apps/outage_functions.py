"""A function for the outage tests: steps that leave one line each in the effects file
(`OUTAGE_EFFECTS`) when they run, with sleeps between them, served by `durable.serve`."""

from __future__ import annotations

import asyncio
import os

import durable
from durable import Context, workflow


def effect(name: str) -> str:
    """Append `<name> <pid>` to the effects file: how many times each step body really ran."""
    fd = os.open(os.environ["OUTAGE_EFFECTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{name} {os.getpid()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return name


@workflow(name="chain")
async def chain(ctx: Context, steps: int, pause: float) -> list[str]:
    done = []
    for i in range(steps):
        done.append(await ctx.step(effect, f"step{i}", name=f"step{i}"))
        await ctx.sleep(pause)
    return done


app = durable.serve(chain)


IN_FLIGHT = [0, 0]  # [now, most ever]: step bodies of `slow` running at once in this process


async def busy(n: int) -> int:
    IN_FLIGHT[0] += 1
    IN_FLIGHT[1] = max(IN_FLIGHT)
    try:
        await asyncio.sleep(0.2)
    finally:
        IN_FLIGHT[0] -= 1
    return n


@workflow(name="slow")
async def slow(ctx: Context, n: int) -> int:
    return await ctx.step(busy, n)
