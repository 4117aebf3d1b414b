"""A worker shaped like `temporalio.worker.Worker`, serving Temporal-style workflows with
Durable's worker (leases, group commit, durable timers) on the client's store.

    async with Worker(client, task_queue="greetings", workflows=[GreetingWorkflow],
                      activities=[compose_greeting]):
        print(await client.execute_workflow(GreetingWorkflow.run, "Ada", id="greet-ada",
                                            task_queue="greetings"))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from durable.engine.worker import Worker as DurableWorker
from durable.errors import UsageError
from durable.temporal import activity as activity_api
from durable.temporal._definition import definition_of
from durable.temporal.client import Client

__all__ = ["Worker"]


def durable_worker(workflows: Sequence[Any], activities: Sequence[Callable[..., Any]],
                   db: Any, **options: Any) -> DurableWorker:
    """The Durable worker for these Temporal-style workflow classes. Activities run inside the
    workflow's step, so they need no registration; they are checked to be activities so that a
    wrong list fails here rather than at the first call."""
    for fn in activities:
        if not activity_api.is_activity(fn):
            raise UsageError(f"{fn!r} in activities=[...] is not an @activity.defn function")
    return DurableWorker([definition_of(w).durable for w in workflows], db, **options)


class Worker:
    def __init__(self, client: Client, *, task_queue: str, workflows: Sequence[Any] = (),
                 activities: Sequence[Callable[..., Any]] = (), max_concurrent_workflow_tasks:
                 int | None = None, **options: Any) -> None:
        self.task_queue = task_queue
        self._worker = durable_worker(workflows, activities, client.durable.store,
                                      concurrency=max_concurrent_workflow_tasks or 100)
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve until `shutdown()`; in-flight invocations finish first."""
        await self._worker.run_async()

    async def shutdown(self) -> None:
        self._worker.stop()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> Worker:
        self._task = asyncio.ensure_future(self.run())
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.shutdown()
