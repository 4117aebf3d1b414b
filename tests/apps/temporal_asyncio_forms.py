"""Temporal-style workflow code using every supported form of asyncio, and beside it, in the
same module, code that is not workflow code and must get asyncio's standard behaviour: an
activity, a native `@durable.workflow` and a plain coroutine (tests/test_temporal_asyncio.py).
"""

from __future__ import annotations

import asyncio
import asyncio as aio
from asyncio import gather, wait_for
from asyncio import sleep as nap
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import durable
from durable.temporal import activity, workflow
from tests.apps.temporal_asyncio_base import Pausing

GATE: dict[str, asyncio.Event] = {}
"""Events the test creates on its loop: `entered` (hold began), `release` (hold may return)."""


@activity.defn
async def echo(text: str) -> str:
    await asyncio.sleep(0)  # an activity: asyncio's own sleep
    return text


def _echo(text: str) -> Coroutine[Any, Any, str]:
    return workflow.execute_activity(echo, text, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class EveryForm(Pausing):
    """Each sleep has its own length, a power of two, so the virtual time that passes says
    which of them were durable timers (all: 1 + 2 + 4 + 8 + 16 + 3 * 32 = 127 s)."""

    @workflow.run
    async def run(self) -> list[str]:
        await asyncio.sleep(1)          # import asyncio
        await aio.sleep(2)              # import asyncio as aio
        await nap(4)                    # from asyncio import sleep as nap
        await late_sleep(8)             # imported after this class, at the end of the module
        await self.pause(16)            # a base class's method, in another module
        out = list(await asyncio.gather(_echo("a"), _echo("b")))
        out += await gather(_echo("c"))
        out += await aio.gather(_echo("d"), return_exceptions=True)
        for race in (asyncio.wait_for, wait_for, aio.wait_for):
            try:
                await race(workflow.wait_condition(lambda: False), 32)
            except TimeoutError:
                out.append("timed out")
        return out


@activity.defn
async def hold() -> str:
    """Keeps its workflow's invocation in flight until the test says."""
    GATE["entered"].set()
    await GATE["release"].wait()
    return "released"


@workflow.defn
class Holding:
    @workflow.run
    async def run(self) -> str:
        held = await workflow.execute_activity(hold, start_to_close_timeout=timedelta(minutes=1))
        await asyncio.sleep(3600)
        return held


async def _value(v: int) -> int:
    await asyncio.sleep(0)
    return v


async def _fail() -> None:
    raise ValueError("plain")


async def plain_asyncio() -> dict[str, Any]:
    """Not workflow code, though its module's asyncio names were bound for the classes above:
    every call must behave exactly as asyncio's own."""
    loop = asyncio.get_running_loop()
    order: list[str] = []

    async def first() -> None:
        order.append("other task")
    task = loop.create_task(first())
    await nap(0)  # a real yield: the task just created runs now
    order.append("after sleep(0)")
    await task
    began = loop.time()
    await asyncio.sleep(0.05, "ignored")
    slept = loop.time() - began
    gathered = await asyncio.gather(_value(1), _value(2), aio.sleep(0, 3))
    failures = await gather(_fail(), return_exceptions=True)
    try:
        await wait_for(asyncio.sleep(60), 0.01)
        timed_out = False
    except TimeoutError:
        timed_out = True
    return {"order": order, "slept_for_real": slept >= 0.04, "gathered": gathered,
            "failures": [type(e).__name__ for e in failures], "timed_out": timed_out,
            "in_workflow": workflow.in_workflow()}


PLAIN_RESULT = {"order": ["other task", "after sleep(0)"], "slept_for_real": True,
                "gathered": [1, 2, 3], "failures": ["ValueError"], "timed_out": True,
                "in_workflow": False}
"""What `plain_asyncio` returns under asyncio's standard semantics."""


@durable.workflow
async def plain_native(ctx: durable.Context) -> dict[str, Any]:
    """Durable's own workflow, in the same module: its asyncio calls are plain asyncio too."""
    return await plain_asyncio()


from asyncio import sleep as late_sleep  # noqa: E402  (after the class on purpose)
