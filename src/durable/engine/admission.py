"""Queue admission: which runs of queued workflows may start now, and when the next one may.

A queue's limits reach the engine as data (`ServedQueue`, from the worker), and are enforced
here at claim time, inside the claim's transaction: `machine.claim` leases the runs `admit`
lets in next to the ones that hold work already, and `machine.next_due` asks `next_admission`
how long a worker may sleep. A run admitted holds its slot until it ends; after that first
invocation it comes back like any other run and is no business of this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from durable.model.queues import Queue, ServedQueue
from durable.store.tx import Tx


def queued(queues: Sequence[ServedQueue]) -> list[str]:
    """The workflows on `queues`: a claim takes their runs only once a queue admitted them."""
    return [wf for q in queues for wf in q.workflows]


def admit(tx: Tx, q: ServedQueue, now: float, wanted: int) -> list[str]:
    """Admit up to `wanted` of the queue's oldest waiting runs, as many as its limits allow."""
    tx.lock_queue(q.queue.name)
    room, _ = _room(tx, q.queue, now)
    if room <= 0:
        return []
    run_ids = tx.queue_waiting(q.workflows, now, int(min(room, wanted)))
    tx.admit(run_ids, q.queue.name, now)
    return run_ids


def next_admission(tx: Tx, q: ServedQueue, now: float) -> float | None:
    """When the queue may next admit one of its waiting runs. None when none waits, or when it
    is full: a run of it ending notifies, which wakes every worker. A queue stopped by its rate
    is due when its window lets the next run in."""
    first = tx.queue_first_waiting(q.workflows)
    if first is None:
        return None
    room, reopens = _room(tx, q.queue, now)
    return first if room > 0 else None if reopens is None else max(first, reopens)


def _room(tx: Tx, queue: Queue, now: float) -> tuple[float, float | None]:
    """How many more runs `queue` may admit now, and, when only its rate stops it, the time its
    sliding window lets the next one in."""
    room = math.inf if queue.limit is None else float(queue.limit - tx.queue_held(queue.name))
    if queue.rate_count is None or room <= 0:
        return room, None
    since = now - queue.rate_period
    over = tx.queue_admitted(queue.name, since) - queue.rate_count
    if over < 0:
        return min(room, float(-over)), None
    oldest = tx.queue_admission(queue.name, since, over)  # must leave the window first
    return 0.0, None if oldest is None else oldest + queue.rate_period
