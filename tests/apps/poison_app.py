"""Workflows whose code raises what would stop a Python process: sys.exit(), KeyboardInterrupt,
and a CancelledError of its own; served by `durable worker tests/apps/poison_app.py` (and
`durable server --worker`) in tests/test_poison_steps.py.

Each attempt of a poisoned step appends `<run> <attempt>` to $POISON_DIR/attempts.log first,
so the test can count the attempts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from durable import Context, RetryPolicy, workflow
from durable.sdk.executor import CURRENT_STEP

KINDS = ("exit", "interrupt", "cancel")
ERROR_TYPES = {"exit": "SystemExit", "interrupt": "KeyboardInterrupt", "cancel": "CancelledError"}
TWICE = RetryPolicy(max_attempts=2, initial_interval=0.05, jitter=0)


def poison(kind: str) -> None:
    if kind == "exit":
        sys.exit(3)
    if kind == "interrupt":
        raise KeyboardInterrupt
    raise asyncio.CancelledError


def _attempt() -> int:
    step = CURRENT_STEP.get()
    assert step is not None
    with (Path(os.environ["POISON_DIR"]) / "attempts.log").open("a") as log:
        log.write(f"{step.run_id} {step.attempt}\n")
    return step.attempt


def poisoned_sync(kind: str, failing: int) -> str:
    """Runs in a thread, as synchronous step bodies do; its first `failing` attempts raise."""
    attempt = _attempt()
    if attempt <= failing:
        poison(kind)
    return f"done at attempt {attempt}"


async def poisoned_async(kind: str, failing: int) -> str:
    attempt = _attempt()
    if attempt <= failing:
        poison(kind)
    return f"done at attempt {attempt}"


@workflow(name="poison.step")
async def poisoned_step(ctx: Context, spec: dict[str, Any]) -> str:
    """spec: {"kind": one of KINDS, "sync": bool, "failing": attempts that raise (of 2)}."""
    body = poisoned_sync if spec["sync"] else poisoned_async
    return str(await ctx.step(body, spec["kind"], spec["failing"], name="poison", retry=TWICE))


def ok() -> str:
    return "ok"


@workflow(name="poison.body")
async def poisoned_body(ctx: Context, kind: str) -> str:
    """The workflow's own code raises, between steps."""
    await ctx.step(ok, name="before")
    poison(kind)
    return "unreachable"


def nap(seconds: float) -> float:
    _attempt()
    time.sleep(seconds)
    return seconds


@workflow(name="poison.slow")
async def slow(ctx: Context, seconds: float) -> float:
    """A step that is still running when the worker is asked to stop."""
    return float(await ctx.step(nap, seconds, name="nap"))
