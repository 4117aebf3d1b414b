"""Workflows the server tests serve with `durable server --worker tests/apps/server_app.py`:
an order that waits for a person's approval (signal), a webhook that answers at once, and one
that exercises retries, a sleep, a callback and a child run for the timeline."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from durable import Context, RetryPolicy, step, workflow


class Order(BaseModel):
    order_id: str
    amount: int


@step
def reserve(order_id: str) -> str:
    return f"reserved {order_id}"


@step
def charge(order_id: str, amount: int) -> str:
    return f"charged {amount} for {order_id}"


@workflow
async def approval(ctx: Context, order: Order) -> dict[str, object]:
    """Reserve, wait for a person to approve, then charge."""
    await reserve(order.order_id)
    ctx.set_event("stage", "awaiting approval")
    decision = await ctx.wait_for_signal("approve", timeout=timedelta(hours=1))
    receipt = await charge(order.order_id, order.amount)
    ctx.set_event("stage", "done")
    return {"order": order.order_id, "approved_by": decision, "receipt": receipt}


@workflow(webhook=True)
async def echo(ctx: Context, payload: dict[str, object]) -> dict[str, object]:
    """Webhook target: returns what it was sent, after one step."""
    keys = await ctx.step(sorted, list(payload))
    return {"received": payload, "keys": keys}


@workflow(webhook=True)
async def slow_hook(ctx: Context) -> str:
    """Webhook target that takes longer than a short request timeout."""
    await ctx.sleep(timedelta(seconds=30))
    return "late"


_attempts = {"flaky": 0}


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.2, backoff=2.0, jitter=0))
def flaky_fetch(source: str) -> str:
    """Fails its first two attempts in each process, like a service that needs a third try."""
    _attempts["flaky"] += 1
    if _attempts["flaky"] % 3:
        raise ConnectionError(f"{source} unavailable (attempt {_attempts['flaky']})")
    return f"data from {source}"


@workflow
async def label(ctx: Context, item: str) -> str:
    return await ctx.step(str.upper, item)


@workflow
async def pipeline(ctx: Context, source: str) -> dict[str, object]:
    """Retries, a durable sleep, parallel steps, a child run and a callback: a rich timeline."""
    data = await flaky_fetch(source)
    await ctx.sleep(timedelta(milliseconds=300))
    a, b = await ctx.gather(ctx.step(len, data), ctx.step(str.title, data))
    tag = await ctx.invoke(label, source)
    ctx.set_event("stage", "waiting for review")
    review = await ctx.wait_for_callback(lambda callback_id: None, name="review",
                                         timeout=timedelta(days=1))
    return {"data": data, "length": a, "title": b, "tag": tag, "review": review}


@workflow
async def beyond_json(ctx: Context) -> dict[str, float]:
    """Returns numbers JSON has no form for: the API and the CLI must answer them alike."""
    return {"nan": float("nan"), "inf": float("-inf"), "one": 1.5}


@workflow
async def chatter(ctx: Context, words: int) -> int:
    """Streams `words` tokens from a step, then waits for the signal `more`, then streams its
    payload from workflow code and closes: a stream to follow live, across the wait."""
    def speak(n: int) -> int:
        for i in range(n):
            ctx.stream("tokens").write(f"w{i}")
        return n
    await ctx.step(speak, words)
    more = await ctx.wait_for_signal("more")
    ctx.stream("tokens").write(more)
    ctx.stream("tokens").close()
    return words


@workflow
async def stutter(ctx: Context, release: str) -> str:
    """A step whose first attempt streams two tokens, waits until the file `release` exists,
    and fails; the retry streams three and succeeds: an abandoned attempt to watch."""
    def speak() -> str:
        out = ctx.stream("tokens")
        first = not Path(release + ".tried").exists()
        Path(release + ".tried").touch()
        if first:
            out.write("lost-0")
            out.write("lost-1")
            while not Path(release).exists():
                time.sleep(0.01)
            raise RuntimeError("the first attempt fails after two tokens")
        for i in range(3):
            out.write(f"kept-{i}")
        return "ok"
    return await ctx.step(speak, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))
