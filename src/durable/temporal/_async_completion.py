"""Async activity completion, on Durable's callbacks.

An activity that calls `activity.raise_complete_async()` ends its step with a marker result
(`COMPLETED_ASYNC`), checkpointed as any result: a crash after it never runs the body again.
The workflow then opens a Durable callback named after the activity (`callback_name`) and
waits on it, with the activity's timeout and heartbeat timeout; a run waiting there is
suspended and holds nothing. Whoever holds the activity's task token (`info().task_token`: the
run id and the activity id) resolves it through `client.get_async_activity_handle(...)`, in
any process, before or after a worker restart: the handle finds the callback by its name
(waiting, on the store's commit notifications, for the workflow to have opened it) and
completes, fails or heartbeats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from durable.errors import UsageError
from durable.model import ErrorObject, OperationStatus, OperationType
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.temporal.exceptions import CancelledError

if TYPE_CHECKING:
    from durable.client import Client as DurableClient

COMPLETED_ASYNC = {"temporal.completed_async": True}
"""The step result of an activity that called raise_complete_async()."""

LOOK_AGAIN = 1.0
"""Seconds between reads while waiting for the callback, should a commit notification be lost."""


class CompleteAsyncError(BaseException):
    """Raised by `activity.raise_complete_async()`: a BaseException, as Temporal's, so the
    activity's own `except Exception` does not take it for a failure."""


def callback_name(activity_id: str) -> str:
    return f"temporal.complete_async:{activity_id}"


def task_token(run_id: str, activity_id: str) -> bytes:
    return json.dumps({"run_id": run_id, "activity_id": activity_id}).encode()


def parse_task_token(token: bytes) -> tuple[str, str]:
    try:
        data = json.loads(token)
        return str(data["run_id"]), str(data["activity_id"])
    except (ValueError, TypeError, KeyError):
        raise UsageError(f"get_async_activity_handle: {token!r} is not a task token; pass "
                         "activity.info().task_token as the activity read it") from None


class AsyncActivityHandle:
    """`client.get_async_activity_handle(...)`: completes an activity that raised
    `raise_complete_async()`."""

    def __init__(self, durable: DurableClient, run_id: str, activity_id: str) -> None:
        self._durable = durable
        self.run_id = run_id
        self.activity_id = activity_id

    async def complete(self, result: Any = None) -> None:
        await self._durable.resolve_callback_async(await self._callback_id(),
                                                   DEFAULT_SERIALIZER.encode(result))

    async def fail(self, error: BaseException, *, last_heartbeat_details: Any = ()) -> None:
        """The activity fails with `error`: the workflow's ActivityError has it as its cause
        (an ApplicationError keeps its type, details and non_retryable)."""
        await self._durable.resolve_callback_async(
            await self._callback_id(), error=ErrorObject.from_exception(error))

    async def report_cancellation(self, *details: Any) -> None:
        """The activity ends cancelled: the workflow's ActivityError is caused by
        CancelledError."""
        await self.fail(CancelledError("Cancelled"))

    async def heartbeat(self, *details: Any) -> None:
        """Still at work: pushes out the activity's heartbeat timeout. The details are not
        kept (an async completion has no next attempt to read them)."""
        callback_id = await self._callback_id()
        await self._durable.heartbeat_callback_async(callback_id)

    async def _callback_id(self) -> str:
        """The callback's id, once the workflow has opened it: the activity hands its token
        out before its step's outcome is even recorded, so a quick completer may get here
        first."""
        name = callback_name(self.activity_id)
        store = self._durable.store
        changed = asyncio.Event()
        loop = asyncio.get_running_loop()

        def notify() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(changed.set)
        unsubscribe = store.subscribe(notify)
        try:
            while True:
                changed.clear()
                run = await self._durable.get_async(self.run_id)
                ops = await store.aread(lambda tx: tx.operations(self.run_id))
                found = next((op for op in ops if op.type is OperationType.CALLBACK
                              and op.name == name), None)
                if found is not None:
                    if found.status is not OperationStatus.STARTED or not found.callback_id:
                        raise UsageError(f"activity {self.activity_id!r} of run "
                                         f"{self.run_id!r} is no longer waiting for its "
                                         f"completion (it is {found.status})")
                    return found.callback_id
                if not run.status.live:
                    raise UsageError(f"run {self.run_id!r} ended ({run.status}) without "
                                     f"activity {self.activity_id!r} waiting for an async "
                                     "completion")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), LOOK_AGAIN)
        finally:
            unsubscribe()

