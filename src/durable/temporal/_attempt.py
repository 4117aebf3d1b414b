"""One attempt of a Temporal-style activity: its heartbeats, heartbeat timeout and cancellation.

An activity call is a Durable step whose body is `activity_body(...)`: it runs the activity
(a sync one in a thread) and watches it meanwhile.

- `activity.heartbeat(*details)` records the details durably through the step's `Heartbeat`
  (a fenced checkpoint), throttled as Temporal throttles: the first at once, then at most one
  per interval (0.8 x heartbeat_timeout, at most 60 s; 30 s without a timeout), the latest
  details then. A crashed or failed attempt's last details are the next one's
  `info().heartbeat_details`.
- `heartbeat_timeout`: an attempt that goes that long without calling `heartbeat()` is timed
  out (a `TimeoutError` failure, retried per the retry policy) and told it is cancelled.
- Cancellation reaches the activity from two sides. The run's (`handle.cancel()` of the
  workflow) is learned from the engine's answer to a heartbeat, the one moment a body that
  awaits nothing durable meets the engine; the workflow's own (`.cancel()` of the handle
  `start_activity` returned) is handed over in process. Delivered, it is
  `asyncio.CancelledError` at the next await of an async activity and `CancelledError` from
  the next `heartbeat()` of a sync one, as in Temporal.
- What the workflow then sees is decided here, as the step's recorded outcome, so a replay
  sees the same: TRY_CANCEL and ABANDON stop waiting at once (ABANDON without telling the
  activity), WAIT_CANCELLATION_COMPLETED waits for the activity to end and takes its outcome.
  A cancelled run's step is recorded CANCELLED (the workflow code meets
  asyncio.CancelledError); one cancelled through its handle FAILED with `CancelledError`, never
  retried (the workflow meets `ActivityError` caused by it).
- A body still running once its attempt has ended (not waited for, or timed out), or whose
  heartbeat was refused because another worker has taken the run over, is stopped by its next
  heartbeat, as Temporal stops an activity the server no longer knows: nothing goes on running
  unheard for longer than it takes to heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from enum import Enum
from typing import Any

from durable.errors import Cancelled
from durable.sdk.executor import CURRENT_STEP
from durable.sdk.heartbeat import Heartbeat
from durable.sdk.serializer import Serializer
from durable.temporal._async_completion import COMPLETED_ASYNC, CompleteAsyncError
from durable.temporal.exceptions import CancelledError
from durable.temporal.exceptions import TimeoutError as ActivityTimeoutError

MAX_THROTTLE = 60.0
DEFAULT_THROTTLE = 30.0
"""Temporal's default max_heartbeat_throttle_interval and default_heartbeat_throttle_interval."""

TRY_CANCEL, WAIT_CANCELLATION_COMPLETED, ABANDON = 0, 1, 2
"""`workflow.ActivityCancellationType`'s values (defined there, where workflow code finds it)."""


class Cause(Enum):
    RUN = "the workflow was cancelled"
    CALLER = "the workflow cancelled the activity"
    HEARTBEAT_TIMEOUT = "the activity missed its heartbeat timeout"


class CancelRequest:
    """The workflow's `.cancel()` of one activity handle, wherever that call's attempt runs."""

    def __init__(self) -> None:
        self.requested = False
        self.attempt: ActivityAttempt | None = None

    def request(self) -> None:
        self.requested = True
        if self.attempt is not None:
            self.attempt.interrupt(Cause.CALLER)


class ActivityAttempt:
    """What the activity API (`heartbeat`, `is_cancelled`, `info`) reaches while it runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, beats: Heartbeat | None,
                 serializer: Serializer, heartbeat_timeout: float | None,
                 cancellation_type: int, run_cancel_applies: bool) -> None:
        self.loop = loop
        self.earlier_details: Sequence[Any] = _decode(serializer, beats.details if beats else None)
        self.cancelled = threading.Event()  # delivered: what the activity's own code sees
        self.cancelled_async = asyncio.Event()
        self.cause: Cause | None = None
        self.stop_waiting: asyncio.Future[Cause] = loop.create_future()
        self._beats = beats
        self._serializer = serializer
        self._timeout = heartbeat_timeout
        self._throttle = (min(0.8 * heartbeat_timeout, MAX_THROTTLE) if heartbeat_timeout
                          else DEFAULT_THROTTLE)
        self._cancellation_type = cancellation_type
        self._run_cancel_applies = run_cancel_applies
        self.last_heartbeat = time.monotonic()
        self._pending: tuple[str | None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.body: asyncio.Future[Any] | None = None
        self.is_async = False
        self.ended = False  # the attempt is over while the body still runs

    # -- heartbeats ------------------------------------------------------------------------
    def heartbeat(self, details: Sequence[Any]) -> None:
        """From the activity's code, on the loop or in its thread."""
        payload = self._serializer.encode(list(details)) if details else None
        self.last_heartbeat = time.monotonic()
        if self.ended and self.is_async and self.body is not None:
            self.body.cancel()  # this is the body's own task: raised at its next await
            return
        if not self.is_async and (self.cancelled.is_set() or self.ended):
            raise CancelledError("Cancelled")
        # RuntimeError: the loop is gone (the worker stopped), nobody is listening.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._offer, payload)

    def _offer(self, payload: str | None) -> None:
        self._pending = (payload,)
        if self._timer is None:
            self._send()

    def _send(self) -> None:
        self._timer = None
        if self._pending is None or self._beats is None:
            return
        (payload,), self._pending = self._pending, None
        sent = self._beats.beat(payload)
        if sent is None:
            return
        sent.add_done_callback(self._answered)
        self._timer = self.loop.call_later(self._throttle, self._send)

    def _answered(self, sent: asyncio.Task[bool]) -> None:
        if sent.cancelled():
            return
        if sent.exception() is not None:
            if self._beats is not None and self._beats.lost:
                self._stop_lost()
            return
        if sent.result() and self._run_cancel_applies:
            self.interrupt(Cause.RUN)

    def _stop_lost(self) -> None:
        """Another worker has taken the run over (this one paused, or lost its database for
        longer than its lease): whatever this attempt does now is void and done again there,
        so stop it as its ended attempt would be stopped (see `close`)."""
        self.ended = True
        self.cancelled.set()
        self.cancelled_async.set()
        if self.is_async and self.body is not None:
            self.body.cancel()

    def heartbeat_overdue_in(self) -> float | None:
        if self._timeout is None:
            return None
        return self.last_heartbeat + self._timeout - time.monotonic()

    # -- cancellation ----------------------------------------------------------------------
    def interrupt(self, cause: Cause) -> None:
        """On the loop: cancellation for `cause`, delivered as the cancellation type says."""
        if self.cause is not None:
            return
        self.cause = cause
        if cause is Cause.HEARTBEAT_TIMEOUT or self._cancellation_type != ABANDON:
            self.cancelled.set()
            self.cancelled_async.set()
            if self.is_async and self.body is not None:
                self.body.cancel()
        if cause is Cause.HEARTBEAT_TIMEOUT or self._cancellation_type != \
                WAIT_CANCELLATION_COMPLETED:
            self.stop_waiting.set_result(cause)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._pending is not None and self._beats is not None:
            self._beats.keep(self._pending[0])
        if self.body is None or self.body.done():
            return
        # Still running: the attempt has ended without it (a timeout, a cancellation not
        # waited for), so whatever it ends with now is heard by nobody, and its next
        # heartbeat stops it, as Temporal's stops an activity the server no longer knows.
        self.ended = True
        self.body.add_done_callback(_unheard)
        if self.is_async and (self._cancellation_type != ABANDON or self.cause is None):
            self.body.cancel()

    def outcome_of_cancel(self) -> BaseException:
        """What the step records for a cancellation: see the module docstring."""
        if self.cause is Cause.RUN:
            return Cancelled()
        if self.cause is Cause.HEARTBEAT_TIMEOUT:
            return ActivityTimeoutError(f"activity heartbeat timeout: no heartbeat for "
                                        f"{self._timeout}s")
        return CancelledError("Cancelled")


def _unheard(body: asyncio.Future[Any]) -> None:
    if not body.cancelled():
        body.exception()


CURRENT_ATTEMPT: ContextVar[ActivityAttempt | None] = ContextVar("durable_temporal_attempt",
                                                                  default=None)


def _decode(serializer: Serializer, payload: str | None) -> Sequence[Any]:
    return () if payload is None else tuple(serializer.decode(payload))


def activity_body(fn: Callable[..., Any], serializer: Serializer, *,
                  heartbeat_timeout: float | None, cancellation_type: int,
                  cancel: CancelRequest) -> Callable[..., Any]:
    """The step body running `fn` as one activity call's attempts (see the module docstring)."""
    async def body(*args: Any) -> Any:
        step = CURRENT_STEP.get()
        beats = step.heartbeat if step is not None else None
        loop = asyncio.get_running_loop()
        # Once the workflow code has met the run's cancellation, the activities it runs after
        # (a cleanup, say) are not cancelled by it.
        applies = beats is not None and not beats.cancel_met
        attempt = ActivityAttempt(loop, beats, serializer, heartbeat_timeout,
                                  cancellation_type, applies)
        if cancel.requested:
            raise CancelledError("Cancelled")
        cancel.attempt = attempt
        token = CURRENT_ATTEMPT.set(attempt)
        try:
            attempt.is_async = asyncio.iscoroutinefunction(fn)
            attempt.body = asyncio.ensure_future(fn(*args) if attempt.is_async
                                                 else asyncio.to_thread(fn, *args))
        finally:
            CURRENT_ATTEMPT.reset(token)
        try:
            return await _watch(attempt)
        finally:
            cancel.attempt = None
            attempt.close()
    return body


async def _watch(attempt: ActivityAttempt) -> Any:
    body = attempt.body
    assert body is not None
    while True:
        overdue_in = attempt.heartbeat_overdue_in()
        if overdue_in is not None and overdue_in <= 0:
            attempt.interrupt(Cause.HEARTBEAT_TIMEOUT)
        await asyncio.wait([body, attempt.stop_waiting], timeout=overdue_in,
                           return_when=asyncio.FIRST_COMPLETED)
        if attempt.stop_waiting.done():
            raise attempt.outcome_of_cancel()
        if body.done():
            break
    try:
        result = body.result()
    except CompleteAsyncError:
        return COMPLETED_ASYNC
    except (asyncio.CancelledError, CancelledError):
        if attempt.cause is None:
            raise
        raise attempt.outcome_of_cancel() from None
    if asyncio.iscoroutine(result):  # a sync callable that returned a coroutine
        result = await result
    return result
