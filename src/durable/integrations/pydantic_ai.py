"""Durable pydantic-ai agents: every model request, tool call, MCP call and tool discovery of an
agent run inside a workflow is a Durable step.

    agent = Agent(model, name="research", tools=[search], capabilities=[Durability()])

    @workflow
    async def research(ctx: Context, topic: str) -> str:
        return (await agent.run(topic)).output

A crash resumes the run where it was: finished model requests and tool calls return their
recorded results, the rest run for real. Transient model errors (429, 5xx, timeouts, lost
connections) are retried with a durable backoff. A tool that needs a person's approval
(`requires_approval=True`) is answered through pydantic-ai's `RequestInput` capability, whose
wait is a Durable callback here: the run holds no process while it waits, for days if need be,
and `durable callback succeed ID --payload ...` (or `Client.complete_callback`) resumes it.
Outside a workflow the capability steps aside and the agent runs as a plain agent.

Built on pydantic-ai's public `pydantic_ai.durable_exec` surface for new engines: a
`CallableOperationBackend` running each operation as `ctx.step(...)`, the journal naming
convention (the names are recorded with runs, so they are compatibility data), and an
`ExternalEventWaiter` made of a callback, and `Agent.using_sleep` for the agent graph's own
waits, which become durable timers.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from durable.errors import (
    CallbackFailed,
    CallbackHeartbeatTimeout,
    SerializationError,
    UsageError,
    WaitTimeout,
)
from durable.sdk.context import Context, current_context
from durable.sdk.retry import RetryPolicy
from durable.sdk.step import Semantics

try:
    from pydantic import JsonValue
    from pydantic_ai import Agent
    from pydantic_ai.agent import EventStreamHandler
    from pydantic_ai.capabilities.abstract import WrapRunHandler
    from pydantic_ai.durable_exec import (
        JSON_CODEC,
        BaseDurabilityCapability,
        DurabilityEngineSpec,
        DurableOperationId,
        ExternalEventError,
        ExternalEventWaiter,
        JournalCallableOperationBackend,
        RoleBasedOperationConfig,
        conversation_id_from_run_id,
        external_event_scope,
        replay_scope,
    )
    from pydantic_ai.exceptions import (
        ModelAPIError,
        ModelHTTPError,
        ModelQuotaExceededError,
        ModelRequestRejectedError,
        UnexpectedModelBehavior,
        UserError,
    )
    from pydantic_ai.models import Model
    from pydantic_ai.run import AgentRunResult
    from pydantic_ai.tools import AgentDepsT, RunContext
except ImportError as e:  # pragma: no cover - the message is the point
    raise ImportError("durable.integrations.pydantic_ai needs pydantic-ai: "
                      "pip install 'durable-serverless[pydantic-ai]'") from e

__all__ = ["MODEL_RETRY", "Durability", "ModelRetryPolicy", "StepOptions", "transient",
           "workflow_context"]

PERMANENT: tuple[type[BaseException], ...] = (
    UserError, ModelRequestRejectedError, ModelQuotaExceededError, UnexpectedModelBehavior)
"""Model errors that the same request would meet again: refused (400, 401, 404, context window),
out of quota, or a response the model cannot be made to give."""
TRANSIENT_STATUS = frozenset({408, 409, 425, 429})
"""The 4xx answers worth asking again, as 5xx are: timeouts, conflicts, rate limits."""


def transient(error: BaseException) -> bool:
    """Whether a model request that failed with `error` may succeed if made again later: rate
    limits, overloads, 5xx, timeouts and lost connections. A bug (an AssertionError, a
    TypeError) is not: retrying it would only hide it for half a minute."""
    if isinstance(error, PERMANENT):
        return False
    if isinstance(error, ModelHTTPError):
        return error.status_code in TRANSIENT_STATUS or error.status_code >= 500
    return isinstance(error, ModelAPIError | OSError | TimeoutError)


@dataclass(frozen=True, slots=True)
class ModelRetryPolicy(RetryPolicy):
    """A `RetryPolicy` that retries transient model errors only (`transient`), and waits at
    least as long as the provider's Retry-After asks."""

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        if not transient(error):
            return None
        delay = RetryPolicy.next_delay(self, attempt, error)
        asked = getattr(error, "retry_after", None)
        if delay is None or not isinstance(asked, int | float):
            return delay
        return max(delay, float(asked))


MODEL_RETRY = ModelRetryPolicy(max_attempts=6, initial_interval=1.0, backoff=2.0,
                               max_interval=60.0)
"""A model request's default: up to 6 attempts over about half a minute, each backoff recorded
with the failure, so a worker that dies meanwhile still retries on time."""


@dataclass(frozen=True, slots=True)
class StepOptions:
    """How the steps of one kind of operation run: `ctx.step`'s options of the same names."""

    retry: RetryPolicy | None = None
    semantics: Semantics = "at_least_once"
    timeout: float | None = None


_WORKFLOW_CONTEXT: ContextVar[Context | None] = ContextVar("durable_agent_workflow",
                                                           default=None)


def workflow_context() -> Context:
    """The workflow's `Context` from inside one of the agent's steps: an event stream handler
    (which runs in a step) uses it to publish progress from the run it belongs to."""
    ctx = _WORKFLOW_CONTEXT.get() or current_context()
    if ctx is None:
        raise UsageError("workflow_context() is only defined in a workflow, or inside a step of "
                         "an agent that has the Durability capability")
    return ctx


def _not_serializable(error: Exception) -> BaseException:
    return SerializationError(f"an agent step's result cannot be recorded as JSON: {error}")


class _StepBackend(JournalCallableOperationBackend[StepOptions]):
    """Runs each operation of the agent as one step of the workflow running it."""

    async def execute(self, *, operation_id: DurableOperationId, name: str,
                      body: Callable[[], Awaitable[object]], cache_key: tuple[object, ...],
                      config: StepOptions) -> object:
        ctx = current_context()
        if ctx is None:  # a plain run, or one nested in a step: nothing to record it in
            return await body()

        async def unit() -> Any:
            token = _WORKFLOW_CONTEXT.set(ctx)
            try:
                return await body()
            finally:
                _WORKFLOW_CONTEXT.reset(token)

        return await ctx.step(unit, name=name, retry=config.retry, semantics=config.semantics,
                              timeout=config.timeout, record_input=False)


class _CallbackWaiter(ExternalEventWaiter):
    """pydantic-ai's external-event wait as a Durable callback: its id is the resume token."""

    def __init__(self, ctx: Context, agent_name: str) -> None:
        self._ctx = ctx
        self._prefix = f"{agent_name}__external_event"

    async def wait(self, name: str, *, ask: Callable[[str], Awaitable[JsonValue]],
                   timeout: timedelta | None) -> JsonValue:
        callback = await self._ctx.create_callback(name=f"{self._prefix}.{name}",
                                                   timeout=timeout)
        answer = await self._ctx.step(ask, callback.id, name=f"{self._prefix}.{name}.ask")
        if answer is not None:
            return answer
        try:
            return await callback.result()  # type: ignore[no-any-return]
        except (CallbackFailed, CallbackHeartbeatTimeout, WaitTimeout) as e:
            raise ExternalEventError(str(e)) from e


@dataclass(init=False, kw_only=True)
class Durability(BaseDurabilityCapability[AgentDepsT]):
    """The capability that makes an agent durable when it runs inside a Durable workflow.

    `model_step`, `tool_step`, `mcp_step` and `event_step` set the steps' retry policy,
    semantics and timeout for model requests (default `MODEL_RETRY`), function tool calls,
    MCP calls and discovery, and event-stream handling. Tools whose side effects must not
    happen twice take `tool_step=StepOptions(semantics="at_most_once",
    retry=RetryPolicy(max_attempts=1))`: a call found interrupted by a crash then fails the
    run (StepFailed, StepInterrupted inside) instead of running again.
    """

    engine_spec = DurabilityEngineSpec(
        engine_name="Durable",
        durable_unit_noun="step",
        durable_container_noun="workflow",
        codec=JSON_CODEC,  # results are recorded as JSON, in the run's own tables
        serialization_failure=_not_serializable,  # fails the step at once, never retried
        wrapped_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        # Steps run in the workflow's own process, so one MCP session serves the whole run.
        toolset_lifecycles={"function": "enter-always", "mcp": "enter-in-durable-unit",
                            "dynamic": "enter-never"},
        tool_call_result_upgrade_lenient=False,
        journal_discovery=True,
        # Operation ids follow the call order within a scope: tools called concurrently would
        # start their steps in an order a replay need not repeat.
        sequential_tools_in_durable_context=True,
        # Toolsets passed to `agent.run(toolsets=...)` have no registered steps.
        unsupported_runtime_toolset_kinds=frozenset({"function", "mcp", "dynamic"}),
        tool_config_key=None,
    )

    def __init__(self, *, models: Mapping[str, Model] | None = None,
                 event_stream_handler: EventStreamHandler[AgentDepsT] | None = None,
                 name: str | None = None, model_step: StepOptions | None = None,
                 tool_step: StepOptions | None = None, mcp_step: StepOptions | None = None,
                 event_step: StepOptions | None = None) -> None:
        """`name` (default: the agent's) prefixes every step name; keep it stable, as runs in
        flight replay by it. `event_stream_handler` runs inside steps: live model events in
        the model request's step, tool events each in a step of their own."""
        super().__init__(models=models, event_stream_handler=event_stream_handler, name=name)
        self._options = {"model": model_step or StepOptions(retry=MODEL_RETRY),
                         "tool": tool_step or StepOptions(),
                         "mcp": mcp_step or StepOptions(),
                         "event": event_step or StepOptions()}

    @property
    def in_durable_context(self) -> bool:
        return current_context() is not None

    def get_default_run_id(self) -> str | None:
        ctx = current_context()
        return None if ctx is None else f"{ctx.run_id}:{ctx.uuid4()}"

    def get_default_conversation_id(self, run_id: str) -> str | None:
        return conversation_id_from_run_id(run_id) if self.in_durable_context else None

    async def get_run_start_time(self, run_id: str) -> datetime | None:
        ctx = current_context()
        # Recorded, so a resumed run counts its `timeout=` from when it first started.
        return None if ctx is None else ctx.now()

    def get_durable_operation_backend(self) -> _StepBackend:
        return _StepBackend(agent_name=self.name, default_model_id=self.default_model_id,
                            config=RoleBasedOperationConfig(
                                model=self._options["model"], event=self._options["event"],
                                capability=self._options["tool"], tool=self._options["tool"],
                                resolve_tool=self._tool_options))

    def _tool_options(self, operation_id: DurableOperationId, tool: object | None,
                      tool_name: str) -> StepOptions:
        # Discovery, validation and calls of a toolset all carry its kind; other operations of
        # the tool role (a newer pydantic-ai may add some) take the function tools' options.
        kind = getattr(operation_id, "toolset_kind", None)
        return self._options["mcp"] if kind == "mcp" else self._options["tool"]

    async def wrap_run(self, ctx: RunContext[AgentDepsT], *,
                       handler: WrapRunHandler) -> AgentRunResult[Any]:
        wf = current_context()
        if wf is None:
            return await super().wrap_run(ctx, handler=handler)
        with (external_event_scope(_CallbackWaiter(wf, self.name)),
              replay_scope(is_replaying=lambda: wf.is_replaying),
              Agent.using_sleep(functools.partial(_sleep, f"{self.name}__sleep"))):
            return await super().wrap_run(ctx, handler=handler)


async def _sleep(name: str, seconds: float) -> None:
    """pydantic-ai's own waits in an agent run (between polls of a model response the provider
    is still working on, e.g. OpenAI's background mode): a durable timer in workflow code, so
    a resumed run waits only for what is left of it and holds no process meanwhile. In a step
    body (an agent run nested in a tool) there is no timer to start: a plain sleep."""
    wf = current_context()
    if wf is None:
        await asyncio.sleep(max(seconds, 0))
    else:
        await wf.sleep(max(seconds, 0), name=name)
