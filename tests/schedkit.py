"""Helpers for the schedule and queue tests: in-process workers that each open their own store
on one SQLite file, as separate processes would, on a clock the test moves by hand; and real
worker processes of tests/apps/sched_app.py, in a tests/crashkit.py lab.

Workers given a `VirtualClock` (durable.testing) see only the time the test sets. Their sleeps
are still real (capped by the worker's safety nap), so after moving the clock a test calls
`Fleet.wake()` to make every worker look at the new time at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import durable
from tests.crashkit import CrashLab
from tests.kit import Subprocess, wait_until_async


def utc(*args: int) -> float:
    """Epoch seconds of a UTC date and time: `utc(2025, 1, 1, 12, 0)`."""
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


class Fleet:
    """Workers running as asyncio tasks, each on its own store."""

    def __init__(self, workers: list[durable.Worker], tasks: list[asyncio.Task[None]]) -> None:
        self.workers = workers
        self.tasks = tasks

    def wake(self) -> None:
        for w in self.workers:
            w.wake()

    async def ticking(self) -> None:
        """Wait until every worker has looked at its schedules once (it knows its next tick)."""
        await wait_until_async(lambda: all(w.next_tick is not None for w in self.workers),
                               "every worker to evaluate its schedules")


@asynccontextmanager
async def fleet(db_url: str, workflows: Sequence[durable.Workflow[..., Any]], *, size: int = 1,
                clock: Callable[[], float] = time.time,
                concurrency: int = 100) -> AsyncIterator[Fleet]:
    workers = [durable.Worker(workflows, db_url, clock=clock, concurrency=concurrency)
               for _ in range(size)]
    tasks = [asyncio.create_task(w.run_async()) for w in workers]
    try:
        yield Fleet(workers, tasks)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        for w in workers:
            w.store.close()


def spawn(lab: CrashLab, *args: str) -> Subprocess:
    """A tests/apps/sched_app.py worker process on the lab's database, returned once it has
    opened it; the lab kills it at the end of the test."""
    proc = lab.procs.start(sys.executable, "-m", "tests.apps.sched_app", "--db", lab.db, *args,
                           env={**os.environ, "CRASH_DIR": str(lab.dir)})
    lab.wait_ready(proc)
    return proc
