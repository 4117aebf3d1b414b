"""A scheduled and a queued workflow, and the launcher the schedule and queue tests run as real
worker subprocesses sharing one SQLite file:

    python -m tests.apps.sched_app --db URL --serve schedule|queue|held [--lease 1.0]
                                   [--crash-on-first-invoke]

(from the repository root, so `tests.apps` imports). Step bodies leave `<event> <pid>` lines in
`effects.log` in $CRASH_DIR, as tests/apps/crash_app.py's do, and the worker writes
`ready-<pid>` there once it has opened the database, so tests/crashkit.py reads both.

`--crash-on-first-invoke` makes the worker SIGKILL itself the first time it is about to invoke a
run, after recording `crash:<run id>`: for a scheduled run, that is after its tick was fired (the
run exists) and before its body ran.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import durable
from durable import Context, workflow
from durable.model import Checkpointer, Invocation, InvocationOutput
from tests.apps.crash_app import gate, record

EVERY_SECOND = "* * * * * *"  # croniter's sixth field: seconds
JOBS = durable.Queue("sched.jobs", limit=2)
JOB_NAP = 0.3  # seconds each queued run sleeps durably while holding its slot


def visit(tick: str) -> str:
    record(f"tick:{tick}")
    return tick


@workflow(name="sched.every_second", schedule=EVERY_SECOND)
async def every_second(ctx: Context, tick: datetime) -> str:
    """One run per second; its step records the tick it was started for."""
    return str(await ctx.step(visit, tick.isoformat(), name="visit"))


def stamp(event: str, job: int) -> float:
    """Record `<event>:<job>:<wall time>`: when the body of a queued run began or ended."""
    now = time.time()
    record(f"{event}:{job}:{now!r}")
    return now


@workflow(name="sched.job", queue=JOBS)
async def job(ctx: Context, n: int) -> int:
    """Holds its queue slot across a durable sleep between its two stamps."""
    await ctx.step(stamp, "begin", n, name="begin")
    await ctx.sleep(JOB_NAP)
    await ctx.step(stamp, "end", n, name="end")
    return n


HELD = durable.Queue("sched.held", limit=1)


def stamp_at_gate(event: str, job: int) -> float:
    """`stamp`, then wait at the gate `<event>-<job>`: the run's invocation stays in flight."""
    now = stamp(event, job)
    gate(f"{event}-{job}")
    return now


@workflow(name="sched.held_job", queue=HELD)
async def held_job(ctx: Context, n: int) -> int:
    """Takes the one slot of its queue: begins (held at a gate), waits for the signal `go`,
    ends."""
    await ctx.step(stamp_at_gate, "begin", n, name="begin")
    await ctx.wait_for_signal("go")
    await ctx.step(stamp, "end", n, name="end")
    return n


SERVES: dict[str, list[durable.Workflow[..., Any]]] = {"schedule": [every_second], "queue": [job],
                                                  "held": [held_job]}


class CrashOnFirstInvoke:
    """Serves `wf` (schedule and queue included) but dies at the first invocation."""

    def __init__(self, wf: durable.Workflow[..., Any]) -> None:
        self.name = wf.name
        self.schedule = wf.schedule
        self.schedule_input = wf.schedule_input
        self.queue = wf.queue

    async def handler(self, invocation: Invocation,
                      checkpointer: Checkpointer) -> InvocationOutput:
        record(f"crash:{invocation.run_id}")
        os.kill(os.getpid(), signal.SIGKILL)
        await asyncio.sleep(3600)  # SIGKILL is not instantaneous: never return meanwhile
        raise AssertionError("unreachable")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--serve", choices=sorted(SERVES), required=True)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--crash-on-first-invoke", action="store_true")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker {os.getpid()} %(name)s: %(message)s")
    wfs: list[Any] = SERVES[a.serve]
    if a.crash_on_first_invoke:
        wfs = [CrashOnFirstInvoke(wf) for wf in wfs]
    worker = durable.Worker(wfs, db=a.db, lease_seconds=a.lease)
    (Path(os.environ["CRASH_DIR"]) / f"ready-{os.getpid()}").touch()
    worker.run()


if __name__ == "__main__":
    main()
