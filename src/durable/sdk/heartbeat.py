"""A running step attempt's progress reports (what Temporal calls an activity's heartbeats).

Each report is a checkpoint of the STARTED step (action HEARTBEAT) carrying the body's details:
durable, and fenced like every checkpoint, so a worker that lost the run cannot overwrite what
its successor reported. The last details are the step's `result` while it runs and travel with
a failed attempt's RETRY, so the next attempt (after a failure, a timeout or a crash) starts
from them. The engine's answer says whether the run has been asked to cancel meanwhile: the
only way a body that never awaits anything durable can learn of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from durable.model import OperationAction, OperationUpdate
from durable.sdk.executor import Deferred, Executor


class Heartbeat:
    """The reports of one attempt. `beat` and `close` run on the executor's loop."""

    def __init__(self, ex: Executor, update: Callable[..., OperationUpdate],
                 start: Deferred | None, details: str | None) -> None:
        self.details = details
        """The last details recorded, by this attempt or an earlier one (None: none yet)."""
        self._ex = ex
        self._update = update
        self._start = start  # the attempt's START, if it may not have been sent yet
        self._closed = False
        self._in_flight: set[asyncio.Task[bool]] = set()
        self._unrecorded: tuple[str | None] | None = None

    @property
    def lost(self) -> bool:
        """Whether the run has been taken from this invocation (a report was refused)."""
        return self._ex.fenced

    @property
    def cancel_met(self) -> bool:
        """Whether the workflow code has already been told the run is cancelled."""
        return self._ex.cancel_raised

    def beat(self, details: str | None) -> asyncio.Task[bool] | None:
        """Record `details` in the background; the task answers whether the run has been asked
        to cancel. None once the attempt has ended: a body cut off by its timeout may go on
        in its thread, and must not report for the attempt that replaced it."""
        if self._closed:
            return None
        task = asyncio.get_running_loop().create_task(self._record(details))
        self._in_flight.add(task)
        task.add_done_callback(self._landed)
        return task

    def _landed(self, task: asyncio.Task[bool]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # a refused report fences the invocation; nothing more to say

    async def _record(self, details: str | None) -> bool:
        if self._start is not None:
            await self._start.send_now()  # the engine takes reports of a STARTED step only
        await self._ex.checkpoint(self._update(OperationAction.HEARTBEAT, payload=details))
        self.details = details
        return self._ex.cancel_requested

    def keep(self, details: str | None) -> None:
        """Details reported but not yet recorded (throttled) when the attempt ends: they travel
        with its outcome instead, as Temporal sends the last details with a failure."""
        self._unrecorded = (details,)

    async def close(self) -> None:
        """The attempt ended: take no more reports, and let those on their way land before
        its outcome is checkpointed (the engine refuses a report of a step that has ended)."""
        self._closed = True
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))
        if self._unrecorded is not None:  # newer than any report that was on its way
            self.details = self._unrecorded[0]
