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
from durable.temporal._ignored import ignore
from durable.temporal.client import Client

__all__ = ["Worker"]


def durable_worker(workflows: Sequence[Any], activities: Sequence[Callable[..., Any]],
                   db: Any, **options: Any) -> DurableWorker:
    """The Durable worker for these Temporal-style workflow classes. Activities run inside the
    workflow's step, so they need no registration; they are checked to be activities so that a
    wrong list fails here rather than at the first call. No workflows is refused: a Durable
    worker given none serves every workflow, and would claim runs it has no code for."""
    if not workflows:
        raise UsageError("no workflows given (workflows=[...]): activities run inside their "
                         "workflows' steps, so only a worker serving the workflows runs them")
    check_activities(activities)
    return DurableWorker([definition_of(w).durable for w in workflows], db, **options)


_IGNORED = {
    "activity_executor": "sync activities run on threads of Durable's own",
    "max_concurrent_activities": "activities run inside their workflow's step, bounded by "
                                 "max_concurrent_workflow_tasks",
    "shared_state_manager": "sync activities run on threads, never in other processes",
    "workflow_runner": "workflow code runs on Durable's replay machinery, not in a sandbox",
}
"""Why a Temporal worker option has no effect here, where it is commonly passed."""


def check_activities(activities: Sequence[Callable[..., Any]]) -> None:
    for fn in activities:
        if not activity_api.is_activity(fn):
            raise UsageError(f"{fn!r} in activities=[...] is not an @activity.defn function")


class Worker:
    """`workflows` are served by a Durable worker on the client's store. Activities need no
    serving of their own: they run inside the steps of the workflows that call them, in the
    process serving the workflow. So a worker given only activities (Temporal's separate
    activity worker) claims nothing and just waits for its shutdown; its activities run where
    their workflows are served."""

    def __init__(self, client: Client, *, task_queue: str, workflows: Sequence[Any] = (),
                 activities: Sequence[Callable[..., Any]] = (), max_concurrent_workflow_tasks:
                 int | None = None, **options: Any) -> None:
        if not workflows and not activities:
            raise UsageError("Worker(...): at least one workflow or activity must be given "
                             "(workflows=[...], activities=[...])")
        for option, value in options.items():
            if value is not None:
                ignore(option, "Worker", _IGNORED.get(option, "Durable's worker has no such "
                                                      "setting"))
        self.task_queue = task_queue
        self._activities = list(activities)
        self._worker = (durable_worker(workflows, activities, client.durable.store,
                                       concurrency=max_concurrent_workflow_tasks or 100)
                        if workflows else None)
        if self._worker is None:
            check_activities(activities)
        self._shutdown = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        """Serve until `shutdown()`; in-flight invocations finish first. While it serves, its
        activities are what workflows in this process calling them by name run."""
        with activity_api.registered(self._activities):
            if self._worker is None:
                await self._shutdown.wait()
                return
            # `until`, not only stop(): a shutdown asked before this task first ran must hold,
            # and run_async clears the stop flag as it begins.
            await self._worker.run_async(until=self._shutdown.is_set)

    async def shutdown(self) -> None:
        self._shutdown.set()
        if self._worker is not None:
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
