"""`temporalio.workflow`'s commonly used API, under the same names, running on Durable.

    from durable.temporal import activity, workflow     # instead of: from temporalio import ...

    @workflow.defn
    class GreetingWorkflow:
        @workflow.run
        async def run(self, name: str) -> str:
            greeting = await workflow.execute_activity(
                compose_greeting, name, start_to_close_timeout=timedelta(seconds=10))
            await asyncio.sleep(30)                     # a durable timer, as in Temporal
            return greeting

Each call maps onto one Durable operation (see `_runtime` for the mechanism): activities are
checkpointed steps with Temporal's retry policy, `asyncio.sleep` and `workflow.sleep` durable
timers, child workflows child runs, `now`/`random`/`uuid4` recorded values. What is not listed in
`__all__` is not supported and is refused when the class is defined (`UNSUPPORTED` says what to do
instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import Any, NoReturn, TypeVar, overload

from durable.errors import NonDeterminismError
from durable.sdk.executor import ContinueAsNew
from durable.temporal import _cron, _definition
from durable.temporal._external import ExternalWorkflowHandle
from durable.temporal._runtime import (
    CURRENT_UPDATE,
    ActivityHandle,
    WorkflowTaskFailed,
    active,
    current,
)
from durable.temporal.common import PayloadConverter, RetryPolicy, run_attributes
from durable.temporal.exceptions import UnsupportedFeature

__all__ = [
    "ActivityCancellationType",
    "ActivityHandle",
    "ChildWorkflowCancellationType",
    "ChildWorkflowHandle",
    "ContinueAsNewError",
    "ExternalWorkflowHandle",
    "HandlerUnfinishedPolicy",
    "Info",
    "NondeterminismError",
    "ParentClosePolicy",
    "UpdateInfo",
    "WorkflowTaskFailed",
    "all_handlers_finished",
    "continue_as_new",
    "current_update_info",
    "defn",
    "deprecate_patch",
    "execute_activity",
    "execute_activity_method",
    "execute_child_workflow",
    "execute_local_activity",
    "execute_local_activity_method",
    "get_dynamic_query_handler",
    "get_dynamic_signal_handler",
    "get_external_workflow_handle",
    "get_external_workflow_handle_for",
    "get_last_completion_result",
    "get_query_handler",
    "get_signal_handler",
    "in_workflow",
    "info",
    "init",
    "instance",
    "logger",
    "now",
    "patched",
    "payload_converter",
    "query",
    "random",
    "run",
    "set_dynamic_query_handler",
    "set_dynamic_signal_handler",
    "set_query_handler",
    "set_signal_handler",
    "signal",
    "sleep",
    "start_activity",
    "start_activity_method",
    "start_child_workflow",
    "start_local_activity",
    "start_local_activity_method",
    "time",
    "time_ns",
    "unsafe",
    "update",
    "upsert_search_attributes",
    "uuid4",
    "wait",
    "wait_condition",
]

UNSUPPORTED: dict[str, str] = {
    "upsert_memo": "publish state for clients with a query instead",
    "memo": "pass what the workflow needs as its input",
    "as_completed": "use workflow.wait(..., return_when=asyncio.FIRST_COMPLETED)",
    "create_nexus_client": "",
    "execute_activity_class": "pass the callable instance to execute_activity",
    "set_update_handler": "declare each update with @workflow.update on the class",
    "set_dynamic_update_handler": "declare each update with @workflow.update on the class",
    "get_update_handler": "declare each update with @workflow.update on the class",
    "get_dynamic_update_handler": "declare each update with @workflow.update on the class",
}

T = TypeVar("T")
C = TypeVar("C", bound=type)
F = TypeVar("F", bound=Callable[..., Any])


class _NoArg:
    def __repr__(self) -> str:
        return "<no argument>"


_NOARG: Any = _NoArg()

ContinueAsNewError = ContinueAsNew
NondeterminismError = NonDeterminismError


class ParentClosePolicy(IntEnum):
    UNSPECIFIED = 0
    TERMINATE = 1
    ABANDON = 2
    REQUEST_CANCEL = 3


class HandlerUnfinishedPolicy(IntEnum):
    """What Temporal does about update handlers still running when the workflow ends: accepted
    for compatibility; here, as under WARN_AND_ABANDON, the worker logs a warning and the
    callers of those updates get WorkflowUpdateFailedError."""

    WARN_AND_ABANDON = 1
    ABANDON = 2


class ActivityCancellationType(IntEnum):
    TRY_CANCEL = 0
    WAIT_CANCELLATION_COMPLETED = 1
    ABANDON = 2


class ChildWorkflowCancellationType(IntEnum):
    ABANDON = 0
    TRY_CANCEL = 1
    WAIT_CANCELLATION_COMPLETED = 2
    WAIT_CANCELLATION_REQUESTED = 3


@dataclass(frozen=True, slots=True)
class Info:
    """What `workflow.info()` tells. A Durable run id is both Temporal's workflow and run id."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str = "durable"
    namespace: str = "default"
    attempt: int = 1
    cron_schedule: str | None = None

    def is_continue_as_new_suggested(self) -> bool:
        return False


def _args(arg: Any, args: Sequence[Any]) -> list[Any]:
    if arg is not _NOARG and args:
        raise ValueError("pass either one argument or args=[...], not both")
    return [arg] if arg is not _NOARG else list(args)


# -- definition --------------------------------------------------------------------------------

@overload
def defn(cls: C, /) -> C: ...
@overload
def defn(*, name: str | None = None, sandboxed: bool = True, dynamic: bool = False,
         failure_exception_types: Sequence[type[BaseException]] = (),
         versioning_behavior: Any = None) -> Callable[[C], C]: ...


def defn(cls: C | None = None, /, *, name: str | None = None, sandboxed: bool = True,
         dynamic: bool = False, failure_exception_types: Sequence[type[BaseException]] = (),
         versioning_behavior: Any = None) -> Any:
    """Declare a workflow class (named `name`, default the class name). `sandboxed` is accepted
    and has no effect: determinism comes from Durable's replay check, not a sandbox.

    This is where the class's code gets durable `asyncio.sleep`, `gather` and `wait_for`: the
    module defining it (and those defining its base classes) see `_workflow_asyncio` in place
    of `asyncio`. The `asyncio` module itself is left alone."""
    if dynamic:
        raise UnsupportedFeature("dynamic workflows (@workflow.defn(dynamic=True))",
                                 "declare each workflow class by name")

    def wrap(c: C) -> C:
        _definition.make_definition(c, name, failure_exception_types)
        return c
    return wrap(cls) if cls is not None else wrap


def run(fn: F) -> F:
    """Mark the workflow's entry method: `async def run(self, ...)`."""
    return _definition.mark_run(fn)  # type: ignore[return-value]


def init(fn: F) -> F:
    """Mark `__init__` as taking the workflow's input, as the run method does."""
    setattr(fn, _definition.INIT_ATTR, True)
    return fn


@overload
def signal(fn: F, /) -> F: ...
@overload
def signal(*, name: str | None = None, dynamic: bool = False, unfinished_policy: Any = None,
           description: str | None = None) -> Callable[[F], F]: ...


def signal(fn: F | None = None, /, *, name: str | None = None, dynamic: bool = False,
           unfinished_policy: Any = None, description: str | None = None) -> Any:
    """A signal handler, run in order of arrival as signals come in; an `async def` one runs on
    as a task of its own (its durable calls in a scope of its own), as in Temporal.
    `dynamic=True`: the handler of every name without one, called `(name, args)`."""
    return _definition.mark_handler(fn, name, dynamic, "signal", _definition.SIGNAL_ATTR)


@overload
def query(fn: F, /) -> F: ...
@overload
def query(*, name: str | None = None, dynamic: bool = False,
          description: str | None = None) -> Callable[[F], F]: ...


def query(fn: F | None = None, /, *, name: str | None = None, dynamic: bool = False,
          description: str | None = None) -> Any:
    """A query handler: a plain `def` method reading the instance's state. `dynamic=True`:
    the handler of every name without one, called `(name, args)`."""
    return _definition.mark_handler(fn, name, dynamic, "query", _definition.QUERY_ATTR)


@overload
def update(fn: F, /) -> F: ...
@overload
def update(*, name: str | None = None, dynamic: bool = False,
           unfinished_policy: HandlerUnfinishedPolicy = HandlerUnfinishedPolicy.WARN_AND_ABANDON,
           description: str | None = None) -> Callable[[F], F]: ...


def update(fn: F | None = None, /, *, name: str | None = None, dynamic: bool = False,
           unfinished_policy: HandlerUnfinishedPolicy = HandlerUnfinishedPolicy.WARN_AND_ABANDON,
           description: str | None = None) -> Any:
    """An update handler (`def` or `async def`): a message the caller waits on for its result.
    Decorate a method with `@<handler>.validator` to reject calls before they are accepted.
    How updates are recorded and survive crashes: see `_runtime`."""
    return _definition.mark_update(fn, name, dynamic)


@dataclass(frozen=True, slots=True)
class UpdateInfo:
    """What `current_update_info()` tells of the update being validated or handled."""

    id: str
    name: str


def current_update_info() -> UpdateInfo | None:
    """The update whose validator or handler (or code they call) is running here, else None."""
    current("current_update_info()")
    found = CURRENT_UPDATE.get()
    return None if found is None else UpdateInfo(*found)


def all_handlers_finished() -> bool:
    """Whether no accepted update handler and no async signal handler is still running:
    `await workflow.wait_condition(all_handlers_finished)` before returning lets every accepted
    update give its caller a result and keeps signal handlers from being cut short."""
    return current("all_handlers_finished()").all_handlers_finished()


# -- activities --------------------------------------------------------------------------------

def _refuse_options(what: str, **given: Any) -> None:
    """Options Durable cannot honour are refused, not ignored."""
    for option, value in given.items():
        if value:
            raise UnsupportedFeature(f"{option}= on {what}")


async def execute_activity(
        activity: Callable[..., Awaitable[T]] | Callable[..., T] | str, arg: Any = _NOARG, *,
        args: Sequence[Any] = (), task_queue: str | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        start_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None, retry_policy: RetryPolicy | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        activity_id: str | None = None, versioning_intent: Any = None,
        summary: str | None = None, priority: Any = None, result_type: Any = None) -> T:
    """Run an activity as a checkpointed step and return its result.

    `start_to_close_timeout` bounds each attempt; `schedule_to_close_timeout` bounds each attempt
    too and stops retrying once it has passed since the call; `retry_policy` (Temporal's
    defaults: unlimited attempts, 1 s doubling to 100 s) is checkpointed with each failure.
    `heartbeat_timeout` times out an attempt that stops calling `activity.heartbeat()`, and
    `cancellation_type` says how a cancellation reaches it (see `_attempt`).
    `task_queue` and `schedule_to_start_timeout` have nothing to act on (the activity runs in
    the worker running the workflow, at once).
    """
    return await current("execute_activity()").execute_activity(  # type: ignore[no-any-return]
        activity, _args(arg, args), local=False,
        start_to_close=_seconds(start_to_close_timeout),
        schedule_to_close=_seconds(schedule_to_close_timeout), retry_policy=retry_policy,
        result_type=result_type, heartbeat_timeout=_seconds(heartbeat_timeout),
        cancellation_type=int(cancellation_type))


def start_activity(
        activity: Callable[..., Any] | str, arg: Any = _NOARG, *, args: Sequence[Any] = (),
        task_queue: str | None = None, schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        start_to_close_timeout: timedelta | None = None,
        heartbeat_timeout: timedelta | None = None, retry_policy: RetryPolicy | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        activity_id: str | None = None, versioning_intent: Any = None,
        summary: str | None = None, priority: Any = None,
        result_type: Any = None) -> ActivityHandle:
    """Start an activity; await the handle for its result. Handles started together run
    concurrently from the first await of one of them (or from an asyncio.gather of them); doing
    other durable work before awaiting them is refused."""
    rt = current("start_activity()")
    return rt.start_activity(lambda: execute_activity(
        activity, arg, args=args, schedule_to_close_timeout=schedule_to_close_timeout,
        start_to_close_timeout=start_to_close_timeout, heartbeat_timeout=heartbeat_timeout,
        retry_policy=retry_policy, cancellation_type=cancellation_type,
        result_type=result_type))


async def execute_local_activity(
        activity: Callable[..., Awaitable[T]] | Callable[..., T] | str, arg: Any = _NOARG, *,
        args: Sequence[Any] = (), schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        start_to_close_timeout: timedelta | None = None, retry_policy: RetryPolicy | None = None,
        local_retry_threshold: timedelta | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        activity_id: str | None = None, summary: str | None = None,
        result_type: Any = None) -> T:
    """A local activity: in Durable every activity runs in the workflow's worker, so this is
    `execute_activity` (a checkpointed step) with the same timeouts, retry policy and
    cancellation."""
    return await current("execute_local_activity()").execute_activity(  # type: ignore[no-any-return]
        activity, _args(arg, args), local=True,
        start_to_close=_seconds(start_to_close_timeout),
        schedule_to_close=_seconds(schedule_to_close_timeout), retry_policy=retry_policy,
        result_type=result_type, cancellation_type=int(cancellation_type))


def start_local_activity(
        activity: Callable[..., Any] | str, arg: Any = _NOARG, *, args: Sequence[Any] = (),
        schedule_to_close_timeout: timedelta | None = None,
        schedule_to_start_timeout: timedelta | None = None,
        start_to_close_timeout: timedelta | None = None, retry_policy: RetryPolicy | None = None,
        local_retry_threshold: timedelta | None = None,
        cancellation_type: ActivityCancellationType = ActivityCancellationType.TRY_CANCEL,
        activity_id: str | None = None, summary: str | None = None,
        result_type: Any = None) -> ActivityHandle:
    rt = current("start_local_activity()")
    return rt.start_activity(lambda: execute_local_activity(
        activity, arg, args=args, schedule_to_close_timeout=schedule_to_close_timeout,
        start_to_close_timeout=start_to_close_timeout, retry_policy=retry_policy,
        cancellation_type=cancellation_type, result_type=result_type))


# An activity class's method, passed unbound (`MyActivities.compose`), is resolved by its
# activity name to the bound method the worker registered (`activity.implementation`), as for
# any activity: Temporal's `*_method` variants differ only in their static types.
execute_activity_method = execute_activity
start_activity_method = start_activity
execute_local_activity_method = execute_local_activity
start_local_activity_method = start_local_activity


def upsert_search_attributes(updates: Any) -> None:
    """Set the run's search attributes: Durable run attributes (`durable ls --where`,
    `Client.runs`), recorded so a replay does not set them again. Takes Temporal's forms:
    `[SearchAttributeKey.for_keyword("Status").value_set("paid"), ...]` or
    `{"Status": ["paid"]}`."""
    rt = current("upsert_search_attributes()")
    rt.ctx.set_attributes(run_attributes(updates, "workflow.upsert_search_attributes"))


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# -- child workflows ---------------------------------------------------------------------------

async def execute_child_workflow(
        workflow: Any, arg: Any = _NOARG, *, args: Sequence[Any] = (), id: str | None = None,
        task_queue: str | None = None, result_type: Any = None,
        cancellation_type: ChildWorkflowCancellationType = (
            ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED),
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
        execution_timeout: timedelta | None = None, run_timeout: timedelta | None = None,
        task_timeout: timedelta | None = None, id_reuse_policy: Any = None,
        retry_policy: RetryPolicy | None = None, cron_schedule: str = "",
        memo: Any = None, search_attributes: Any = None, versioning_intent: Any = None,
        static_summary: str | None = None, static_details: str | None = None,
        priority: Any = None) -> Any:
    """Run a child workflow (a class, its run method or its name) as its own run and return its
    result; it fails as ChildWorkflowError. If this run ends first, the child is cancelled."""
    _refuse_options("execute_child_workflow", execution_timeout=execution_timeout,
                    run_timeout=run_timeout, retry_policy=retry_policy,
                    cron_schedule=cron_schedule, memo=memo, search_attributes=search_attributes)
    value = await current("execute_child_workflow()").execute_child(
        workflow, _args(arg, args), id)
    if result_type is None:
        return value
    serializer = _definition.definition_of(workflow).durable.serializer
    return serializer.decode(serializer.encode(value), result_type)


class ChildWorkflowHandle:
    """A child started without waiting. Durable keeps it running after this run ends
    (Temporal's ParentClosePolicy.ABANDON), which is why that policy must be asked for."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.run_id = id

    def __await__(self) -> Any:
        raise UnsupportedFeature("awaiting the result of a child started with "
                                 "start_child_workflow()", "use execute_child_workflow()")


async def start_child_workflow(
        workflow: Any, arg: Any = _NOARG, *, args: Sequence[Any] = (), id: str | None = None,
        task_queue: str | None = None,
        parent_close_policy: ParentClosePolicy = ParentClosePolicy.TERMINATE,
        **options: Any) -> ChildWorkflowHandle:
    if parent_close_policy is not ParentClosePolicy.ABANDON:
        raise UnsupportedFeature(
            f"start_child_workflow() with parent_close_policy={parent_close_policy.name}",
            "pass parent_close_policy=ParentClosePolicy.ABANDON (the child outlives this run), "
            "or use execute_child_workflow()")
    _refuse_options("start_child_workflow", **options)
    run_id = await current("start_child_workflow()").start_child(workflow, _args(arg, args), id)
    return ChildWorkflowHandle(run_id)


def get_external_workflow_handle(workflow_id: str, *,
                                 run_id: str | None = None) -> ExternalWorkflowHandle:
    """A handle to signal or cancel another workflow from this one (each recorded once)."""
    current("get_external_workflow_handle()")
    return ExternalWorkflowHandle(workflow_id, run_id, None)


def get_external_workflow_handle_for(workflow: Any, workflow_id: str, *,
                                     run_id: str | None = None) -> ExternalWorkflowHandle:
    """As `get_external_workflow_handle`, typed by the other workflow's class or run method:
    its signals are checked by name."""
    current("get_external_workflow_handle_for()")
    return ExternalWorkflowHandle(workflow_id, run_id, _definition.definition_of(workflow))


# -- waiting -----------------------------------------------------------------------------------

async def wait_condition(fn: Callable[[], bool], *, timeout: timedelta | float | None = None,
                         timeout_summary: str | None = None) -> None:
    """Wait until `fn()` holds, re-checked whenever a signal is applied or a durable call
    completes; asyncio.TimeoutError after `timeout` (a durable timer)."""
    await current("wait_condition()").wait_condition(fn, _seconds(timeout))


async def wait(fs: Iterable[asyncio.Future[T]], *, timeout: timedelta | float | None = None,
               return_when: str = asyncio.ALL_COMPLETED
               ) -> tuple[set[asyncio.Future[T]], set[asyncio.Future[T]]]:
    """asyncio.wait for tasks of workflow code (`asyncio.create_task`); `timeout` is a durable
    timer, after which the (done, pending) sets are returned as they stand."""
    return await current("wait()").wait(fs, _seconds(timeout), return_when)


async def sleep(duration: timedelta | float, *, summary: str | None = None) -> None:
    """A durable timer, like `asyncio.sleep` in workflow code."""
    await current("sleep()").sleep(duration)


# -- deterministic values and information -------------------------------------------------------

def now() -> datetime:
    """The current time (UTC), recorded once and replayed after."""
    return current("now()").now()


def time() -> float:
    return now().timestamp()


def time_ns() -> int:
    return int(time() * 1e9)


def random() -> Any:
    """A `random.Random` seeded once per run from a recorded value: deterministic."""
    return current("random()").random()


def uuid4() -> Any:
    """A UUID from the run's deterministic generator."""
    return current("uuid4()").uuid4()


def info() -> Info:
    rt = current("info()")
    cron = _cron.CURRENT.get()
    return Info(workflow_id=rt.ctx.run_id, run_id=rt.ctx.run_id, workflow_type=rt.defn.name,
                cron_schedule=None if cron is None else cron.schedule)


def get_last_completion_result(type_hint: Any = None) -> Any:
    """In a cron workflow, the result of the last firing that succeeded; None otherwise."""
    return _cron.last_completion_result(current("get_last_completion_result()").defn,
                                        type_hint)


def in_workflow() -> bool:
    return active() is not None


def instance() -> Any:
    return current("instance()").instance


def patched(id: str) -> bool:
    """True where this run takes the new code path; runs already past this point under the old
    code keep taking the old one (Durable's `ctx.patched`)."""
    return current("patched()").ctx.patched(id)


def deprecate_patch(id: str) -> None:
    """Accepted: once every run took the new path, the `patched` call can simply go."""
    current("deprecate_patch()")


def continue_as_new(arg: Any = _NOARG, *, args: Sequence[Any] = (), workflow: Any = None,
                    task_queue: str | None = None, run_timeout: timedelta | None = None,
                    task_timeout: timedelta | None = None, retry_policy: RetryPolicy | None = None,
                    memo: Any = None, search_attributes: Any = None,
                    versioning_intent: Any = None) -> NoReturn:
    """End this run's history and start the workflow afresh with the given input."""
    rt = current("continue_as_new()")
    if workflow is not None and _definition.definition_of(workflow) is not rt.defn:
        raise UnsupportedFeature("continue_as_new() into another workflow type")
    _refuse_options("continue_as_new", run_timeout=run_timeout, retry_policy=retry_policy,
                    memo=memo, search_attributes=search_attributes)
    rt.ctx.continue_as_new(*_args(arg, args))


# -- handlers set at run time -------------------------------------------------------------------

def set_signal_handler(name: str, handler: Callable[..., Any] | None) -> None:
    """Handle signal `name` with `handler` (None: no longer); signals of that name that arrived
    before, without a handler, are delivered to it now, in their order."""
    current("set_signal_handler()").set_signal_handler(name, handler)


def get_signal_handler(name: str) -> Callable[..., Any] | None:
    return current("get_signal_handler()").handlers.signals.get(name)


def set_dynamic_signal_handler(handler: Callable[..., Any] | None) -> None:
    """Handle every signal without a handler of its own: `handler(name, args)`, `args` a
    sequence of `RawValue`. Signals buffered so far are delivered to it now."""
    current("set_dynamic_signal_handler()").set_signal_handler(None, handler)


def get_dynamic_signal_handler() -> Callable[..., Any] | None:
    return current("get_dynamic_signal_handler()").handlers.dynamic_signal


def set_query_handler(name: str, handler: Callable[..., Any] | None) -> None:
    current("set_query_handler()").handlers.set_query(name, handler)


def get_query_handler(name: str) -> Callable[..., Any] | None:
    return current("get_query_handler()").handlers.queries.get(name)


def set_dynamic_query_handler(handler: Callable[..., Any] | None) -> None:
    """Answer every query without a handler of its own: `handler(name, args)`."""
    current("set_dynamic_query_handler()").handlers.set_query(None, handler)


def get_dynamic_query_handler() -> Callable[..., Any] | None:
    return current("get_dynamic_query_handler()").handlers.dynamic_query


def payload_converter() -> PayloadConverter:
    """Types a dynamic handler's `RawValue` arguments: `.from_payload(raw.payload, T)`."""
    return PayloadConverter(current("payload_converter()").defn.durable.serializer)


class _WorkflowLogger(logging.LoggerAdapter[logging.Logger]):
    """Temporal's `workflow.logger`: silent while the run replays what it already did, and
    tagged with the workflow's identity."""

    def isEnabledFor(self, level: int) -> bool:
        rt = active()
        if rt is not None and (rt.ctx.is_replaying or rt.query_mode):
            return False
        return self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        rt = active()
        if rt is None:
            return msg, kwargs
        return (f"{msg} ({{'workflow_type': {rt.defn.name!r}, 'workflow_id': "
                f"{rt.ctx.run_id!r}}})"), kwargs


logger = _WorkflowLogger(logging.getLogger("durable.temporal.workflow"), {})


class _Unsafe:
    """`workflow.unsafe`: the parts that make sense without a sandbox."""

    @staticmethod
    def is_replaying() -> bool:
        return current("unsafe.is_replaying()").ctx.is_replaying

    @staticmethod
    @contextlib.contextmanager
    def imports_passed_through() -> Iterator[None]:
        """No sandbox, so nothing to pass through: imports work as they always do."""
        yield

    @staticmethod
    @contextlib.contextmanager
    def sandbox_unrestricted() -> Iterator[None]:
        yield

    @staticmethod
    def in_sandbox() -> bool:
        return False


unsafe = _Unsafe()

