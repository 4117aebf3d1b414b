"""`Context`: the public face of a running workflow. Everything here is a thin call into one
operation module; the machinery lives in `executor`."""

from __future__ import annotations

import functools
import inspect
import logging
import random as _random
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, TypeVarTuple, overload

from durable.errors import UsageError
from durable.model import SubType
from durable.model import attributes as _attributes
from durable.model.events import WebhookResponse
from durable.sdk import callback as _callback
from durable.sdk import child as _child
from durable.sdk import condition as _condition
from durable.sdk import events as _events
from durable.sdk import kv as _kv
from durable.sdk import parallel as _parallel
from durable.sdk import step as _step
from durable.sdk import stream as _stream
from durable.sdk import values as _values
from durable.sdk import wait as _wait
from durable.sdk.callback import Callback
from durable.sdk.condition import ConditionConfig, WaitStrategyFn
from durable.sdk.events import Subscription
from durable.sdk.executor import (
    CURRENT_SCOPE,
    CURRENT_STEP,
    WALL_CLOCK,
    ContinueAsNew,
    Executor,
    Scope,
)
from durable.sdk.parallel import BatchResult, Completion
from durable.sdk.retry import RetryPolicy
from durable.sdk.serializer import Serializer
from durable.sdk.step import Semantics, StepConfig

if TYPE_CHECKING:
    from durable.sdk.workflow import Workflow

R = TypeVar("R")
T = TypeVar("T")
S = TypeVar("S")
Ts = TypeVarTuple("Ts")
# One per position of a gather's or an invoke's arguments, for the overloads that type each.
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
F = TypeVar("F")


async def _identity(aw: Awaitable[R]) -> R:
    return await aw


class _AttributesCodec:
    """Writes a SetAttributes operation's payload in the one format the engine reads, whatever
    serializer the workflow has."""

    def encode(self, value: Any) -> str:
        return _attributes.encode(value)

    def decode(self, data: str, type_hint: Any = Any) -> Any:
        return _attributes.decode(data)


_ATTRIBUTES = _AttributesCodec()


class _ReplayAwareLogger(logging.LoggerAdapter[logging.Logger]):
    """Drops records while the workflow replays what it already did, so logs read like one
    straight execution however many invocations it took. Lines at INFO and above are also kept
    with the run (`Executor.keep_log`), whatever the logging configuration lets through here.
    Records carry the run's structured fields (`run_id`, `workflow`, and within a step body
    `operation` and `attempt`) for formatters that show them."""

    def __init__(self, logger: logging.Logger, ex: Executor) -> None:
        super().__init__(logger, {"run_id": ex.run_id, "workflow": ex.workflow})
        self._ex = ex

    def isEnabledFor(self, level: int) -> bool:
        return not self._ex.replaying and self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if isinstance(level, int):  # else logging raises its own TypeError below
            self._ex.keep_log(level, functools.partial(_render, level, msg, args,
                                                       kwargs.get("exc_info")))
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        fields = dict(self.extra or {})
        step = CURRENT_STEP.get()
        if step is not None and step.run_id == self._ex.run_id:
            fields.update(operation=step.operation_id, attempt=step.attempt)
        kwargs["extra"] = {**fields, **kwargs.get("extra", {})}
        return f"[{self._ex.run_id}] {msg}", kwargs


_TRACEBACKS = logging.Formatter()


def _render(level: int, msg: object, args: tuple[object, ...], exc_info: Any) -> str:
    """The line as logging would print its message: `msg % args`, then any traceback."""
    if exc_info is True:
        exc_info = sys.exc_info()
    elif isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    record = logging.LogRecord("", level, "", 0, msg, args, exc_info or None)
    text = record.getMessage()
    if record.exc_info and record.exc_info[0] is not None:
        text += "\n" + _TRACEBACKS.formatException(record.exc_info)
    return text


class Context:
    """Passed as the first argument of every workflow. Every `await` on it is durable."""

    def __init__(self, executor: Executor) -> None:
        self._ex = executor
        self.logger: logging.LoggerAdapter[logging.Logger] = _ReplayAwareLogger(
            logging.getLogger(f"durable.workflow.{executor.workflow}"), executor)

    @property
    def run_id(self) -> str:
        return self._ex.run_id

    @functools.cached_property
    def kv(self) -> _kv.WorkflowKv:
        """The key-value store shared by all runs: `await ctx.kv.get(key)`, `set`, `delete`,
        `mutate`, `check_and_set`, `add`, `keys`. Every call is recorded (sdk/kv.py)."""
        return _kv.WorkflowKv(self._ex, self._scope)

    @property
    def workflow_name(self) -> str:
        return self._ex.workflow

    @property
    def is_replaying(self) -> bool:
        return self._ex.replaying

    def _scope(self) -> Scope:
        scope = CURRENT_SCOPE.get(None)
        return scope if scope is not None and scope.executor is self._ex else self._ex.root

    # -- steps -------------------------------------------------------------------------------
    # A TypeVarTuple, not a ParamSpec, checks `args`: a ParamSpec's *args forbids the keyword
    # options after them. The async overload comes first so its result is the awaited one.
    @overload
    async def step(self, fn: Callable[[*Ts], Awaitable[R]], *args: *Ts,
                   name: str | None = None, retry: RetryPolicy | None = None,
                   semantics: Semantics = "at_least_once", timeout: float | None = None,
                   serializer: Serializer | None = None, record_input: bool | None = None
                   ) -> R: ...

    @overload
    async def step(self, fn: Callable[[*Ts], R], *args: *Ts, name: str | None = None,
                   retry: RetryPolicy | None = None, semantics: Semantics = "at_least_once",
                   timeout: float | None = None, serializer: Serializer | None = None,
                   record_input: bool | None = None) -> R: ...

    async def step(self, fn: Callable[[*Ts], Any], *args: *Ts, name: str | None = None,
                   retry: RetryPolicy | None = None, semantics: Semantics = "at_least_once",
                   timeout: float | None = None, serializer: Serializer | None = None,
                   record_input: bool | None = None) -> Any:
        """Run `fn(*args)` as a checkpointed step: once it succeeded, it never runs again.

        at_least_once (default): a crash during the body runs the body again.
        at_most_once: the start is checkpointed first; a body found interrupted raises
        `StepInterrupted` into the retry policy instead of running again unasked.
        `record_input=False`: `args` are not recorded (sensitive data); None: as the workflow
        says (`@workflow(record_inputs=...)`, on by default).
        """
        cfg = StepConfig(name, retry, semantics, timeout, serializer, record_input)
        body: Callable[..., Any] = fn
        if isinstance(fn, _step.StepFunction):  # options given here win over the decorator's
            cfg, body = fn.cfg.merged(cfg), fn.fn
        return await _step.run_step(self._ex, self._scope(), body, args, {}, cfg)

    @property
    def idempotency_key(self) -> str:
        """Stable across retries and replays of the current step: hand it to payment APIs."""
        current = CURRENT_STEP.get()
        if current is None:
            raise UsageError("ctx.idempotency_key is only defined inside a running step")
        return f"{current.run_id}:{current.operation_id}"

    # -- waiting -----------------------------------------------------------------------------
    async def sleep(self, duration: timedelta | float, *, name: str | None = None) -> None:
        """Durable timer: the process may exit meanwhile; it ends at its original due time."""
        await _wait.sleep(self._ex, self._scope(), duration, name)

    async def create_callback(self, *, name: str | None = None,
                              timeout: timedelta | float | None = None,
                              heartbeat_timeout: timedelta | float | None = None) -> Callback:
        """Issue a callback id to hand to someone else; `await cb.result()` waits for it.

        `heartbeat_timeout`: the holder must send a heartbeat (`Client.heartbeat_callback`,
        `durable callback heartbeat`, AWS's SendDurableExecutionCallbackHeartbeat) at least
        this often, or the wait raises `CallbackHeartbeatTimeout`: a worker that died is
        noticed then, not only at `timeout`."""
        return await _callback.create_callback(self._ex, self._scope(), name, timeout,
                                               heartbeat_timeout)

    @overload
    async def wait_for_callback(self, submitter: Callable[[str], object], *,
                                name: str | None = None,
                                timeout: timedelta | float | None = None,
                                heartbeat_timeout: timedelta | float | None = None,
                                type_hint: type[T]) -> T: ...

    @overload
    async def wait_for_callback(self, submitter: Callable[[str], object], *,
                                name: str | None = None,
                                timeout: timedelta | float | None = None,
                                heartbeat_timeout: timedelta | float | None = None,
                                type_hint: Any = Any) -> Any: ...

    async def wait_for_callback(self, submitter: Callable[[str], object], *,
                                name: str | None = None,
                                timeout: timedelta | float | None = None,
                                heartbeat_timeout: timedelta | float | None = None,
                                type_hint: Any = Any) -> Any:
        """Create a callback, pass its id to `submitter` in a step, and wait for the result,
        decoded as `type_hint` (a class: the result is typed as its instance; else JSON)."""
        cb = await self.create_callback(name=name, timeout=timeout,
                                        heartbeat_timeout=heartbeat_timeout)
        await self.step(submitter, cb.id, name=f"{name or 'callback'}:submit")
        return await cb.result(type_hint)

    @overload
    async def wait_for_signal(self, name: str, *, timeout: timedelta | float | None = None,
                              type_hint: type[T]) -> T: ...

    @overload
    async def wait_for_signal(self, name: str, *, timeout: timedelta | float | None = None,
                              type_hint: Any = Any) -> Any: ...

    async def wait_for_signal(self, name: str, *, timeout: timedelta | float | None = None,
                              type_hint: Any = Any) -> Any:
        """Wait for a named signal to this run. One sent earlier was buffered and is taken now.
        Its payload is decoded as `type_hint` (a class: typed as its instance; else JSON)."""
        return await _callback.wait_for_signal(self._ex, self._scope(), name, timeout,
                                               type_hint)

    @overload
    async def wait_for_condition(self, check: Callable[[S], Awaitable[S]], *, initial_state: S,
                                 wait_strategy: WaitStrategyFn[S], name: str | None = None,
                                 serializer: Serializer | None = None) -> S: ...

    @overload
    async def wait_for_condition(self, check: Callable[[S], S], *, initial_state: S,
                                 wait_strategy: WaitStrategyFn[S], name: str | None = None,
                                 serializer: Serializer | None = None) -> S: ...

    async def wait_for_condition(self, check: Callable[[Any], Any], *, initial_state: Any,
                                 wait_strategy: WaitStrategyFn[Any], name: str | None = None,
                                 serializer: Serializer | None = None) -> Any:
        """Poll `check(state) -> new state` (sync or async), starting from `initial_state`,
        until `wait_strategy(new_state, polls_so_far)` returns `WaitDecision.stop_polling()`;
        returns that state. `WaitDecision.continue_waiting(delay)` polls again after `delay`,
        with the run suspended meanwhile (`durable.WaitStrategy` is a ready-made backoff).
        Each poll is recorded with its state, so a replay or a crash never redoes one that
        was; a check or strategy that raises fails the operation (StepFailed)."""
        return await _condition.wait_for_condition(
            self._ex, self._scope(), check,
            ConditionConfig(wait_strategy, initial_state, name, serializer))

    # -- composition -------------------------------------------------------------------------
    # Typed as asyncio.gather is: a tuple per position for up to six awaitables, to unpack
    # (the value is a list, as asyncio's is); a list for any number of one type.
    @overload
    async def gather(self, a: Awaitable[A], /, *, name: str | None = None,
                     completion: None = None) -> tuple[A]: ...
    @overload
    async def gather(self, a: Awaitable[A], b: Awaitable[B], /, *, name: str | None = None,
                     completion: None = None) -> tuple[A, B]: ...
    @overload
    async def gather(self, a: Awaitable[A], b: Awaitable[B], c: Awaitable[C], /, *,
                     name: str | None = None, completion: None = None) -> tuple[A, B, C]: ...
    @overload
    async def gather(self, a: Awaitable[A], b: Awaitable[B], c: Awaitable[C],
                     d: Awaitable[D], /, *, name: str | None = None,
                     completion: None = None) -> tuple[A, B, C, D]: ...
    @overload
    async def gather(self, a: Awaitable[A], b: Awaitable[B], c: Awaitable[C],
                     d: Awaitable[D], e: Awaitable[E], /, *, name: str | None = None,
                     completion: None = None) -> tuple[A, B, C, D, E]: ...
    @overload
    async def gather(self, a: Awaitable[A], b: Awaitable[B], c: Awaitable[C],
                     d: Awaitable[D], e: Awaitable[E], f: Awaitable[F], /, *,
                     name: str | None = None,
                     completion: None = None) -> tuple[A, B, C, D, E, F]: ...
    @overload
    async def gather(self, *awaitables: Awaitable[T], name: str | None = None,
                     completion: None = None) -> list[T]: ...
    @overload
    async def gather(self, *awaitables: Awaitable[T], name: str | None = None,
                     completion: Completion) -> BatchResult[T]: ...

    async def gather(self, *awaitables: Awaitable[Any], name: str | None = None,
                     completion: Completion | None = None) -> Any:
        """Run each awaitable as a parallel branch in its own scope: durable operations
        (`ctx.step(...)`, `ctx.sleep(...)`) or coroutines of your own that perform several.

        Returns the results in order, raising the first failure; with `completion`, returns a
        `BatchResult` with every branch's outcome instead.
        """
        thunks = [functools.partial(_identity, aw) for aw in awaitables]
        try:
            batch = await _parallel.run_batch(
                self._ex, self._scope(), SubType.PARALLEL, SubType.PARALLEL_BRANCH, name,
                thunks, completion or Completion(), None)
        finally:
            for aw in awaitables:  # branches a completion policy or a replay never started
                if inspect.iscoroutine(aw) and inspect.getcoroutinestate(aw) == "CORO_CREATED":
                    aw.close()
        return batch if completion is not None else list(batch)

    @overload
    async def map(self, fn: Callable[[T], Awaitable[R]], items: Iterable[T], *,
                  max_concurrency: int | None = None, completion: Completion | None = None,
                  name: str | None = None, retry: RetryPolicy | None = None
                  ) -> BatchResult[R]: ...

    @overload
    async def map(self, fn: Callable[[T], R], items: Iterable[T], *,
                  max_concurrency: int | None = None, completion: Completion | None = None,
                  name: str | None = None, retry: RetryPolicy | None = None
                  ) -> BatchResult[R]: ...

    async def map(self, fn: Callable[[Any], Any], items: Iterable[Any], *,
                  max_concurrency: int | None = None, completion: Completion | None = None,
                  name: str | None = None, retry: RetryPolicy | None = None) -> BatchResult[Any]:
        """Run `fn(item)` as one step per item, in parallel, results in item order."""
        step_cfg = StepConfig(retry=retry)
        if isinstance(fn, _step.StepFunction):
            step_cfg, fn = fn.cfg.merged(step_cfg), fn.fn
        values = list(items)

        def item_thunk(item: Any) -> Callable[[], Awaitable[Any]]:
            return lambda: _step.run_step(self._ex, CURRENT_SCOPE.get(), fn, (item,), {},
                                          step_cfg)
        return await _parallel.run_batch(
            self._ex, self._scope(), SubType.MAP, SubType.MAP_ITERATION,
            name or _step.step_name(fn), [item_thunk(v) for v in values],
            completion or Completion(), max_concurrency)

    # One overload per input arity checks the inputs against the child's parameters, as
    # Client.start's do (a ParamSpec's *args would forbid the keyword options); by name, the
    # child's types are unknown here, and it takes at most its one input.
    @overload
    async def invoke(self, workflow: Workflow[[], R], /, *, id: str | None = None,
                     tenant_id: str | None = None) -> R: ...
    @overload
    async def invoke(self, workflow: Workflow[[A], R], a: A, /, *, id: str | None = None,
                     tenant_id: str | None = None) -> R: ...
    @overload
    async def invoke(self, workflow: Workflow[[A, B], R], a: A, b: B, /, *,
                     id: str | None = None, tenant_id: str | None = None) -> R: ...
    @overload
    async def invoke(self, workflow: Workflow[[A, B, C], R], a: A, b: B, c: C, /, *,
                     id: str | None = None, tenant_id: str | None = None) -> R: ...
    @overload
    async def invoke(self, workflow: str, /, *, id: str | None = None,
                     tenant_id: str | None = None) -> Any: ...
    @overload
    async def invoke(self, workflow: str, input: object, /, *, id: str | None = None,
                     tenant_id: str | None = None) -> Any: ...

    async def invoke(self, workflow: Workflow[..., Any] | str, *args: Any, id: str | None = None,
                     tenant_id: str | None = None) -> Any:
        """Run a child workflow as its own run and wait for its result (ChildFailed if not).

        By name, `ctx.invoke("charge", order)` runs whatever serves that name: a workflow
        of another deployment, or a function registered with `durable functions add` (an
        AWS durable function among them), with `order` as its input; AWS's chained invoke.
        `tenant_id` is recorded with the invoke and shown in its history (AWS's TenantId)."""
        return await _child.start(self._ex, self._scope(), workflow, args, id, wait=True,
                                  tenant_id=tenant_id)

    @overload
    async def start_child(self, workflow: Workflow[[], Any] | str, /, *,
                          id: str | None = None, tenant_id: str | None = None) -> str: ...
    @overload
    async def start_child(self, workflow: Workflow[[A], Any], a: A, /, *,
                          id: str | None = None, tenant_id: str | None = None) -> str: ...
    @overload
    async def start_child(self, workflow: Workflow[[A, B], Any], a: A, b: B, /, *,
                          id: str | None = None, tenant_id: str | None = None) -> str: ...
    @overload
    async def start_child(self, workflow: Workflow[[A, B, C], Any], a: A, b: B, c: C, /, *,
                          id: str | None = None, tenant_id: str | None = None) -> str: ...
    @overload
    async def start_child(self, workflow: str, input: object, /, *, id: str | None = None,
                          tenant_id: str | None = None) -> str: ...

    async def start_child(self, workflow: Workflow[..., Any] | str, *args: Any,
                          id: str | None = None, tenant_id: str | None = None) -> str:
        """Start a child workflow (or one by name, as `invoke` does) without waiting for it;
        returns its run id. Cancelling this run cancels it too."""
        return await _child.start(self._ex, self._scope(), workflow, args, id, wait=False,  # type: ignore[no-any-return]
                                  tenant_id=tenant_id)

    # -- events and other runs ---------------------------------------------------------------
    def subscribe(self, topic: str, *, filter: str | None = None) -> Subscription:
        """Buffer the events published on `topic` from now on that pass `filter` (CEL over
        `data`, `topic` and `id`, e.g. "data.amount > 100"), for `next_event` to take."""
        return _events.subscribe(self._ex, self._scope(), topic, filter)

    async def next_event(self, subscription: Subscription, *,
                         timeout: timedelta | float | None = None) -> dict[str, Any]:
        """The subscription's next event, oldest first (`{"topic", "id", "data", "seq",
        "published_at", "generation"}`), waiting for one if none is buffered; raises
        `WaitTimeout` after `timeout`. Recorded: a replay returns the same event."""
        return await _events.next_event(self._ex, self._scope(), subscription, timeout)

    async def signal_run(self, run_id: str, name: str, payload: Any = None) -> None:
        """Send signal `name` to another run (it takes it with `ctx.wait_for_signal`), exactly
        once however often this run replays; raises `SignalFailed` if that run does not exist
        or has ended."""
        await _events.signal_run(self._ex, self._scope(), run_id, name, payload)

    async def respond(self, status: int = 200, *, headers: dict[str, str] | None = None,
                      body: Any = None) -> None:
        """Answer the webhook request that started this run (a trigger declared with
        `respond=`): it gets this status, headers and body (a str as text, else JSON), and the
        workflow carries on. Recorded once: a replay, or the sender retrying the delivery,
        gives the same answer. Once per run; a run that never calls it answers with its
        result when it ends."""
        await _events.respond(self._ex, self._scope(),
                              WebhookResponse(status, dict(headers or {}), body))

    async def cancel_run(self, run_id: str) -> None:
        """Ask another run to stop (as `Client.cancel` does), exactly once however often this
        run replays; raises `CancelRunFailed` if that run does not exist or has ended."""
        await _events.cancel_run(self._ex, self._scope(), run_id)

    def patched(self, change_id: str) -> bool:
        """True for runs that reach this point under the new code, False for runs that passed
        it under the old: guard a change with it so runs in flight keep replaying."""
        return _values.patched(self._ex, self._scope(), change_id)

    def continue_as_new(self, *args: Any) -> NoReturn:
        """End this run's history here and start the workflow again with `args`, under the same
        run id: for unbounded loops whose history must stay bounded."""
        raise ContinueAsNew(args)

    # -- recorded values ---------------------------------------------------------------------
    def set_event(self, key: str, value: Any) -> None:
        """Publish `value` under `key`; clients read it with `Client.get_event`."""
        _values.record(self._ex, self._scope(), SubType.SET_EVENT, key, lambda: value)

    def stream(self, name: str) -> _stream.Stream:
        """The run's stream `name`: `write(value)` from workflow code (recorded once) or from
        a step body (live, marked with the attempt), `close()` from workflow code. Clients
        follow it with `Client.stream(run_id, name)`."""
        return _stream.Stream(self._ex, self._scope, name)

    def set_attributes(self, values: Mapping[str, str | float | datetime]) -> None:
        """Give this run searchable attributes (`durable ls --where`, `Client.runs`): text,
        numbers, or aware datetimes, replacing any value a key had. Recorded, so a replay does
        not set them again; where a crash comes before the next checkpoint, the invocation
        that replays sets them, once."""
        checked = _attributes.attributes(values)
        _values.record(self._ex, self._scope(), SubType.SET_ATTRIBUTES, "attributes",
                       lambda: checked, serializer=_ATTRIBUTES)

    def now(self) -> datetime:
        """The current time, recorded once and replayed after."""
        return _values.record(self._ex, self._scope(), SubType.NOW, "now",  # type: ignore[no-any-return]
                              lambda: datetime.fromtimestamp(WALL_CLOCK.get()(), UTC), datetime)

    def random(self) -> float:
        return float(_values.record(self._ex, self._scope(), SubType.RANDOM, "random",
                                    _random.random))

    def uuid4(self) -> uuid.UUID:
        return _values.record(self._ex, self._scope(), SubType.UUID, "uuid4",  # type: ignore[no-any-return]
                              uuid.uuid4, uuid.UUID)


def current_context() -> Context | None:
    """The `Context` of the workflow whose code is running here, or None outside a workflow
    and inside a step body (where durable operations cannot be started): for libraries that
    make their own calls durable without being handed `ctx`, such as agent frameworks."""
    scope = CURRENT_SCOPE.get(None)
    if scope is None or CURRENT_STEP.get() is not None:
        return None
    return Context(scope.executor)
