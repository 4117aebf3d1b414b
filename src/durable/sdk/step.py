"""STEP operations: run a function once, checkpoint its result, replay it from then on."""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from durable.errors import (
    Cancelled,
    SerializationError,
    StepFailed,
    StepInterrupted,
    StepTimeout,
)
from durable.model import (
    ErrorObject,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    code_failure,
)
from durable.sdk.executor import CURRENT_SCOPE, CURRENT_STEP, WALL_CLOCK, Executor, Scope, StepRun
from durable.sdk.heartbeat import Heartbeat
from durable.sdk.retry import DEFAULT_RETRY, RetryPolicy
from durable.sdk.serializer import Serializer

P = ParamSpec("P")
R = TypeVar("R")
Semantics = Literal["at_least_once", "at_most_once"]
S = OperationStatus
RUNNING_RECORDED_AFTER = 1.0
"""Seconds an at-least-once step body runs before its START is checkpointed, in the background:
a worker lost during a long step is then known to have been running it (and the re-run counts
as the next attempt), while the many short steps cost no round trip more."""


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's options. `record_input`: whether its input is recorded for people to see
    (`Operation.input`); None leaves it to the workflow (`@workflow(record_inputs=...)`)."""

    name: str | None = None
    retry: RetryPolicy | None = None
    semantics: Semantics = "at_least_once"
    timeout: float | None = None
    serializer: Serializer | None = None
    record_input: bool | None = None

    def merged(self, override: StepConfig) -> StepConfig:
        return StepConfig(
            override.name or self.name, override.retry or self.retry,
            override.semantics if override.semantics != "at_least_once" else self.semantics,
            override.timeout if override.timeout is not None else self.timeout,
            override.serializer or self.serializer,
            override.record_input if override.record_input is not None else self.record_input)


class StepFunction(Generic[P, R]):
    """A function that checkpoints itself when called inside a workflow (then it must be
    awaited), and is a plain call anywhere else, including inside another step.

    `R` is the step's result, an async function's awaited one. Type checkers see the call in
    a workflow, an awaitable of `R`; a sync step's plain call elsewhere returns `R` itself, at
    run time: call `fn`, the function as written, where the checker must see that."""

    def __init__(self, fn: Callable[P, R] | Callable[P, Awaitable[R]], cfg: StepConfig) -> None:
        self.fn = fn
        self.cfg = cfg
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        scope = CURRENT_SCOPE.get(None)
        if scope is None or CURRENT_STEP.get() is not None:
            return self.fn(*args, **kwargs)  # type: ignore[return-value]
        return run_step(scope.executor, scope, self.fn, args, kwargs, self.cfg)



_return_types: dict[object, Any] = {}


def return_type(fn: Callable[..., Any]) -> Any:
    """The annotated return type of `fn` (Any if none), cached per code object."""
    key = getattr(fn, "__code__", None)
    if key is not None and key in _return_types:
        return _return_types[key]
    try:
        hint = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # unresolvable forward references: decode as plain JSON
        hint = Any
    if hint is type(None):
        hint = Any
    if key is not None:
        _return_types[key] = hint
    return hint


def step_name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or type(fn).__qualname__


async def run_step(ex: Executor, scope: Scope, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any], cfg: StepConfig) -> Any:
    name = cfg.name or step_name(fn)
    serializer = cfg.serializer or ex.serializer
    with scope.exclusive(f"step {name!r}"):
        op_id, op = ex.begin(scope, OperationType.STEP, name, SubType.STEP)
        record = ex.record_inputs if cfg.record_input is None else cfg.record_input
        encoded: list[str | None] = []  # the input, encoded once: before the body can change it

        def first_input() -> str | None:
            """The input, for an update that may create the step's row; None once the row
            exists (it has the input already), or if this step's input is not recorded."""
            if not record or op_id in ex.ops:
                return None
            if not encoded:
                encoded.append(_input(serializer, args, kwargs))
            return encoded[0]

        def update(action: OperationAction, **fields: Any) -> OperationUpdate:
            return OperationUpdate(op_id, OperationType.STEP, action, name=name,
                                   parent_id=scope.parent_id, sub_type=SubType.STEP,
                                   input=first_input(), **fields)

        policy = cfg.retry or DEFAULT_RETRY
        while True:
            if op is not None:
                if op.status is S.SUCCEEDED:
                    return _decode(serializer, op.result, fn)
                if op.status is S.FAILED:
                    assert op.error is not None
                    raise StepFailed(name, op.error)
                if op.status is S.CANCELLED:
                    ex.cancelled()
                if op.status is S.PENDING:
                    await ex.wait_for_engine(op)
                if op.status is S.STARTED and cfg.semantics == "at_most_once":
                    op = await _fail_attempt(ex, update, name, op.attempt, policy, StepInterrupted(
                        f"step {name!r} attempt {op.attempt} was interrupted (its process "
                        "stopped during the body); at-most-once: not re-running it unasked"))
                    continue
            ex.require_lease()
            attempt = (op.attempt if op is not None else 0) + 1
            started = WALL_CLOCK.get()()
            if cfg.semantics == "at_most_once":
                await ex.checkpoint(update(OperationAction.START, started_at=started))
                settle = None
            else:
                await ex.save_values()  # the body may use them: durable before it runs
                # The START is built only if it is sent, which nearly no step's is; its input
                # is encoded now all the same, before the body can change the arguments.
                first_input()
                settle = ex.checkpoint_later(
                    functools.partial(update, OperationAction.START, started_at=started),
                    RUNNING_RECORDED_AFTER)
            # An earlier attempt's last heartbeat details: the step's result while unfinished.
            beats = Heartbeat(ex, update, settle, op.result if op is not None else None)
            try:
                try:
                    value = await call_body(ex, op_id, attempt, fn, args, kwargs, cfg.timeout,
                                            beats)
                finally:
                    await beats.close()
                    if settle is not None:
                        await settle.settle()
                payload = _encode(serializer, value, name)
            except Cancelled:  # the body stopped because the run (or its caller) asked it to
                await ex.checkpoint(update(OperationAction.CANCEL, started_at=started))
                ex.cancelled()
            except BaseException as e:  # sys.exit() in a body fails the attempt, not the worker
                if not code_failure(e):
                    raise
                ex.abandon_chunks(op_id, attempt)
                op = await _fail_attempt(ex, update, name, attempt, policy, e, started,
                                         beats.details)
                continue
            await ex.checkpoint(update(OperationAction.SUCCEED, payload=payload,
                                       started_at=started))
            return _decode(serializer, payload, fn)


async def _fail_attempt(ex: Executor, update: Callable[..., OperationUpdate], name: str,
                        attempt: int, policy: RetryPolicy, error: BaseException,
                        started: float | None = None, details: str | None = None) -> Operation:
    """Checkpoint a failed attempt: RETRY with the backoff if the policy allows (carrying the
    last heartbeat `details` to the next attempt), else FAIL."""
    err = ErrorObject.from_exception(error)
    delay = None if isinstance(error, SerializationError) else policy.next_delay(attempt, error)
    if delay is None:
        await ex.checkpoint(update(OperationAction.FAIL, error=err, started_at=started))
        raise StepFailed(name, err) from error
    (op,) = await ex.checkpoint(update(OperationAction.RETRY, error=err, delay=delay,
                                       started_at=started, payload=details))
    return op


async def call_body(ex: Executor, op_id: str, attempt: int, fn: Callable[..., Any],
                    args: tuple[Any, ...], kwargs: dict[str, Any], timeout: float | None,
                    heartbeat: Heartbeat | None = None) -> Any:
    """Run user code as attempt `attempt` of operation `op_id` (a step body, a condition's
    check): it sees itself as that step (ctx.idempotency_key, ctx.logger, its `heartbeat`),
    a sync function runs in a thread, and `timeout` bounds it."""
    token = CURRENT_STEP.set(StepRun(ex.run_id, op_id, attempt, heartbeat))
    try:
        # Sync functions run in a thread so the event loop keeps serving other runs.
        work = fn(*args, **kwargs) if _is_async(fn) else asyncio.to_thread(fn, *args, **kwargs)
        if timeout is None:
            result = await work
        else:
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    result = await work
            except TimeoutError:
                if not deadline.expired():  # the body's own TimeoutError: an ordinary failure
                    raise
                raise StepTimeout(f"step {step_name(fn)!r} attempt {attempt} ran longer than "
                                  f"its timeout of {timeout}s") from None
        if inspect.isawaitable(result):  # a sync callable that returned a coroutine
            result = await result
        return result
    finally:
        CURRENT_STEP.reset(token)


def _is_async(fn: Callable[..., Any]) -> bool:
    """`inspect.iscoroutinefunction(fn)`, answered in one look for the usual step body, a
    plain async function: inspect's way costs each step five calls."""
    if type(fn) is types.FunctionType and fn.__code__.co_flags & inspect.CO_COROUTINE:
        return True
    return inspect.iscoroutinefunction(fn)


def _input(serializer: Serializer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """A step's input as recorded: the list of its arguments, or with keyword arguments
    `{"args": [...], "kwargs": {...}}`, through the step's serializer (so an encrypting one
    covers inputs as it covers results). None if the serializer cannot encode it: the input
    is there for people to see, and a step whose arguments are no data (a client, a callable)
    must run as it always has."""
    try:
        return serializer.encode({"args": list(args), "kwargs": kwargs} if kwargs else list(args))
    except Exception:  # whatever a custom serializer raises: not recorded, never a failure
        return None


def _encode(serializer: Serializer, value: Any, name: str) -> str:
    try:
        return serializer.encode(value)
    except SerializationError as e:
        raise SerializationError(f"step {name!r}: {e}") from None


def _decode(serializer: Serializer, payload: str | None, fn: Callable[..., Any]) -> Any:
    return None if payload is None else serializer.decode(payload, return_type(fn))
