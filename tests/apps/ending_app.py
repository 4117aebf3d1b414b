"""Workflows the terminate, delete and retention tests drive through real worker processes.

`hold` is a step that runs until the test releases it, so a test can act while a step is in
flight; the steps leave marker files in $ENDING_DIR (one line per start in `<tag>.started`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from durable import Context, workflow

DIR = Path(os.environ.get("ENDING_DIR", "."))


def hold(tag: str) -> str:
    with (DIR / f"{tag}.started").open("a") as f:
        f.write(f"{os.getpid()}\n")
    while not (DIR / f"{tag}.release").exists():
        time.sleep(0.005)
    (DIR / f"{tag}.done").touch()
    return tag


def compensate(tag: str) -> None:
    (DIR / f"{tag}.compensated").touch()


@workflow
async def saga(ctx: Context, tag: str) -> str:
    """Holds, then waits an hour; whatever stops it is meant to be compensated for."""
    try:
        await ctx.step(hold, tag)
        await ctx.sleep(3600)
        return tag
    finally:
        await ctx.step(compensate, tag)


@workflow
async def family(ctx: Context, tag: str) -> str:
    """A saga started detached, then one awaited."""
    await ctx.start_child(saga, f"{tag}-detached", id=f"{tag}-detached")
    return await ctx.invoke(saga, f"{tag}-awaited", id=f"{tag}-awaited")


def tick(n: int) -> int:
    return n + 1


@workflow
async def counter(ctx: Context, steps: int) -> int:
    """Many quick checkpoints in a row: what a terminate races."""
    n = 0
    for _ in range(steps):
        n = await ctx.step(tick, n)
    return n


@workflow
async def quick(ctx: Context, n: int) -> int:
    await ctx.sleep(0.01)
    return await ctx.step(tick, n)
