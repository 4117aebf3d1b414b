"""Workflows the CLI tests drive through real `durable` subprocesses. Sleeps and backoffs are a
few milliseconds so the suite stays fast."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from durable import Completion, Context, RetryPolicy, step, workflow

GREETING = "Hello"  # an attribute that is not a workflow


class Order(BaseModel):
    sku: str
    quantity: int


@step
def compose(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@workflow
async def greet(ctx: Context, name: str) -> str:
    text: str = await compose(GREETING, name)
    await ctx.sleep(0.01)
    ctx.set_event("stage", "greeted")
    return text


def total(a: int, b: int) -> int:
    return a + b


@workflow
async def add(ctx: Context, a: int, b: int) -> int:
    return await ctx.step(total, a, b)


@workflow
async def place(ctx: Context, order: Order) -> dict[str, Any]:
    return {"sku": order.sku, "quantity": order.quantity}


_calls = {"flaky": 0}


@step(retry=RetryPolicy(max_attempts=2, initial_interval=0.01, jitter=0))
def flaky() -> str:
    """Fails its first attempt in each process, like a service that needs a second try."""
    _calls["flaky"] += 1
    if _calls["flaky"] == 1:
        raise ConnectionError("service unavailable")
    return "ok"


@workflow
async def retrying(ctx: Context) -> str:
    outcome: str = await flaky()
    return outcome


@workflow
async def broken(ctx: Context) -> None:
    raise ValueError("the order book is on fire")


@workflow
async def wait_signal(ctx: Context) -> Any:
    return await ctx.wait_for_signal("go", timeout=60)


@workflow
async def approval(ctx: Context) -> Any:
    callback = await ctx.create_callback(name="approval", timeout=60)
    return await callback.result()


_invocations = {"drifting": 0}


def noop() -> None:
    return None


@workflow
async def drifting(ctx: Context) -> None:
    """Names its step after the invocation, like code branching on the wall clock: the second
    invocation no longer matches the history the first one recorded, so the run parks."""
    _invocations["drifting"] += 1
    await ctx.step(noop, name=f"invocation-{_invocations['drifting']}")
    await ctx.sleep(0.01)


DOCUMENTS = 20
BAD_EVERY = 7  # documents 6 and 13 are unreadable


class Unreadable(Exception):
    pass


@step(retry=RetryPolicy(max_attempts=1))
def index_document(n: int) -> int:
    if n % BAD_EVERY == BAD_EVERY - 1:
        raise Unreadable(f"document {n} is unreadable")
    return n * 2


@workflow
async def index_all(ctx: Context) -> int:
    """A map over 20 documents, two of which fail: a run with many events to tell briefly."""
    batch = await ctx.map(index_document, range(DOCUMENTS), name="documents",
                          completion=Completion.tolerate(failures=DOCUMENTS))
    return sum(batch.results)
