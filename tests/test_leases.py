"""A worker that cannot tell whether it still holds a run's lease begins no step body.

The store fences every checkpoint, so a worker paused past its lease and overtaken cannot record
anything; but it could still *run* a step body the new holder already completed, before its
refused checkpoint stops it. `tests/test_chaos.py` catches that under SIGSTOP among real
processes; this pins it deterministically in one process, a blocked event loop standing in for
the pause (no heartbeat renews the lease while it is blocked, as under SIGSTOP).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import durable
from durable import Context, ExecutionStatus, workflow

LEASE = 1.0


async def test_a_worker_paused_past_its_lease_does_not_rerun_a_step_its_successor_completed(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    ran: list[str] = []
    paused = threading.Event()

    @workflow
    async def wf(ctx: Context) -> int:
        await ctx.step(lambda: ran.append("first"), name="first")
        if not paused.is_set():  # the first invocation only: its process "pauses" here
            paused.set()
            time.sleep(LEASE * 2)  # blocks this loop, so nothing renews the lease
        await ctx.step(lambda: ran.append("second"), name="second")
        return len(ran)

    client = durable.Client(db)
    handle = client.start(wf)

    def ended() -> bool:
        return client.get(handle.run_id).status is not ExecutionStatus.RUNNING

    def successor() -> None:  # another worker, on a loop of its own, takes over the run
        paused.wait(30)
        asyncio.run(durable.Worker([wf], db, lease_seconds=LEASE).run_async(until=ended))

    taking_over = threading.Thread(target=successor)
    taking_over.start()
    first = durable.Worker([wf], db, lease_seconds=LEASE)
    try:
        await asyncio.wait_for(first.run_async(until=lambda: paused.is_set() and ended()), 30)
    finally:
        taking_over.join(30)
        first.store.close()
    assert handle.result(timeout=30) == 2
    assert ran == ["first", "second"]  # the paused worker woke and began no second "second"
    client.close()
