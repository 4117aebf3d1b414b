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
from datetime import timedelta
from types import TracebackType
from typing import Any

from durable.engine.worker import Worker as DurableWorker
from durable.errors import UsageError
from durable.temporal import activity as activity_api
from durable.temporal._definition import definition_of
from durable.temporal._options import IGNORED_WORKER_OPTIONS, accept
from durable.temporal._queries import Answerer
from durable.temporal.client import Client

__all__ = ["SharedStateManager", "UnsandboxedWorkflowRunner", "Worker"]


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


class SharedStateManager:
    """Accepted for `Worker(shared_state_manager=...)`: Temporal needs it to heartbeat and cancel
    sync activities run in other processes; here they run on threads, so it holds nothing."""

    @staticmethod
    def create_from_multiprocessing(mgr: Any, queue_poller_executor: Any = None
                                    ) -> SharedStateManager:
        return SharedStateManager()


class UnsandboxedWorkflowRunner:
    """Accepted for `Worker(workflow_runner=...)`: workflow code never runs in a sandbox here."""


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
                 int | None = None, graceful_shutdown_timeout: timedelta = timedelta(),
                 **options: Any) -> None:
        """`max_concurrent_workflow_tasks` is the worker's concurrency (Temporal's default,
        100); `graceful_shutdown_timeout` how long a shutdown lets in-flight invocations
        finish before cancelling them (what they checkpointed stays: another worker resumes
        them). Temporal's other options are accepted and logged once as having no effect
        (`_options`); a keyword Temporal's Worker lacks is a TypeError."""
        accept("Worker", options, IGNORED_WORKER_OPTIONS)
        if not workflows and not activities:
            raise UsageError("Worker(...): at least one workflow or activity must be given "
                             "(workflows=[...], activities=[...])")
        self.task_queue = task_queue
        self._activities = list(activities)
        self._worker = (durable_worker(workflows, activities, client.durable.store,
                                       concurrency=max_concurrent_workflow_tasks or 100,
                                       drain_seconds=graceful_shutdown_timeout.total_seconds())
                        if workflows else None)
        if self._worker is None:
            check_activities(activities)
        self._answerer = Answerer(client.durable, [definition_of(w) for w in workflows])
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
            answering = asyncio.ensure_future(self._answerer.run())
            try:
                await self._worker.run_async(until=self._shutdown.is_set)
            finally:
                answering.cancel()
                await asyncio.wait([answering])

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
