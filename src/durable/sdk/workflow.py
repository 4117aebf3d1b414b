"""`@workflow` and `@step`, and how a workflow becomes something the engine can invoke."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload

from durable.errors import (
    Cancelled,
    NonDeterminismError,
    SerializationError,
    StaleToken,
    UsageError,
)
from durable.model import (
    Checkpointer,
    CheckpointResult,
    ErrorObject,
    Invocation,
    InvocationOutput,
    InvocationStatus,
    OperationUpdate,
    code_failure,
)
from durable.model.events import (
    Event,
    Trigger,
    WebhookRequest,
    check_topic,
    compile_filter,
    respond_seconds,
)
from durable.model.queues import Queue
from durable.model.schedule import Missed, Schedule
from durable.model.settings import retention_seconds
from durable.sdk.context import Context
from durable.sdk.executor import CURRENT_SCOPE, ContinueAsNew, Executor, Suspend, _Fenced
from durable.sdk.retry import RetryPolicy
from durable.sdk.serializer import DEFAULT_SERIALIZER, Serializer
from durable.sdk.step import Semantics, StepConfig, StepFunction, run_step
from durable.sdk.vanilla import Boundary, run_auto
from durable.sdk.wait import seconds

P = ParamSpec("P")
R = TypeVar("R")
Mode = Literal["context", "auto", "whole"]
"""How a workflow's function runs: `context`, an `async def wf(ctx, ...)` of durable calls;
`auto`, a plain function whose calls leaving the project become steps (sdk/vanilla.py);
`whole`, a plain function run as one step, from the start again after a crash."""
WHOLE_RUN_RETRY = RetryPolicy(max_attempts=1)
"""A `durable=False` workflow's one step: an exception fails the run, as it would the plain
call; only a crash runs it again."""

REGISTRY: dict[str, Workflow[..., Any]] = {}
"""Every @workflow defined so far, by name: what `durable.run` and a bare Worker serve."""


class Workflow(Generic[P, R]):
    """A workflow definition. Its `handler` is what the engine invokes. `P` is its input
    parameters (those after the Context) and `R` its result, for type checkers: what
    `ctx.invoke` and the client check a call's inputs against and type its result by.

    `schedule` (a `Schedule`) makes every worker serving it start one run per cron tick; `queue`
    (a `Queue`, or the name of a declared one) subjects its runs to the queue's limits. Both are
    data the worker hands the engine; see `workflow` for how to set them.
    """

    def __init__(self, fn: Callable[..., Any],
                 name: str | None = None,
                 serializer: Serializer | None = None, schedule: Schedule | None = None,
                 queue: Queue | str | None = None, webhook: bool = False,
                 record_inputs: bool = True, retention: timedelta | None = None,
                 execution_timeout: timedelta | float | None = None,
                 trigger: Trigger | None = None, mode: Mode = "context",
                 external: Sequence[str] = ()) -> None:
        params = list(inspect.signature(fn).parameters.values())
        if mode == "context":
            if not inspect.iscoroutinefunction(fn):
                raise UsageError(f"@workflow {fn.__qualname__} must be an `async def`, or a "
                                 "plain function declared @workflow(auto=True) or "
                                 "@workflow(durable=False)")
            if not params or params[0].kind not in (params[0].POSITIONAL_ONLY,
                                                    params[0].POSITIONAL_OR_KEYWORD):
                raise UsageError(f"@workflow {fn.__qualname__} must take the Context as its "
                                 "first parameter: async def wf(ctx: Context, ...)")
            params = params[1:]
        self.mode = mode
        self._boundary = Boundary(fn.__module__, tuple(external))
        try:
            hints = typing.get_type_hints(fn)
        except Exception:
            hints = {}
        self.fn = fn
        self.name = name or fn.__qualname__
        self.serializer = serializer or DEFAULT_SERIALIZER
        self.params = [p.name for p in params]
        self._param_types = [hints.get(p, Any) for p in self.params]
        self.result_type = hints.get("return", Any)
        self.schedule = schedule
        if schedule is not None and len(self.params) > 1:
            raise UsageError(f"@workflow {self.name}: a scheduled workflow takes no input or one "
                             "parameter, the tick's datetime: async def wf(ctx: Context, "
                             f"tick: datetime); it takes {len(self.params)} "
                             f"({', '.join(self.params)})")
        self.trigger = trigger
        if trigger is not None and len(self.params) > 1:
            raise UsageError(f"@workflow {self.name}: a workflow started by events takes no "
                             "input or one parameter, the event: async def wf(ctx: Context, "
                             f"event: dict); it takes {len(self.params)} "
                             f"({', '.join(self.params)})")
        self._queue = queue
        self.webhook = webhook  # `durable server` exposes POST /hooks/<name> to start runs
        self.record_inputs = record_inputs  # of its steps and child runs, for people to see
        # Seconds its ended runs are kept, whatever the global retention says (workers record
        # it in the store, so every process sweeping honours it).
        self.retention = retention_seconds(self.name, retention)
        self.execution_timeout = None if execution_timeout is None else seconds(execution_timeout)
        if self.execution_timeout is not None and self.execution_timeout <= 0:
            raise UsageError(f"@workflow {self.name}: execution_timeout must be positive, got "
                             f"{execution_timeout!r}")
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"

    @property
    def queue(self) -> Queue | None:
        """The queue whose limits this workflow's runs obey. A name is looked up when first
        asked (a worker starting), so the Queue may be declared after the workflow."""
        if isinstance(self._queue, str):
            self._queue = Queue.named(self._queue)
        return self._queue

    def schedule_input(self, tick: datetime) -> str | None:
        """The input of the run a schedule starts at `tick`: the tick itself if the workflow
        takes a parameter, else nothing."""
        return self.encode_input((tick,) if self.params else ())

    def trigger_input(self, event: Event) -> str | None:
        """The input of the run an event starts: the event (`Event.to_dict`) if the workflow
        takes a parameter, or the webhook request that posted it if that parameter is typed
        `WebhookRequest`; else nothing."""
        if not self.params:
            return self.encode_input(())
        if self._param_types[0] is WebhookRequest:
            return self.encode_input((WebhookRequest.of(event),))
        return self.encode_input((event.to_dict(),))

    # -- input -------------------------------------------------------------------------------
    def encode_input(self, args: tuple[Any, ...]) -> str | None:
        """No parameter: no input; one: its value; several: a JSON array of them."""
        if len(args) != len(self.params):
            raise UsageError(f"workflow {self.name!r} takes {len(self.params)} input argument(s) "
                             f"({', '.join(self.params) or 'none'}), got {len(args)}")
        if not args:
            return None
        return self.serializer.encode(args[0] if len(args) == 1 else list(args))

    def decode_input(self, data: str | None) -> tuple[Any, ...]:
        if not self.params:
            return ()
        if data is None:
            raise SerializationError(f"workflow {self.name!r} needs input "
                                     f"({', '.join(self.params)}) but the run has none")
        if len(self.params) == 1:
            return (self.serializer.decode(data, self._param_types[0]),)
        as_tuple = tuple.__class_getitem__(tuple(self._param_types))
        return tuple(self.serializer.decode(data, as_tuple))

    def decode_result(self, data: str | None) -> R:
        return None if data is None else self.serializer.decode(data, self.result_type)  # type: ignore[return-value]

    # -- invocation --------------------------------------------------------------------------
    async def handler(self, invocation: Invocation,
                      checkpointer: Checkpointer) -> InvocationOutput:
        """Replay the run's history through the workflow and run on until it ends or waits."""
        ex = Executor(invocation, checkpointer, self.serializer,
                      record_inputs=self.record_inputs)
        return await self._execute(ex, invocation)

    async def check_history(self, invocation: Invocation) -> ErrorObject | None:
        """Replay a stored history against this code without running anything new: the
        divergence as a NonDeterminismError, or None if the code still fits."""
        async def refuse(updates: list[OperationUpdate]) -> CheckpointResult:
            return CheckpointResult([], False)
        ex = Executor(invocation, refuse, self.serializer, replay_only=True)
        return (await self._execute(ex, invocation)).parked

    async def _execute(self, ex: Executor, invocation: Invocation) -> InvocationOutput:
        token = CURRENT_SCOPE.set(ex.root)
        try:
            value = await self._body(ex, self.decode_input(invocation.input))
            ex.check_complete()
            payload = self.serializer.encode(value)
            await ex.flush()
            return InvocationOutput(InvocationStatus.SUCCEEDED, result=payload)
        except _Fenced:
            raise StaleToken(f"run {invocation.run_id!r}: another invocation took over") from None
        except Suspend:
            await ex.flush()
            return InvocationOutput(InvocationStatus.PENDING)
        except ContinueAsNew as e:
            return InvocationOutput(InvocationStatus.SUCCEEDED,
                                    continue_as_new=self.encode_input(e.args_))
        except NonDeterminismError as e:
            return InvocationOutput(InvocationStatus.PENDING, parked=ErrorObject.from_exception(e))
        except Cancelled as e:
            await ex.flush()
            return InvocationOutput(InvocationStatus.FAILED, stopped=True, error=ErrorObject(
                "Cancelled", "the run was cancelled", ErrorObject.from_exception(e).traceback))
        except BaseException as e:  # sys.exit() in the workflow fails the run, not the worker
            if not code_failure(e):
                raise
            await ex.flush()
            return InvocationOutput(InvocationStatus.FAILED, error=ErrorObject.from_exception(e))
        finally:
            CURRENT_SCOPE.reset(token)


    async def _body(self, ex: Executor, inputs: tuple[Any, ...]) -> Any:
        if self.mode == "auto":
            return await run_auto(ex, self.fn, self._boundary, inputs)
        if self.mode == "whole":
            return await run_step(ex, ex.root, self.fn, inputs, {},
                                  StepConfig(name=self.name, retry=WHOLE_RUN_RETRY))
        return await self.fn(Context(ex), *inputs)


class WorkflowDecorator(Protocol):
    """What `@workflow(...)` with options returns: it keeps the function's signature."""

    def __call__(self, fn: Callable[Concatenate[Context, P], Awaitable[R]], /
                 ) -> Workflow[P, R]: ...


class PlainWorkflowDecorator(Protocol):
    """What `@workflow(auto=True)` or `@workflow(durable=False)` returns: for a plain function,
    sync or async, whose inputs are all its parameters."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Workflow[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Workflow[P, R]: ...


@overload
def workflow(fn: Callable[Concatenate[Context, P], Awaitable[R]], /) -> Workflow[P, R]: ...
@overload
def workflow(*, name: str | None = None, serializer: Serializer | None = None,
             schedule: str | None = None, timezone: str | None = None,
             missed: Missed | None = None, queue: Queue | str | None = None,
             webhook: bool = False, record_inputs: bool = True,
             retention: timedelta | None = None,
             execution_timeout: timedelta | float | None = None,
             on_event: str | None = None, filter: str | None = None,
             respond: bool | timedelta | float = False,
             auto: Literal[False] = False, durable: Literal[True] = True
             ) -> WorkflowDecorator: ...
@overload
def workflow(*, name: str | None = None, serializer: Serializer | None = None,
             schedule: str | None = None, timezone: str | None = None,
             missed: Missed | None = None, queue: Queue | str | None = None,
             webhook: bool = False, record_inputs: bool = True,
             retention: timedelta | None = None,
             execution_timeout: timedelta | float | None = None,
             on_event: str | None = None, filter: str | None = None,
             respond: bool | timedelta | float = False,
             auto: Literal[True], durable: Literal[True] = True,
             external: Sequence[str] = ()) -> PlainWorkflowDecorator: ...
@overload
def workflow(*, name: str | None = None, serializer: Serializer | None = None,
             schedule: str | None = None, timezone: str | None = None,
             missed: Missed | None = None, queue: Queue | str | None = None,
             webhook: bool = False, record_inputs: bool = True,
             retention: timedelta | None = None,
             execution_timeout: timedelta | float | None = None,
             on_event: str | None = None, filter: str | None = None,
             respond: bool | timedelta | float = False,
             auto: Literal[False] = False, durable: Literal[False]
             ) -> PlainWorkflowDecorator: ...


def workflow(fn: Callable[Concatenate[Context, P], Awaitable[R]] | None = None, /, *,
             name: str | None = None, serializer: Serializer | None = None,
             schedule: str | None = None, timezone: str | None = None, missed: Missed | None = None,
             queue: Queue | str | None = None, webhook: bool = False,
             record_inputs: bool = True, retention: timedelta | None = None,
             execution_timeout: timedelta | float | None = None,
             on_event: str | None = None, filter: str | None = None,
             respond: bool | timedelta | float = False, auto: bool = False,
             durable: bool = True, external: Sequence[str] = ()) -> Any:
    """Declare a durable workflow: `async def wf(ctx: Context, *inputs) -> result`.

    `auto=True`: a plain function, `def` (run in a thread: blocking code is fine) or
    `async def`, taking only its inputs. Each call it makes that leaves the user's project
    (an SDK, an HTTP client: a module outside the workflow's project directory, installed in
    site-packages, or named in `external=["bank_api"]`) runs as a step named after the callee;
    `time.sleep` and `asyncio.sleep` are durable sleeps; `time.*`, `datetime.now`, `random.*`
    and `uuid.uuid4` are recorded values. Calls into the user's own modules run inline, their
    calls routed the same way. docs/guides/vanilla.md has the mechanism and its limits.

    `durable=False`: a plain function run as one step: a crash runs it again from the start,
    an exception fails the run. Triggers, UI and history are those of any workflow.

    `schedule="0 2 * * *"` (cron, in `timezone`, default UTC): every worker serving the workflow
    starts one run per tick, with id `"<name>@<tick ISO>"`; the workflow takes no input, or one
    parameter that receives the tick as an aware datetime in `timezone`. `missed` says what to
    do with ticks that came while no worker ran: `"skip"` (default) waits for the next tick,
    `"run_once"` starts one run for the latest of them. A bad expression, zone or policy raises
    `UsageError` here, at decoration time.

    `queue=durable.Queue("emails", limit=10, rate="100/minute")` (or the name of a Queue declared
    elsewhere): runs wait for a slot of the queue before their first invocation.

    `webhook=True`: `durable server` serving the workflow exposes `POST /hooks/<name>`, which
    starts a run with the request's JSON body as input.

    `record_inputs=False`: the inputs of its steps and child runs are not recorded with their
    operations (sensitive data); each is otherwise kept through `serializer`, as results are,
    for `durable show` and the UI. A step's own `record_input` wins over this.

    `retention=timedelta(days=30)`: its runs are deleted that long after they end, by the
    retention sweeps of workers and servers (`--retention`), whatever age those are given for
    other workflows; a worker serving it sweeps even without `--retention`.

    `execution_timeout=timedelta(hours=1)`: a run not ended that long after it started ends
    TIMED_OUT (`Execution.TimedOut`), whatever it waits on (a timer, a callback, a child), as
    AWS's ExecutionTimeout ends a durable function's execution. The deadline is stored with the
    run, so it holds across crashes and restarts; it counts from the run's start even for a
    run started by name elsewhere, which gets it when a worker serving this code first takes
    it. A run continued as new keeps its deadline.

    `on_event="orders", filter="data.amount > 100"`: each event published on the topic
    (`Client.publish`, `durable publish`, `POST /api/events/orders`) that passes the filter
    (CEL over `data`, `topic` and `id`) starts one run, however many workers serve it; its
    input is the event (`{"topic", "id", "data", "seq", "published_at", "generation"}`) if
    the workflow takes a parameter. Events published before a worker first served the trigger
    start none. A bad topic or filter raises `UsageError` here.

    `respond=True` (or how long to wait, e.g. `timedelta(seconds=30)`; True: 10 s): a webhook
    request posting a matching event on the topic (`POST /hooks/events/<topic>`) waits for
    the run's `ctx.respond(...)`, or its result, and gets it as the HTTP answer; after the
    wait, 202 with the run id. Type the parameter `WebhookRequest` to receive the request.
    """
    mode = _mode(auto, durable, external)

    def wrap(f: Callable[..., Any]) -> Workflow[..., Any]:
        wf: Workflow[..., Any] = Workflow(
            f, name, serializer, _schedule(name or f.__qualname__, schedule, timezone, missed),
            queue, webhook, record_inputs, retention, execution_timeout,
            _trigger(name or f.__qualname__, on_event, filter, respond), mode, external)
        REGISTRY[wf.name] = wf
        return wf
    return wrap(fn) if fn is not None else wrap


def _mode(auto: bool, durable: bool, external: Sequence[str]) -> Mode:
    if auto and not durable:
        raise UsageError("@workflow(auto=True, durable=False): pick one; auto makes each call "
                         "leaving your project a step, durable=False runs the whole function "
                         "as one")
    if external and not auto:
        raise UsageError("@workflow(external=...) names the modules whose calls become steps "
                         "in auto mode; add auto=True")
    if isinstance(external, str):
        raise UsageError(f"@workflow(external={external!r}) takes a list of module names, "
                         f"e.g. external=[{external!r}]")
    return "auto" if auto else "context" if durable else "whole"


def _trigger(workflow: str, topic: str | None, source: str | None,
             respond: bool | timedelta | float) -> Trigger | None:
    if topic is None:
        for given, value in (("filter", source is not None), ("respond", respond is not False)):
            if value:
                raise UsageError(f"@workflow {workflow}: {given}= applies to a trigger; give "
                                 "the topic too: on_event='orders'")
        return None
    where = f"@workflow {workflow}"
    try:
        check_topic(topic)
    except UsageError as e:
        raise UsageError(f"{where}: {e}") from None
    return Trigger(topic, compile_filter(source, where), respond_seconds(where, respond))


def _schedule(workflow: str, cron: str | None, timezone: str | None,
              missed: Missed | None) -> Schedule | None:
    """The decorator's schedule arguments as a `Schedule`; errors name the workflow."""
    if cron is None:
        if timezone is not None or missed is not None:
            raise UsageError(f"@workflow {workflow}: timezone= and missed= only apply with a "
                             "schedule, e.g. schedule='0 2 * * *'")
        return None
    try:
        return Schedule(cron, timezone or "UTC", missed or "skip")
    except UsageError as e:
        raise UsageError(f"@workflow {workflow}: {e}") from None


class StepDecorator(Protocol):
    """What `@step(...)` with options returns: it keeps the function's signature, and an
    async function's result type is the awaited one."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> StepFunction[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> StepFunction[P, R]: ...


@overload
def step(fn: Callable[P, Awaitable[R]], /) -> StepFunction[P, R]: ...
@overload
def step(fn: Callable[P, R], /) -> StepFunction[P, R]: ...
@overload
def step(*, name: str | None = None, retry: RetryPolicy | None = None,
         semantics: Semantics = "at_least_once", timeout: float | None = None,
         serializer: Serializer | None = None, record_input: bool | None = None
         ) -> StepDecorator: ...


def step(fn: Callable[P, Any] | None = None, /, *, name: str | None = None,
         retry: RetryPolicy | None = None, semantics: Semantics = "at_least_once",
         timeout: float | None = None, serializer: Serializer | None = None,
         record_input: bool | None = None) -> Any:
    """Declare a step with its options; calling it inside a workflow checkpoints it.
    `record_input=False` keeps its arguments out of the record (sensitive data)."""
    cfg = StepConfig(name, retry, semantics, timeout, serializer, record_input)

    def wrap(f: Callable[P, Any]) -> StepFunction[P, Any]:
        return StepFunction(f, cfg)
    return wrap(fn) if fn is not None else wrap
