"""A durable agent loop without a framework: call any model SDK as a step, tools as steps, a
token and cost budget kept as the run's attributes, and an approval gate on a callback.

    budget = Budget(max_tokens=50_000, prices=Prices(input=2.5, output=10.0))
    reply = await ctx.step(chat, messages, name="llm.chat", retry=LLM_RETRY)
    budget.charge(ctx, Usage.from_openai(reply["usage"]))
    result = await call_tool(ctx, TOOLS, call["function"]["name"], call["function"]["arguments"])
    await approval(ctx, "refund", lambda token: notify(token), timeout=timedelta(days=3))

No SDK is imported here: a model call is whatever function the workflow hands to `ctx.step`
(it should return JSON data, e.g. the SDK response's `.model_dump(mode="json")`), and errors
are classified by the `status_code` the openai and anthropic SDKs (and httpx) put on them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from durable.errors import CallbackFailed, DurableError, UsageError, WaitTimeout
from durable.sdk.context import Context
from durable.sdk.retry import RetryPolicy

__all__ = ["LLM_RETRY", "ApprovalDenied", "Budget", "BudgetExceeded", "Prices",
           "TransientRetryPolicy", "Usage", "approval", "call_tool", "transient"]

TRANSIENT_STATUS = frozenset({408, 409, 425, 429})


def transient(error: BaseException) -> bool:
    """Whether a model call that failed with `error` may succeed later: 408/409/425/429 and
    5xx answers, and errors with no HTTP status (timeouts, lost connections); not the other
    4xx (a bad request, a bad key), which the same call would meet again."""
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return True
    return status in TRANSIENT_STATUS or status >= 500


@dataclass(frozen=True, slots=True)
class TransientRetryPolicy(RetryPolicy):
    """A `RetryPolicy` that retries only what `transient` calls transient."""

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        return RetryPolicy.next_delay(self, attempt, error) if transient(error) else None


LLM_RETRY = TransientRetryPolicy(max_attempts=6, initial_interval=1.0, backoff=2.0,
                                 max_interval=60.0)
"""For model calls: up to 6 attempts over about half a minute, the backoff recorded with each
failure so that it survives a crash."""


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From a chat completion's `usage` (prompt_tokens, completion_tokens) or a
        response's (input_tokens, output_tokens)."""
        u = usage or {}
        return cls(int(u.get("prompt_tokens", u.get("input_tokens", 0)) or 0),
                   int(u.get("completion_tokens", u.get("output_tokens", 0)) or 0))

    @classmethod
    def from_anthropic(cls, usage: Mapping[str, Any] | None) -> Usage:
        u = usage or {}
        return cls(int(u.get("input_tokens", 0) or 0), int(u.get("output_tokens", 0) or 0))


@dataclass(frozen=True, slots=True)
class Prices:
    """Dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


class BudgetExceeded(DurableError):
    """The run spent more tokens or dollars than its budget allows."""


class ApprovalDenied(DurableError):
    """The person asked said no (or the approval timed out)."""


@dataclass
class Budget:
    """What one run may spend on model calls, and what it has spent.

    `charge` adds a call's usage, records the totals as the run's attributes
    (`llm.input_tokens`, `llm.output_tokens`, `llm.cost_usd`: `durable ls --where
    'llm.cost_usd > 1'` finds the expensive runs), and raises `BudgetExceeded` once a limit
    is passed. The totals are rebuilt on replay from the recorded model calls, so they stay
    exact across crashes without being stored anywhere else."""

    max_tokens: int | None = None
    max_cost: float | None = None
    prices: Prices = field(default_factory=Prices)
    spent: Usage = field(default_factory=Usage)

    @property
    def tokens(self) -> int:
        return self.spent.input_tokens + self.spent.output_tokens

    @property
    def cost(self) -> float:
        return self.prices.cost(self.spent)

    def charge(self, ctx: Context, usage: Usage) -> None:
        self.spent = Usage(self.spent.input_tokens + usage.input_tokens,
                           self.spent.output_tokens + usage.output_tokens)
        ctx.set_attributes({"llm.input_tokens": self.spent.input_tokens,
                            "llm.output_tokens": self.spent.output_tokens,
                            "llm.cost_usd": round(self.cost, 6)})
        if self.max_tokens is not None and self.tokens > self.max_tokens:
            raise BudgetExceeded(f"run {ctx.run_id}: {self.tokens} tokens spent, over the "
                                 f"budget of {self.max_tokens}")
        if self.max_cost is not None and self.cost > self.max_cost:
            raise BudgetExceeded(f"run {ctx.run_id}: ${self.cost:.4f} spent, over the budget "
                                 f"of ${self.max_cost:.4f}")


async def call_tool(ctx: Context, tools: Mapping[str, Callable[..., Any]], name: str,
                    arguments: str | Mapping[str, Any], *,
                    retry: RetryPolicy | None = None) -> Any:
    """Run the tool the model asked for as the step `tool.<name>`, with the arguments it gave
    (JSON text or a mapping). A tool the model made up, or arguments that are not a JSON
    object, come back as `{"error": ...}` for the model to read and correct: a model's
    mistake must not fail the run."""
    fn = tools.get(name)
    if fn is None:
        return {"error": f"there is no tool {name!r}; the tools are {sorted(tools)}"}
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else dict(arguments)
    except json.JSONDecodeError as e:
        return {"error": f"the arguments of {name!r} are not JSON: {e}"}
    if not isinstance(args, dict):
        return {"error": f"the arguments of {name!r} must be a JSON object"}
    return await ctx.step(functools.partial(fn, **args), name=f"tool.{name}", retry=retry)


async def approval(ctx: Context, name: str, notify: Callable[[str], Any], *,
                   timeout: timedelta | float | None = None) -> Any:
    """Hold the run until a person decides: `notify(callback_id)` runs once, as a step (send
    the id in an email or a chat message), then the run waits, holding no process, until
    `durable callback succeed ID --payload '{"approved": true}'` (or `Client.complete_callback`)
    or the timeout. Returns the payload when it approves; raises `ApprovalDenied` when it says
    `"approved": false`, when the callback is failed, or when the time runs out."""
    if not name:
        raise UsageError("approval(ctx, name, ...): give the approval a name, e.g. 'refund'")
    try:
        decision = await ctx.wait_for_callback(notify, name=f"approve.{name}", timeout=timeout)
    except (CallbackFailed, WaitTimeout) as e:
        raise ApprovalDenied(f"{name}: {e}") from e
    if not isinstance(decision, dict) or decision.get("approved") is not True:
        raise ApprovalDenied(f"{name}: not approved ({decision!r})")
    return decision
