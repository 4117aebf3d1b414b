"""The seed's serverless entry: `run(workflows=[...], activities=[...], context=context)`.

    def handler(event, context):          # an AWS Lambda handler, or any scheduled function
        return run(workflows=[GreetingWorkflow], activities=[compose_greeting], context=context)

Each call processes the work that is due for those workflows (new runs, timers that fired,
signals that arrived, retries whose backoff ended) on the store named by DURABLE_DB, and returns
before the invocation's deadline: `context.get_remaining_time_in_millis()` when the context has
it. Invocations still in flight at the deadline are cancelled; what they checkpointed stays, and
the next call resumes them once their lease lapses. Between calls nothing runs and nothing is
held: a workflow sleeping for a day costs nothing until it is due.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from durable.errors import UsageError
from durable.store import Store, open_store
from durable.temporal import activity as activity_api
from durable.temporal.worker import durable_worker

__all__ = ["run", "run_async"]

LEASE_SECONDS = 10.0
"""Short leases: a run whose invocation was cut at a deadline is resumed soon by the next call."""


def _budget(context: Any) -> float | None:
    """Seconds this call may work: the remaining time less a margin to return and answer."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    seconds = float(remaining()) / 1000.0
    return max(seconds - min(max(seconds * 0.1, 0.2), 3.0), 0.0)


def run(workflows: Sequence[Any], activities: Sequence[Callable[..., Any]] = (),
        context: Any = None, *, db: str | Store | None = None) -> dict[str, Any]:
    """Process the due work of `workflows` and return a summary (JSON, for the invoker):
    invocations made, runs completed, whether the deadline cut the call short, and `next_due`
    (epoch seconds) when the next call has work, or None if only the outside world can add
    some."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(workflows, activities, context, db=db))
    raise UsageError("run() blocks; inside an event loop use `await run_async(...)`")


async def run_async(workflows: Sequence[Any], activities: Sequence[Callable[..., Any]] = (),
                    context: Any = None, *, db: str | Store | None = None) -> dict[str, Any]:
    store = db if isinstance(db, Store) else open_store(db)
    try:
        worker = durable_worker(workflows, activities, store, lease_seconds=LEASE_SECONDS,
                                drain_seconds=0.0)
        budget = _budget(context)
        began = time.monotonic()
        with activity_api.registered(activities):
            work = asyncio.ensure_future(worker.run_due())
            done, _ = await asyncio.wait([work], timeout=budget)
            cut_short = work not in done
            if cut_short:
                work.cancel()
                await asyncio.wait([work])
                await worker._drain()  # cancel in-flight invocations: their leases lapse
        return {"invocations": worker.stats.invocations, "completed": worker.stats.completed,
                "deadline_reached": cut_short,
                "next_due": None if cut_short else work.result(),
                "seconds": round(time.monotonic() - began, 3)}
    finally:
        if not isinstance(db, Store):
            store.close()
