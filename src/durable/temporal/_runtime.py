"""How a Temporal-style workflow runs on Durable's replay machinery.

**asyncio inside workflow code.** Temporal runs each workflow on its own event loop, so that
`asyncio.sleep` becomes a server timer and task scheduling follows the event history. Durable
instead runs many workflows, their steps and the group-commit writer as tasks of one shared loop,
and its replay is already deterministic per scope: every durable call gets an id from its scope
and its position in it. A private loop per workflow would have to ferry every checkpoint across
loops and re-implement that scheduling; what actually needs redirecting is only the three asyncio
calls through which workflow code touches time and concurrency. `Runtime.sleep`, `gather` and
`wait_for` below are their durable forms: `ctx.sleep` (a durable timer), `ctx.gather` (one branch
scope per awaitable) and a durable race against a timer. Workflow code reaches them through
`_workflow_asyncio`, which `@workflow.defn` binds in place of `asyncio` in the namespaces the
class's code runs in; the `asyncio` module itself is never modified, so nothing outside those
namespaces (Durable's own workflows, the worker, other libraries) can be affected, and inside
them the calls are asyncio's own unless `active()` says a workflow's code is running. Everything
else asyncio offers is refused at definition time (see `_definition`).

**Signals.** All signals to a run travel on one Durable signal channel (`CHANNEL`), so their
order across names is kept. A pump, a task with its own scope, takes them one by one with durable
waits and runs the handlers; an async one continues as a task (`spawn`) in a scope of its own,
whose id comes from the signal's arrival index, so its durable calls replay with the same ids
whenever it is delivered. Workflow code must see handler effects at the same
points on every replay, so each scope records, at its next durable step after a change, how many
signals had been applied ("watermark"); a replay applies exactly that many there, whatever the
pump has already taken. Live, the pump applies a signal as soon as it arrives, as Temporal does.
`workflow.wait_condition` re-checks its predicate whenever a signal is applied or a durable call
completes, and counts as waiting on the engine, so a run whose every part waits is suspended and
costs nothing until a signal or timer wakes it.

**Tasks and in-memory primitives.** `asyncio.create_task` in workflow code gives the task a
scope of its own, placed in the creating scope's sequence; awaiting a task, an asyncio.Event,
Queue, Lock ... (`in_memory`) counts as waiting on the engine, since only another part of the
run can end that wait: when every part waits, the run is suspended and a signal or timer
resumes it by replay.

**Updates** travel on the same channel as signals, marked with their update id, so they keep
their place in the order of messages. When the pump applies one, it opens a CONTEXT operation
for it, whose id follows from the message's position (not from the pump scope's counter, which
the pump's own waits advance concurrently), and the update's outcome is written, from that scope,
to the run's stream `UPDATES` as recorded values: first `accepted` (or `rejected` with the
validator's error; the handler then never runs), at the end `result` or `failure`. Callers follow
that stream, woken by the store's commit notifications. The handler runs in its own task and
scope, so it may await activities, timers and conditions; its durable calls are recorded in its
scope and replayed there after a crash, where a handler whose outcome is recorded runs again to
rebuild the instance's state but writes nothing. An update is counted among the applied messages
when its handler starts, and a watermark is taken only once every started handler has run up to
its first await, so the run method sees what the handlers did before their first await at the
same points on every replay. What a handler does after an await is seen wherever the run method
next looks, like the result of any concurrent branch; the usual shape, waiting with
`wait_condition` on state the handlers set, replays alike. The same update id twice is one
update: the pump takes the second for the first and drops it. `workflow.all_handlers_finished()`
is true once no update handler and no async signal handler is still running.

**Queries** are answered by replaying the run's history read-only in the caller's process, to
the point the run has reached, then applying the signals already delivered but not yet taken,
and calling the handler on the resulting instance: the answer is exactly the state Temporal
would report, including a signal sent just before the query, and handlers may take arguments.
Nothing is written to the run's history.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import random as _random
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn, TypeVar

from durable.errors import (
    CallbackFailed,
    Cancelled,
    ChildFailed,
    NonDeterminismError,
    StepFailed,
    UsageError,
    WaitTimeout,
)
from durable.model import (
    CheckpointResult,
    ErrorObject,
    Invocation,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    operation_id,
)
from durable.sdk import callback as _callback
from durable.sdk import values as _values
from durable.sdk.context import Context
from durable.sdk.executor import CURRENT_SCOPE, CURRENT_STEP, Executor, Scope, Suspend
from durable.sdk.parallel import Completion
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.sdk.step import return_type
from durable.temporal._async_completion import COMPLETED_ASYNC, callback_name
from durable.temporal._attempt import TRY_CANCEL, CancelRequest, activity_body
from durable.temporal._cron import run_input
from durable.temporal._definition import Definition, UpdateHandler
from durable.temporal._handlers import Delivery, Handlers, typed_args
from durable.temporal.activity import CURRENT_CALL, CallInfo
from durable.temporal.common import DEFAULT_ACTIVITY_RETRY, RetryPolicy
from durable.temporal.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    ChildWorkflowError,
    FailureError,
    UnsupportedFeature,
    cause_of,
)
from durable.temporal.exceptions import TimeoutError as ActivityTimeoutError

T = TypeVar("T")

CHANNEL = "temporal.signal"
"""The Durable signal name every Temporal-style signal travels on: {"name": ..., "args": [...]}."""
WATERMARK = "temporal.signals-applied"
"""The recorded value saying how many signals a scope had seen applied at that point."""
PUMP_SCOPE = "temporal.signals"
HANDLER_SCOPE = "temporal.signal-handler"
"""The scope an async signal handler runs in: one per signal, named by its arrival index."""
TASK_SCOPE = "temporal.task"
"""The scope of a task workflow code created (`asyncio.create_task`)."""
UPDATES = "temporal.updates"
"""The run's stream on which each update's stages are written: {"id": ..., "stage": ...}."""
UPDATE_SCOPE = "temporal.update"

_RUNTIME: ContextVar[Runtime | None] = ContextVar("durable_temporal_runtime", default=None)
_HANDLE_CANCEL: ContextVar[CancelRequest | None] = ContextVar("durable_temporal_handle_cancel",
                                                              default=None)
"""While a start_activity handle runs its call: where its `.cancel()` goes."""
CURRENT_UPDATE: ContextVar[tuple[str, str] | None] = ContextVar("durable_temporal_update",
                                                                default=None)
"""(update id, update name) where an update's validator or handler runs."""


def active() -> Runtime | None:
    """The runtime of the workflow whose code is running here; None in an activity or outside."""
    rt = _RUNTIME.get()
    return rt if rt is not None and CURRENT_STEP.get() is None else None


def current(what: str) -> Runtime:
    rt = active()
    if rt is None:
        raise UsageError(f"workflow.{what} can only be used in workflow code: a @workflow.run "
                         "method, or a handler, of a running @workflow.defn class")
    return rt


class WorkflowTaskFailed(NonDeterminismError):
    """Workflow code raised an exception that is not a Temporal failure. Temporal fails the
    workflow *task* then, and retries it until a fixed deploy lets it pass; Durable's equivalent
    is parking the run (it stays RUNNING, the error visible) until new code resumes it."""


class _WorkflowCancelled(asyncio.CancelledError):
    """The run's cancellation, as workflow code sees it: an asyncio.CancelledError, as in
    Temporal. Told apart from the loop cancelling a task (a worker shutting down)."""


@dataclass(frozen=True, slots=True)
class _Raised:
    """An exception carried as a value through a gather branch, to be re-raised as itself."""

    error: BaseException


_TIMED_OUT = object()


async def _capture(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except Exception as e:
        return _Raised(e)


def _close_unstarted(aw: Awaitable[Any]) -> None:
    """A race replayed from its record runs only the branch that won: close the loser's
    coroutine (never started) so that it does not warn "never awaited"."""
    if inspect.iscoroutine(aw) and inspect.getcoroutinestate(aw) == inspect.CORO_CREATED:
        aw.close()


def _seconds(value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _scope() -> Scope:
    return CURRENT_SCOPE.get()


class Runtime:
    """One invocation of one Temporal-style workflow: its instance, its signal pump, and the
    Temporal API calls of its code turned into Durable operations."""

    def __init__(self, defn: Definition, ctx: Context, *, query_mode: bool = False,
                 undelivered: Sequence[str | None] = ()) -> None:
        self.defn = defn
        self.ctx = ctx
        self.ex: Executor = _scope().executor
        self.query_mode = query_mode
        self.undelivered = undelivered  # a query's replay: signals sent, not yet taken
        self.instance: Any = None
        self.handlers = Handlers(defn)
        self.pump = _Pump(self) if defn.accepts_signals else None
        self.failure: BaseException | None = None
        """What an async handler, an update handler or a task raised that must fail the
        workflow task; raised where workflow code next observes state (`sync`)."""
        self._tasks: set[WorkflowTask[Any]] = set()
        self._seen: dict[str | None, int] = {}
        self._waiters: set[asyncio.Future[None]] = set()
        self._unseen_wakes = 0  # wait_conditions woken that have not resumed yet
        self._wake_taken = asyncio.Event()
        self._rng: _random.Random | None = None
        self._unawaited: dict[str | None, list[ActivityHandle]] = {}

    # -- the run -----------------------------------------------------------------------------
    async def execute(self, args: Sequence[Any]) -> Any:
        self.defn.prepare_run()
        token = _RUNTIME.set(self)
        try:
            self.instance = self._instantiate(args)
            self.handlers.bind(self.instance)
            if self.pump is not None:
                self.pump.start()
            try:
                await self.sync()
                result = await self.defn.run_fn(self.instance, *args)
                self._refuse_unawaited()
                if self.pump is not None:
                    self.pump.updates.warn_unfinished()
                return result
            finally:
                if not self.query_mode:
                    await self.stop_tasks()
                    if self.pump is not None:
                        await self.pump.stop()
        except _WorkflowCancelled:
            raise Cancelled from None
        except Exception as e:
            if isinstance(e, (FailureError, *self.defn.failure_types)):
                raise
            raise WorkflowTaskFailed(
                f"workflow {self.defn.name!r} (run {self.ctx.run_id!r}) raised "
                f"{type(e).__name__}: {e}. As in Temporal, only ApplicationError (or a type in "
                "@workflow.defn(failure_exception_types=...)) fails the workflow; anything else "
                "fails the workflow task, so the run is parked until a fixed deploy resumes "
                "it") from e
        finally:
            _RUNTIME.reset(token)

    def _instantiate(self, args: Sequence[Any]) -> Any:
        cls = self.defn.cls
        return cls(*args) if self.defn.init_takes_args else cls()

    def _refuse_unawaited(self) -> None:
        if any(self._unawaited.values()):
            raise UnsupportedFeature(
                "finishing a workflow while activities started with start_activity() were "
                "never awaited", "await each handle, or asyncio.gather(...) them")

    # -- observation points ------------------------------------------------------------------
    async def sync(self, *, changed: bool = True) -> None:
        """A point where this scope's code may observe signal handlers' effects: replaying, apply
        what the recorded watermark says; live, apply all that arrived and record the count.
        `changed`: the code since the last point may have changed state other parts wait on
        (not so for a wait_condition re-checking its predicate: two of them would wake each
        other for ever)."""
        if changed:
            self._wake()
        spawned = len(self._tasks)
        pump = self.pump
        if pump is None:
            self.raise_failure()
            return
        scope = _scope()
        upcoming = self._upcoming(scope)
        if upcoming is not None and _is_watermark(upcoming):
            count = int(_values.record(self.ex, scope, SubType.STEP, WATERMARK, lambda: 0))
            self._seen[scope.parent_id] = count
            # An update handler's scope, replayed, may run ahead of the run method: it waits
            # for the run method's watermarks to apply what it saw, rather than applying it to
            # the state the run method is still deciding on.
            await pump.apply_through(count, lift=scope.parent_id not in pump.updates.scopes)
            await pump.updates.let_started_run()
        elif upcoming is None:
            if scope.parent_id in pump.updates.scopes and not self.query_mode:
                await pump.until_run_method_replayed()
            await pump.caught_up.wait()  # every signal the engine delivered has been taken
            pump.allowed = None
            pump.apply_ready()
            while pump.updates.fresh:  # more may come in meanwhile: applied, and waited for
                await pump.updates.let_started_run()
                pump.apply_ready()
            if pump.applied != self._seen.get(scope.parent_id, 0) and not self.query_mode:
                applied = pump.applied
                _values.record(self.ex, scope, SubType.STEP, WATERMARK, lambda: applied)
                self._seen[scope.parent_id] = applied
        if len(self._tasks) > spawned:
            # Handlers just started run to their first await before this code goes on, as
            # in Temporal, where they are tasks scheduled ahead of the code's resumption.
            await asyncio.sleep(0)
        self.raise_failure()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def _upcoming(self, scope: Scope) -> Operation | None:
        return self.ex.ops.get(operation_id(scope.parent_id, scope.counter + 1))

    def _wake(self) -> None:
        """State may have changed: let every wait_condition check its predicate again."""
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
                self._unseen_wakes += 1
        self._waiters.clear()

    async def wakes_taken(self) -> None:
        """Return once every wait_condition woken has resumed and looked at the state."""
        while self._unseen_wakes:
            self._wake_taken.clear()
            await self._wake_taken.wait()

    async def _block(self) -> None:
        """Wait until state may have changed. Counts as waiting on the engine, so that when
        every part of the run waits, the invocation is suspended instead of hanging."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        try:
            await self.in_memory(fut)
        finally:
            self._waiters.discard(fut)
            if fut.done() and not fut.cancelled():  # woken by `_wake`, which counted it
                self._unseen_wakes -= 1
                self._wake_taken.set()

    async def in_memory(self, aw: Awaitable[T]) -> T:
        """Await what only another part of this run can complete (a wait_condition's wakeup, a
        task, an asyncio.Event, Queue, Lock ...), counting as waiting on the engine meanwhile:
        if every part of the run waits so, nothing can move until a signal or timer does, and
        the invocation is suspended instead of hanging."""
        if self.ex.cancel_requested and not self.ex.cancel_raised:  # no operation will say so
            self._raise_cancelled()
        inner = asyncio.ensure_future(aw)
        if self.query_mode:  # a read-only replay: only the pump can still change state
            return await inner
        engine = asyncio.ensure_future(self.ex.wait_for_engine())
        try:
            await asyncio.wait([inner, engine], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in (inner, engine):
                if not waiting.done():
                    waiting.cancel()
                    await asyncio.wait([waiting])
                if not waiting.cancelled():
                    waiting.exception()  # seen here, even when this wait is itself abandoned
        if not engine.cancelled():
            engine.result()  # Suspend: everything waits; this invocation ends here
        return inner.result()

    def _raise_cancelled(self) -> NoReturn:
        """The run's cancellation, raised where workflow code awaits: asyncio.CancelledError
        in the run method's own flow, Durable's Cancelled inside branches (it must cross
        Durable's gather to reach the run method)."""
        self.ex.cancel_raised = True
        if _scope() is self.ex.root:
            raise _WorkflowCancelled
        raise Cancelled

    async def park(self) -> None:
        """A read-only replay reached what the run has not done yet: stay here."""
        await asyncio.get_running_loop().create_future()

    async def durable(self, aw: Awaitable[T]) -> T:
        """Await one durable operation of workflow code, as Temporal code expects it: the run's
        cancellation arrives as asyncio.CancelledError, and signal effects are observed after."""
        if self._unawaited.get(_scope().parent_id):
            if inspect.iscoroutine(aw):
                aw.close()
            raise UnsupportedFeature(
                "letting an activity started with start_activity() run while the workflow "
                "goes on to other durable work",
                "await the handle (or asyncio.gather the handles) before the next await")
        try:
            result = await aw
        except Cancelled:
            self._raise_cancelled()
        except Suspend:
            if self.query_mode:
                await self.park()
            raise
        except Exception:
            await self.sync()
            raise
        await self.sync()
        return result

    # -- asyncio -----------------------------------------------------------------------------
    async def sleep(self, delay: timedelta | float, result: T | None = None) -> T | None:
        seconds = _seconds(delay) or 0.0
        if seconds <= 0:  # a bare yield, no timer: as in Temporal
            await asyncio.sleep(0)
            return result
        await self.durable(self.ctx.sleep(seconds))
        return result

    async def gather(self, *aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
        if aws and all(isinstance(aw, WorkflowTask) for aw in aws):  # each has its own scope
            return await self.in_memory(asyncio.gather(*aws, return_exceptions=return_exceptions))
        branches = [self._take(aw) for aw in aws]
        if return_exceptions:
            branches = [_capture(b) for b in branches]
        results = await self.durable(self.ctx.gather(*branches))
        return [r.error if isinstance(r, _Raised) else r for r in results]

    async def wait_for(self, aw: Awaitable[T], timeout: float | None) -> T:
        if timeout is None:
            return await aw
        inner = self._take(aw)
        try:
            outcome = await self._race(_capture(inner), timeout)
        finally:
            _close_unstarted(inner)
        if outcome is _TIMED_OUT:
            raise TimeoutError
        if isinstance(outcome, _Raised):
            raise outcome.error
        return outcome  # type: ignore[no-any-return]

    async def _race(self, branch: Awaitable[Any], timeout: float) -> Any:
        """Run `branch` against a durable timer; the first to finish decides (recorded, so a
        replay decides the same)."""
        async def timer() -> object:
            await self.ctx.sleep(timeout)
            return _TIMED_OUT
        clock = timer()
        try:
            batch = await self.durable(self.ctx.gather(branch, clock,
                                                       completion=Completion(min_successful=1)))
        finally:
            _close_unstarted(branch)
            _close_unstarted(clock)
        return next(item.result for item in batch.items if item.status == "SUCCEEDED")

    async def wait(self, fs: Iterable[asyncio.Future[Any]], timeout: float | None,
                   return_when: str) -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
        """asyncio.wait over tasks of workflow code; the timeout a durable timer."""
        futures = set(fs)

        async def waiting() -> tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]:
            return await self.in_memory(asyncio.wait(futures, return_when=return_when))
        if timeout is None:
            return await waiting()
        outcome = await self._race(waiting(), timeout)
        if outcome is _TIMED_OUT:
            return {f for f in futures if f.done()}, {f for f in futures if not f.done()}
        return outcome  # type: ignore[no-any-return]

    # -- tasks of workflow code --------------------------------------------------------------
    def create_task(self, coro: Coroutine[Any, Any, T], name: str | None) -> WorkflowTask[T]:
        """asyncio.create_task in workflow code: the task runs in a scope of its own, placed in
        the creating scope's sequence, so its durable calls get the same ids on every replay."""
        scope = _scope()
        if self.query_mode:
            op_id = scope.next_id()[0]
        else:
            op_id = self.ex.begin(scope, OperationType.CONTEXT, TASK_SCOPE,
                                  SubType.PARALLEL_BRANCH, interruptible=False)[0]
        return self.spawn(coro, op_id, scope.parent_id, TASK_SCOPE, name=name)

    def spawn(self, coro: Coroutine[Any, Any, T], op_id: str, parent_id: str | None,
              scope_name: str, *, name: str | None = None, fails_run: bool = False
              ) -> WorkflowTask[T]:
        """Run `coro` as a live part of this run in scope `op_id`. With `fails_run` (a signal
        handler: nobody awaits it) an exception fails the workflow task, as in Temporal."""
        ex = self.ex
        if not self.query_mode and op_id not in ex.ops:
            ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, OperationAction.START,
                                      name=scope_name, parent_id=parent_id,
                                      sub_type=SubType.PARALLEL_BRANCH),
                      Operation(op_id, OperationType.CONTEXT, OperationStatus.STARTED,
                                scope_name, parent_id, SubType.PARALLEL_BRANCH))
        context = contextvars.copy_context()
        context.run(CURRENT_SCOPE.set, Scope(ex, op_id))
        ex.live_changed(1)
        task = WorkflowTask(self, coro, name=name, context=context)
        task.is_handler = fails_run
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_ended(t, fails_run))
        return task

    def all_handlers_finished(self) -> bool:
        """No async signal handler and no update handler is still running."""
        updates_running = self.pump is not None and bool(self.pump.updates.running)
        return not updates_running and not any(task.is_handler for task in self._tasks)

    def _task_ended(self, task: WorkflowTask[Any], fails_run: bool) -> None:
        self._tasks.discard(task)
        self.ex.live_changed(-1)
        if not task.cancelled():
            error = task.exception()  # retrieved here: an unawaited task's error is not lost
            if isinstance(error, NonDeterminismError) or (
                    fails_run and isinstance(error, Exception)
                    and not isinstance(error, Cancelled)):
                self.failure = self.failure or error
        self._wake()

    async def stop_tasks(self) -> None:
        """The run ended (or unwinds): what its tasks and handlers still do ends with it, as
        Temporal drops a finished workflow's unfinished handlers."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def handle_signal(self, delivery: Delivery) -> None:
        """Deliver one signal to its handler; an async one runs on as a task of its own."""
        outcome = self.handlers.call_signal(delivery)
        if inspect.iscoroutine(outcome):
            assert self.pump is not None and self.pump.scope is not None
            pump_id = self.pump.scope.parent_id
            op_id = operation_id(f"{pump_id}-{HANDLER_SCOPE}", delivery.index + 1)
            self.spawn(outcome, op_id, pump_id, HANDLER_SCOPE, fails_run=True)

    def set_signal_handler(self, name: str | None, handler: Callable[..., Any] | None) -> None:
        for delivery in self.handlers.set_signal(name, handler):
            self.handle_signal(delivery)
        self._wake()

    # -- workflow API ------------------------------------------------------------------------
    async def wait_condition(self, fn: Callable[[], bool], timeout: float | None) -> None:
        if timeout is None:
            await self._until(fn)
        elif await self._race(self._until(fn), timeout) is _TIMED_OUT:
            raise TimeoutError

    async def _until(self, fn: Callable[[], bool]) -> None:
        while True:
            await self.sync(changed=False)
            if fn():
                return
            upcoming = self._upcoming(_scope())
            if upcoming is not None and _is_watermark(upcoming):
                continue  # replaying: the history says what was applied next
            if self.pump is not None and self.pump.held_back():
                continue  # taken while the replay held it back: the next sync applies it
            await self._block()

    async def execute_activity(self, activity: Any, args: Sequence[Any], *, local: bool,
                               start_to_close: float | None, schedule_to_close: float | None,
                               retry_policy: RetryPolicy | None, result_type: Any,
                               heartbeat_timeout: float | None = None,
                               cancellation_type: int = TRY_CANCEL) -> Any:
        from durable.temporal import activity as activity_api

        if not isinstance(activity, str) and not callable(activity):
            raise UsageError(f"{activity!r} is not an activity function")
        fn = activity_api.implementation(activity)
        name = activity_api.name_of(fn)
        limits = [t for t in (start_to_close, schedule_to_close) if t is not None]
        if not limits:
            raise ValueError(f"activity {name!r} needs start_to_close_timeout or "
                             "schedule_to_close_timeout")
        deadline = None
        if schedule_to_close is not None:  # when it was scheduled: recorded, so replays agree
            deadline = self.ctx.now().timestamp() + schedule_to_close
        policy = (retry_policy or DEFAULT_ACTIVITY_RETRY).to_durable(deadline)
        body = activity_body(fn, self.defn.durable.serializer,
                             heartbeat_timeout=heartbeat_timeout,
                             cancellation_type=cancellation_type,
                             cancel=_HANDLE_CANCEL.get() or CancelRequest())
        scope = _scope()
        activity_id = operation_id(scope.parent_id, scope.counter + 1)  # the step's, below
        token = CURRENT_CALL.set(CallInfo(
            name, self.defn.name, local,
            None if heartbeat_timeout is None else timedelta(seconds=heartbeat_timeout)))
        try:
            value = await self.durable(self.ctx.step(body, *args, name=name, retry=policy,
                                                     timeout=min(limits)))
            if value == COMPLETED_ASYNC:
                value = await self._completion(activity_id, min(limits), heartbeat_timeout)
        except (StepFailed, CallbackFailed) as e:
            cause = cause_of(e.error)
            raise ActivityError("Activity task failed", activity_type=name,
                                activity_id=activity_id, cause=cause) from cause
        except WaitTimeout as e:  # also CallbackHeartbeatTimeout
            raise ActivityError("Activity task timed out", activity_type=name,
                                activity_id=activity_id, retry_state="TIMEOUT",
                                cause=ActivityTimeoutError(str(e))) from e
        finally:
            CURRENT_CALL.reset(token)
        return _convert(self.defn, value, result_type or return_type(fn))

    async def _completion(self, activity_id: str, timeout: float,
                          heartbeat_timeout: float | None) -> Any:
        """The result of an activity that raised raise_complete_async(): a callback that
        whoever holds its task token resolves (see `_async_completion`)."""
        callback = await self.durable(self.ctx.create_callback(
            name=callback_name(activity_id), timeout=timeout,
            heartbeat_timeout=heartbeat_timeout))
        return await self.durable(callback.result())

    def start_activity(self, call: Callable[[], Coroutine[Any, Any, Any]]) -> ActivityHandle:
        handle = ActivityHandle(self, call, _scope().parent_id)
        self._unawaited.setdefault(handle.scope_key, []).append(handle)
        return handle

    def _take(self, aw: Awaitable[T]) -> Awaitable[T]:
        """A start_activity handle handed to gather or wait_for runs in that branch."""
        if isinstance(aw, ActivityHandle):
            return aw.claim()
        return aw

    async def resolve(self, handle: ActivityHandle) -> Any:
        """Awaiting a handle runs every handle of its scope not yet awaited, concurrently: what
        Temporal did from their start, since nothing durable happened in between."""
        if not handle.done:
            pending = self._unawaited.pop(handle.scope_key, [])
            calls = [h.claim() for h in pending]
            if len(calls) == 1:
                await _capture(calls[0])
            elif calls:
                await self.durable(self.ctx.gather(*(_capture(c) for c in calls)))
        return handle.outcome()

    async def execute_child(self, workflow: Any, args: Sequence[Any], id: str | None) -> Any:
        from durable.temporal._definition import definition_of

        child = definition_of(workflow)
        try:
            return await self.durable(self.ctx.invoke(child.durable, *args, id=id))
        except ChildFailed as e:
            cause = cause_of(e.error)
            raise ChildWorkflowError("Child Workflow execution failed", workflow_type=child.name,
                                     workflow_id=e.run_id or id or "", cause=cause) from cause

    async def start_child(self, workflow: Any, args: Sequence[Any], id: str | None) -> str:
        from durable.temporal._definition import definition_of

        child = definition_of(workflow)
        return await self.durable(self.ctx.start_child(child.durable, *args, id=id))

    def now(self) -> datetime:
        return self.ctx.now()


    def random(self) -> _random.Random:
        """One generator per run, seeded from a recorded value: deterministic on replay."""
        if self._rng is None:
            self._rng = _random.Random(self.ctx.random())
        return self._rng

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.random().getrandbits(128), version=4)

    # -- queries -----------------------------------------------------------------------------
    def answer_query(self, name: str, args: Sequence[Any]) -> Any:
        if self.pump is not None:
            self.pump.allowed = None
            self.pump.apply_ready()
        token = _RUNTIME.set(self)
        try:
            return self.handlers.answer(name, args)
        finally:
            _RUNTIME.reset(token)


class WorkflowTask(asyncio.Task[T]):
    """What asyncio.create_task returns in workflow code: a real asyncio.Task, whose awaiting
    counts as waiting on the engine (`Runtime.in_memory`)."""

    def __init__(self, rt: Runtime, coro: Coroutine[Any, Any, T], *, name: str | None,
                 context: contextvars.Context) -> None:
        super().__init__(coro, name=name, context=context)
        self._rt = rt
        self.is_handler = False  # a signal handler's, which workflow.all_handlers_finished counts

    def __await__(self) -> Any:
        if self.done() or active() is not self._rt:  # nothing to wait for, or not workflow code
            return super().__await__()
        return self._rt.in_memory(self._result()).__await__()

    async def _result(self) -> T:
        """The task's outcome once it ends; abandoning this wait leaves the task running."""
        await asyncio.wait([self])
        return self.result()


class ActivityHandle:
    """What `workflow.start_activity` returns: awaitable for the activity's result."""

    def __init__(self, rt: Runtime, call: Callable[[], Coroutine[Any, Any, Any]],
                 scope_key: str | None) -> None:
        self._rt = rt
        self._call = call
        self.scope_key = scope_key
        self.done = False
        self._outcome: Any = None
        self._cancel = CancelRequest()

    async def _run(self) -> Any:
        token = _HANDLE_CANCEL.set(self._cancel)  # the call below reads it once, at its start
        try:
            self._outcome = await self._call()
        except Exception as e:
            self._outcome = _Raised(e)
        finally:
            _HANDLE_CANCEL.reset(token)
        self.done = True
        return self.outcome()

    def claim(self) -> Coroutine[Any, Any, Any]:
        """Take the handle out of its scope's pending list; the coroutine runs the activity."""
        pending = self._rt._unawaited.get(self.scope_key, [])
        if self in pending:
            pending.remove(self)
        return self._run()

    def outcome(self) -> Any:
        if isinstance(self._outcome, _Raised):
            raise self._outcome.error
        return self._outcome

    def __await__(self) -> Any:
        return self._rt.resolve(self).__await__()

    def cancel(self, msg: Any = None) -> bool:
        """Ask the activity to stop, as its `cancellation_type` says; awaiting the handle then
        raises ActivityError caused by CancelledError, unless the activity ended otherwise
        first. False if it has ended already."""
        if self.done:
            return False
        self._cancel.request()
        return True


class _Pump:
    """Takes the run's signals in order with durable waits, and applies them to the instance as
    far as `allowed` (None: all) lets it; see the module docstring."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.received: list[tuple[Delivery, str | None]] = []
        """Each message taken, in order, with its update id (None: a signal)."""
        self.applied = 0
        self.allowed: int | None = 0
        self.caught_up = asyncio.Event()
        self._progress = asyncio.Event()
        self.scope: Scope | None = None
        self._task: asyncio.Task[None] | None = None
        self.updates = _Updates(self)

    def start(self) -> None:
        ex = self.rt.ex
        if self.rt.query_mode:  # never final, so a read-only replay would stop at it
            op_id = ex.root.next_id()[0]
        else:
            op_id, op = ex.begin(ex.root, OperationType.CONTEXT, PUMP_SCOPE,
                                 SubType.PARALLEL_BRANCH, interruptible=False)
            if op is None:
                ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, OperationAction.START,
                                          name=PUMP_SCOPE, sub_type=SubType.PARALLEL_BRANCH),
                          Operation(op_id, OperationType.CONTEXT, OperationStatus.STARTED,
                                    PUMP_SCOPE, None, SubType.PARALLEL_BRANCH))
        self.scope = Scope(ex, op_id)
        ex.live_changed(1)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        await self.updates.stop()

    async def _run(self) -> None:
        assert self.scope is not None
        ex = self.rt.ex
        CURRENT_SCOPE.set(self.scope)  # this task's own copy of the context
        try:
            while True:
                with self.scope.exclusive("signal wait"):
                    op_id = await _callback._start(ex, self.scope, SubType.SIGNAL, CHANNEL, None)
                    if ex.ops[op_id].status is OperationStatus.STARTED:
                        self.caught_up.set()
                    payload = await _callback._outcome(ex, op_id, "signal", Any)
                self.caught_up.clear()
                self.receive(payload)
        except Cancelled:  # the run's cancellation belongs to the workflow code, not the pump
            ex.cancel_raised = False
        except Suspend:
            if self.rt.query_mode:  # as if the run took the signals waiting for it now
                for payload in self.rt.undelivered:
                    self.receive(None if payload is None else ex.serializer.decode(payload))
                self.caught_up.set()
                await self.rt.park()
            raise
        finally:
            ex.live_changed(-1)

    def receive(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(
                data.get("update_id", ""), str):
            raise UsageError(f"a signal on {CHANNEL!r} must carry {{'name': ..., 'args': [...]}}"
                             f" (and 'update_id' for an update), got {data!r}")
        delivery = Delivery(len(self.received), data["name"], list(data.get("args") or []))
        self.received.append((delivery, data.get("update_id")))
        self._progress.set()
        self.apply_ready()

    def apply_ready(self) -> None:
        limit = len(self.received) if self.allowed is None else min(self.allowed,
                                                                     len(self.received))
        before = self.applied
        while self.applied < limit and self.rt.failure is None:
            delivery, update_id = self.received[self.applied]
            self.applied += 1
            if update_id is not None:
                self.updates.admit(delivery, update_id)
                continue
            try:
                self.rt.handle_signal(delivery)
            except Exception as e:
                self.rt.failure = e
        # Set on every look, changed or not: a replayed update handler waits on it for the
        # run method's syncs (`until_run_method_replayed`).
        self._progress.set()
        if self.applied != before:
            self.rt._wake()

    async def apply_through(self, count: int, *, lift: bool = True) -> None:
        if lift and self.allowed is not None:
            self.allowed = max(self.allowed, count)
        self.apply_ready()
        while self.applied < count and self.rt.failure is None:
            self._progress.clear()
            await self._progress.wait()
            self.apply_ready()

    async def until_run_method_replayed(self) -> None:
        """An update handler past its history while the run method still replays its own: it
        must not apply messages the run method's watermarks hold back yet. Each operation the
        run method replays is followed by one of its syncs, which sets `_progress`."""
        while self.rt.ex.replaying:
            self._progress.clear()
            await self._progress.wait()

    def held_back(self) -> bool:
        """Messages were taken that a replay's watermark kept from being applied; their arrival
        woke no one if it came before the wait that would see it."""
        return self.rt.failure is None and self.applied < len(self.received)


class _Updates:
    """The updates of one invocation: admitting each (validate, accept or reject), running the
    accepted handlers in tasks of their own, and writing their stages to the `UPDATES` stream
    (see the module docstring)."""

    def __init__(self, pump: _Pump) -> None:
        self.pump = pump
        self.rt = pump.rt
        self.accepted: set[str] = set()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.scopes: set[str] = set()
        """The ids of the update handlers' scopes."""
        self.fresh = False
        """Handlers were started that may not yet have run up to their first await."""

    def admit(self, message: Delivery, update_id: str) -> None:
        index, name, args = message.index, message.name, message.args
        if update_id in self.accepted:  # the same update sent again: it is the one accepted
            return
        rt, ex = self.rt, self.rt.ex
        assert self.pump.scope is not None and self.pump.scope.parent_id is not None
        parent = self.pump.scope.parent_id
        op_id = operation_id(f"{parent}-update", index)
        recorded = ex.ops.get(op_id)
        if recorded is None and rt.query_mode:
            return  # not admitted yet: a query does not see it
        scope = Scope(ex, op_id)
        if recorded is None:
            ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, OperationAction.START,
                                      name=UPDATE_SCOPE, parent_id=parent,
                                      sub_type=SubType.PARALLEL_BRANCH),
                      Operation(op_id, OperationType.CONTEXT, OperationStatus.STARTED,
                                UPDATE_SCOPE, parent, SubType.PARALLEL_BRANCH))
        handler = rt.defn.updates.get(name)
        decision = self._stage(scope, update_id,
                               lambda: self._validate(update_id, name, handler, args))
        if decision["stage"] == "rejected":
            self._finish(op_id, parent, recorded, ErrorObject.from_dict(decision["error"]))
            return
        if handler is None:  # accepted by code that had the handler: as a failed workflow task
            rt.failure = rt.failure or UsageError(
                f"update {name!r} ({update_id}) of run {rt.ctx.run_id!r} was accepted, but "
                f"workflow {rt.defn.name!r} has no such update handler now; restore it while "
                "runs that accepted it are in flight")
            return
        self.accepted.add(update_id)
        self.scopes.add(op_id)
        ex.live_changed(1)
        self.fresh = True
        task = asyncio.ensure_future(
            self._handle(op_id, parent, recorded, scope, update_id, name, handler.fn, args))
        task.add_done_callback(_retrieve)
        self.running[update_id] = task

    def _validate(self, update_id: str, name: str, handler: UpdateHandler | None,
                  args: list[Any]) -> dict[str, Any]:
        rt = self.rt
        if handler is None:  # Temporal rejects an update no handler is registered for
            known = ", ".join(rt.defn.updates) or "none"
            error = ApplicationError(f"update handler for {name!r} expected but not found "
                                     f"(known updates: {known})", type="UpdateNotFound")
            return {"stage": "rejected", "error": ErrorObject.from_exception(error).to_dict()}
        if handler.validator is not None:
            token = _RUNTIME.set(rt)
            update = CURRENT_UPDATE.set((update_id, name))
            try:
                validator = handler.validator.__get__(rt.instance)
                validator(*typed_args(rt.defn, validator, args))
            except Exception as e:
                return {"stage": "rejected", "error": ErrorObject.from_exception(e).to_dict()}
            finally:
                CURRENT_UPDATE.reset(update)
                _RUNTIME.reset(token)
        return {"stage": "accepted"}

    def _stage(self, scope: Scope, update_id: str,
               produce: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Write the update's next stage to `UPDATES`, recorded: a replay gets what was
        written and writes nothing. Buffered like any recorded value, so the decision is
        durable before the body of the handler's first activity runs (and the pump's next
        signal wait checkpoints it at once): a crash can never let an activity run for an
        update that a replay's validator might then reject."""
        stage: dict[str, Any] = _values.record(
            self.rt.ex, scope, SubType.STREAM_WRITE, UPDATES,
            lambda: {"id": update_id, **produce()}, serializer=DEFAULT_SERIALIZER)
        return stage

    async def _handle(self, op_id: str, parent: str, recorded: Operation | None, scope: Scope,
                      update_id: str, name: str, fn: Callable[..., Any],
                      args: list[Any]) -> None:
        rt, ex = self.rt, self.rt.ex
        CURRENT_SCOPE.set(scope)  # this task's own copy of the context
        _RUNTIME.set(rt)
        CURRENT_UPDATE.set((update_id, name))
        try:
            outcome: dict[str, Any]
            try:
                bound = fn.__get__(rt.instance)
                value = bound(*typed_args(rt.defn, bound, args))
                if inspect.isawaitable(value):
                    value = await value
            except Cancelled:  # the run's cancellation: the update fails, the run learns it too
                ex.cancel_raised = False
                outcome = {"stage": "failure", "error": ErrorObject.from_exception(
                    CancelledError("the workflow was cancelled")).to_dict()}
            except Exception as e:
                if not isinstance(e, (FailureError, *rt.defn.failure_types)):
                    rt.failure = rt.failure or e  # fails the workflow task, as a signal's
                    outcome = {}
                else:
                    outcome = {"stage": "failure",
                               "error": ErrorObject.from_exception(e).to_dict()}
            else:
                payload = rt.defn.durable.serializer.encode(value)
                outcome = {"stage": "result", "value": payload}
            if outcome:
                self._stage(scope, update_id, lambda: outcome)
                error = ErrorObject.from_dict(outcome["error"]) if "error" in outcome else None
                self._finish(op_id, parent, recorded, error)
                if not rt.query_mode:  # the caller waits on it: not with whatever comes next
                    await ex.flush()
            self.running.pop(update_id, None)
            # Leaving the live count while a wait_condition, just woken, has not yet looked
            # could suspend the invocation with nothing left to wake it: it looks first.
            rt._wake()
            await rt.wakes_taken()
        finally:
            self.running.pop(update_id, None)
            ex.live_changed(-1)

    def _finish(self, op_id: str, parent: str, recorded: Operation | None,
                error: ErrorObject | None) -> None:
        if recorded is not None and recorded.status.is_final:
            return
        action, status = ((OperationAction.SUCCEED, OperationStatus.SUCCEEDED) if error is None
                          else (OperationAction.FAIL, OperationStatus.FAILED))
        self.rt.ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, action,
                                          name=UPDATE_SCOPE, parent_id=parent,
                                          sub_type=SubType.PARALLEL_BRANCH, error=error),
                          Operation(op_id, OperationType.CONTEXT, status, UPDATE_SCOPE, parent,
                                    SubType.PARALLEL_BRANCH, error=error))

    async def let_started_run(self) -> None:
        """Let handlers just started run up to their first await (one turn of the loop: their
        tasks were scheduled before this one resumes)."""
        if self.fresh:
            self.fresh = False
            await asyncio.sleep(0)

    def warn_unfinished(self) -> None:
        """Temporal's warning for a workflow that returns while update handlers still run:
        their callers get WorkflowUpdateFailedError."""
        if self.running and not self.rt.ctx.is_replaying and not self.rt.query_mode:
            self.rt.ctx.logger.warning(
                "workflow %r (run %r) finished while update handlers are still running "
                "(update ids: %s); their callers get WorkflowUpdateFailedError. To wait for "
                "them, `await workflow.wait_condition(workflow.all_handlers_finished)` before "
                "returning", self.rt.defn.name, self.rt.ctx.run_id, ", ".join(self.running))

    async def stop(self) -> None:
        tasks = list(self.running.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Take a background task's outcome so asyncio does not report it as never retrieved: a
    Suspend or fencing ends the invocation, which the run's other tasks report."""
    if not task.cancelled():
        task.exception()


def _is_watermark(op: Operation) -> bool:
    return op.type is OperationType.STEP and op.sub_type == SubType.STEP and op.name == WATERMARK


def _convert(defn: Definition, value: Any, result_type: Any) -> Any:
    if result_type is None or result_type is Any:
        return value
    serializer = defn.durable.serializer
    return serializer.decode(serializer.encode(value), result_type)


# -- read-only replay for queries ----------------------------------------------------------------

async def evaluate_query(defn: Definition, invocation: Invocation,
                         buffered: Sequence[str | None], name: str, args: Sequence[Any]) -> Any:
    """Replay the run read-only to where it stands, apply the signals waiting for it, and ask
    the query handler. Run on a loop of its own: `_quiesce` watches that loop go idle."""
    async def refuse(updates: list[OperationUpdate]) -> CheckpointResult:
        return CheckpointResult([], False)

    ex = Executor(invocation, refuse, defn.durable.serializer, replay_only=True)
    runtimes: list[Runtime] = []

    async def replay() -> None:
        token = CURRENT_SCOPE.set(ex.root)
        try:
            ctx = Context(ex)
            rt = Runtime(defn, ctx, query_mode=True, undelivered=buffered)

            async def execute(args: Sequence[Any]) -> Any:
                runtimes.append(rt)  # the workflow exists: a cron run's waits are behind it
                return await rt.execute(args)
            await run_input(ctx, defn, defn.durable.decode_input(invocation.input), execute)
        finally:
            CURRENT_SCOPE.reset(token)

    task = asyncio.ensure_future(replay())
    try:
        await _quiesce(task)
        if not runtimes:
            if task.done() and not isinstance(task.exception(), Suspend):
                task.result()  # it failed before the workflow existed: say why
            raise UsageError(f"run {invocation.run_id!r} has no workflow to query yet: a cron "
                             "workflow waiting for its next tick; query it once the firing "
                             "began")
        return runtimes[0].answer_query(name, args)
    finally:
        pump = runtimes[0].pump if runtimes else None
        if pump is not None:
            await pump.stop()
        task.cancel()
        await asyncio.wait([task])


async def _quiesce(task: asyncio.Future[Any], calm_rounds: int = 3) -> None:
    """Return once `task` is done, or nothing on this loop can run any more (everything waits
    on what the read-only replay will never provide)."""
    loop = asyncio.get_running_loop()
    ready = getattr(loop, "_ready", None)  # CPython's run queue; without it, count rounds
    calm = 0
    while not task.done() and calm < (calm_rounds if ready is not None else 1000):
        await asyncio.sleep(0)
        calm = calm + 1 if ready is None or not ready else 0

