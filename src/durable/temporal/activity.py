"""`@activity.defn` and what an activity body may ask about itself.

An activity is a plain function (sync or async). Durable runs it as a step: its result is
checkpointed once it returns, so it never runs again for the same call; a crash before then runs it
again (at least once, as in Temporal). Sync activities run in a thread, as Temporal's threaded
activities do, so they never block the workflows sharing the event loop. Heartbeats,
heartbeat timeouts and cancellation are `_attempt`'s; async completion is `_async_completion`'s.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn, TypeVar, overload

from durable.errors import UsageError
from durable.sdk.executor import CURRENT_STEP
from durable.temporal._async_completion import CompleteAsyncError, task_token
from durable.temporal._attempt import CURRENT_ATTEMPT, ActivityAttempt
from durable.temporal.exceptions import UnsupportedFeature

__all__ = ["Info", "defn", "heartbeat", "in_activity", "info", "is_cancelled", "logger",
           "raise_complete_async", "wait_for_cancelled", "wait_for_cancelled_sync"]

F = TypeVar("F", bound=Callable[..., Any])

REGISTRY: dict[str, Callable[..., Any]] = {}
"""Every @activity.defn by name: what `execute_activity("name", ...)` finds."""

_NAME_ATTR = "__durable_temporal_activity__"


@dataclass(frozen=True, slots=True)
class Info:
    """What `activity.info()` tells; the ids are Durable's (run id, operation id)."""

    activity_id: str
    activity_type: str
    attempt: int
    workflow_id: str
    workflow_run_id: str
    workflow_type: str
    task_queue: str = "durable"
    is_local: bool = False
    heartbeat_details: Sequence[Any] = ()
    """The details of the last heartbeat recorded by an earlier attempt (JSON data)."""
    heartbeat_timeout: timedelta | None = None
    task_token: bytes = b""
    """What `client.get_async_activity_handle(task_token=...)` takes, after
    `raise_complete_async()`."""


@dataclass(frozen=True, slots=True)
class CallInfo:
    """Set by the workflow around an activity call: the parts of `Info` a step cannot know."""

    activity_type: str
    workflow_type: str
    is_local: bool
    heartbeat_timeout: timedelta | None = None


CURRENT_CALL: ContextVar[CallInfo | None] = ContextVar("durable_temporal_activity", default=None)


@overload
def defn(fn: F, /) -> F: ...
@overload
def defn(*, name: str | None = None, no_thread_cancel_exception: bool = False,
         dynamic: bool = False) -> Callable[[F], F]: ...


def defn(fn: F | None = None, /, *, name: str | None = None,
         no_thread_cancel_exception: bool = False, dynamic: bool = False) -> Any:
    """Declare an activity. The function is returned unchanged (callable directly in tests, as
    in Temporal); it is registered under `name` (default: its `__name__`)."""
    if dynamic:
        raise UnsupportedFeature("dynamic activities (@activity.defn(dynamic=True))",
                                 "register each activity under its own name")

    def wrap(f: F) -> F:
        if not callable(f):
            raise UsageError(f"@activity.defn decorates a function, not {f!r}")
        activity_name = name or getattr(f, "__name__", None)
        if not activity_name:
            raise UsageError(f"@activity.defn: {f!r} has no __name__; pass name=...")
        setattr(f, _NAME_ATTR, activity_name)
        REGISTRY[activity_name] = f
        return f
    return wrap(fn) if fn is not None else wrap


def name_of(fn: Callable[..., Any]) -> str:
    """The activity name of `fn`: its @activity.defn name, else its `__name__` (Temporal also
    accepts undecorated functions in tests; here any callable works as an activity)."""
    found = getattr(fn, _NAME_ATTR, None) or getattr(fn, "__name__", None)
    if not isinstance(found, str):
        raise UsageError(f"{fn!r} is not an activity: decorate it with @activity.defn")
    return found


IMPLEMENTATIONS: dict[str, list[Callable[..., Any]]] = {}
"""What the workers serving in this process registered (`activities=[...]`), by activity name,
latest last. A workflow's call by name, by an unbound method or by a stub with the same name
runs the registered implementation, as Temporal's worker would; bound methods of an instance
exist nowhere else."""


@contextlib.contextmanager
def registered(activities: Sequence[Callable[..., Any]]) -> Iterator[None]:
    """Make `activities` the implementations of their names while a worker serves."""
    names = [name_of(fn) for fn in activities]
    for name, fn in zip(names, activities, strict=True):
        IMPLEMENTATIONS.setdefault(name, []).append(fn)
    try:
        yield
    finally:
        for name, fn in zip(names, activities, strict=True):
            impls = IMPLEMENTATIONS[name]
            impls.remove(fn)
            if not impls:
                del IMPLEMENTATIONS[name]


def implementation(activity: Callable[..., Any] | str) -> Callable[..., Any]:
    """What runs for a workflow's `execute_activity(activity, ...)`: the implementation a worker
    here registered under its name, else the function given, else (a name) the @activity.defn
    function of that name. A method of an activity class needs an instance: its bound method
    must have been registered."""
    name = activity if isinstance(activity, str) else name_of(activity)
    impls = IMPLEMENTATIONS.get(name)
    if impls:
        return impls[-1]
    if isinstance(activity, str):
        try:
            return REGISTRY[activity]
        except KeyError:
            raise UsageError(f"no activity named {activity!r} is registered: pass it in "
                             "Worker(activities=[...]) or define it with @activity.defn in a "
                             "module this process imports") from None
    if _unbound_method(activity):
        owner = activity.__qualname__.rpartition(".")[0]
        raise UsageError(f"activity {name!r} is the method {activity.__qualname__} of an "
                         f"activity class: register an instance's bound method in the worker, "
                         f"Worker(activities=[{owner}(...).{activity.__name__}])")
    return activity


def _unbound_method(fn: Callable[..., Any]) -> bool:
    if not inspect.isfunction(fn) or "." not in fn.__qualname__:
        return False
    if fn.__qualname__.rpartition(".")[0].endswith("<locals>"):
        return False  # a nested function, not a method
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "self"


def is_activity(fn: object) -> bool:
    return callable(fn) and isinstance(getattr(fn, _NAME_ATTR, None), str)


def in_activity() -> bool:
    return CURRENT_STEP.get() is not None


def info() -> Info:
    """The running activity's identity and attempt number (1 for the first)."""
    step = CURRENT_STEP.get()
    call = CURRENT_CALL.get()
    if step is None or call is None:
        raise UsageError("activity.info() is only available inside a running activity")
    attempt = CURRENT_ATTEMPT.get()
    return Info(activity_id=step.operation_id, activity_type=call.activity_type,
                attempt=step.attempt, workflow_id=step.run_id, workflow_run_id=step.run_id,
                workflow_type=call.workflow_type, is_local=call.is_local,
                heartbeat_details=attempt.earlier_details if attempt else (),
                heartbeat_timeout=call.heartbeat_timeout,
                task_token=task_token(step.run_id, step.operation_id))


def _attempt(what: str) -> ActivityAttempt:
    attempt = CURRENT_ATTEMPT.get()
    if attempt is None:
        raise UsageError(f"activity.{what} is only available inside a running activity")
    return attempt


def heartbeat(*details: Any) -> None:
    """Report progress: `details` (JSON data) reach the next attempt as
    `info().heartbeat_details` should this one fail or its worker die. Recorded at most once
    per throttle interval (0.8 x heartbeat_timeout, as Temporal does), the latest details then.
    A sync activity whose cancellation has been delivered gets `CancelledError` raised here."""
    _attempt("heartbeat()").heartbeat(details)


def raise_complete_async() -> NoReturn:
    """End this activity without a result: whoever holds `info().task_token` completes it
    later with `client.get_async_activity_handle(task_token=...).complete(result)`."""
    _attempt("raise_complete_async()")
    raise CompleteAsyncError


def is_cancelled() -> bool:
    """Whether cancellation has been delivered to this activity."""
    return _attempt("is_cancelled()").cancelled.is_set()


async def wait_for_cancelled() -> None:
    """Wait until cancellation is delivered to this (async) activity."""
    await _attempt("wait_for_cancelled()").cancelled_async.wait()


def wait_for_cancelled_sync(timeout: timedelta | float | None = None) -> None:
    """Wait, in a sync activity, until cancellation is delivered or `timeout` passes."""
    seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else timeout
    _attempt("wait_for_cancelled_sync()").cancelled.wait(seconds)


class _ActivityLogger(logging.LoggerAdapter[logging.Logger]):
    """Tags records with the activity's identity, as Temporal's activity logger does."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        step, call = CURRENT_STEP.get(), CURRENT_CALL.get()
        if step is None or call is None:
            return msg, kwargs
        return (f"{msg} ({{'activity_type': {call.activity_type!r}, 'attempt': {step.attempt}, "
                f"'workflow_id': {step.run_id!r}}})"), kwargs


logger = _ActivityLogger(logging.getLogger("durable.temporal.activity"), {})
