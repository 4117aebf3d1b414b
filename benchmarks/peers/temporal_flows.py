"""Temporal workflows and activities for run_temporal.py, in their own module as Temporal's
sandbox requires (it re-imports the module a workflow is defined in).

Every step is an activity, executed either as a regular activity (`local=False`: scheduled
through the server's task queue) or as a local activity (`local=True`: run by the worker that
runs the workflow and recorded as a marker when its workflow task completes). Both with
start_to_close_timeout=STEP_TIMEOUT, the value Temporal's samples use; Temporal requires one.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import common

STEP_TIMEOUT = timedelta(seconds=10)

STAMPS: list[float] = []
EVENTS: dict[str, asyncio.Event] = {}
MARKS: dict[str, float] = {}
STEP_TIMES: list[float] = []


@activity.defn
async def noop(i: int) -> None:
    """The trivial step body of the throughput workload: it notes when it ran."""
    STEP_TIMES.append(time.perf_counter())


@activity.defn
async def stamp(i: int) -> None:
    STAMPS.append(time.perf_counter())


@activity.defn
async def mark(key: str) -> None:
    MARKS[key] = time.perf_counter()
    EVENTS[key].set()


@activity.defn
async def progress(i: int) -> None:
    os.write(1, f"step {i}\n".encode())


ACTIVITIES = [noop, stamp, mark, progress]


async def step(local: bool, fn: Any, arg: Any) -> None:
    if local:
        await workflow.execute_local_activity(fn, arg, start_to_close_timeout=STEP_TIMEOUT)
    else:
        await workflow.execute_activity(fn, arg, start_to_close_timeout=STEP_TIMEOUT)


@workflow.defn
class Bench:
    @workflow.run
    async def run(self, steps: int, local: bool) -> int:
        for i in range(steps):
            await step(local, noop, i)
        return steps


@workflow.defn
class LongRun:
    @workflow.run
    async def run(self, steps: int, local: bool) -> int:
        for i in range(steps):
            await step(local, stamp, i)
        return steps


@workflow.defn
class Recover:
    @workflow.run
    async def run(self, steps: int, local: bool) -> int:
        for i in range(steps):
            await step(local, progress, i)
        return steps


@workflow.defn
class Latency:
    def __init__(self) -> None:
        self.go = False

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.run
    async def run(self, key: str, local: bool) -> None:
        await step(local, mark, f"{key}:1")
        await workflow.wait_condition(lambda: self.go)
        await step(local, mark, f"{key}:2")


@workflow.defn
class Timer:
    @workflow.run
    async def run(self) -> None:
        if not workflow.unsafe.is_replaying():
            common.ARRIVALS.append(1)  # instrumentation only: counts runs that reached the timer
        await asyncio.sleep(3600)


WORKFLOWS = [Bench, LongRun, Recover, Latency, Timer]
