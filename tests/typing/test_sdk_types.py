"""What a type checker sees of the SDK: types flow from the functions a workflow calls into the
values it gets back, and a wrong argument is an error. Checked, never run, by mypy --strict and
pyright (tests/test_typing.py): each must report an error on every line marked
`# expect-error`, and on no other line."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, assert_type
from uuid import UUID

from durable import (
    BatchResult,
    Callback,
    Completion,
    Context,
    RetryPolicy,
    WaitDecision,
    WaitStrategy,
    Workflow,
    step,
    workflow,
)


@dataclass
class Order:
    id: str
    total: int


@dataclass
class Approval:
    ok: bool


@step
async def charge(order_id: str, amount: int) -> str:
    return f"{order_id}:{amount}"


@step
def reserve(sku: str, quantity: int = 1) -> bool:
    return quantity > 0


@step(retry=RetryPolicy(max_attempts=3), semantics="at_most_once")
async def label(item: str) -> bytes:
    return item.encode()


@step(name="weigh")
def weigh(item: str) -> float:
    return float(len(item))


def fetch(url: str, timeout: float = 10.0) -> dict[str, int]:
    return {url: int(timeout)}


async def fetch_async(url: str) -> list[str]:
    return [url]


def notify(callback_id: str) -> None:
    del callback_id


@workflow
async def ship(ctx: Context, order: Order) -> UUID:
    return ctx.uuid4()


@workflow
async def tick(ctx: Context) -> None:
    await ctx.sleep(1)


@workflow(name="pair", record_inputs=False)
async def pair(ctx: Context, left: int, right: str) -> tuple[int, str]:
    return left, right


@workflow
async def checkout(ctx: Context, order: Order) -> int:
    # A @step called in a workflow gives its function's result, the awaited one if async.
    assert_type(await charge(order.id, order.total), str)
    assert_type(await reserve("sku-1"), bool)
    assert_type(await label("box"), bytes)
    assert_type(await weigh("box"), float)

    # ctx.step, with a sync or an async function, a @step, defaults and options.
    assert_type(await ctx.step(fetch, "https://example.com"), dict[str, int])
    assert_type(await ctx.step(fetch, "https://example.com", 5.0, name="fetch"), dict[str, int])
    assert_type(await ctx.step(fetch_async, "u", retry=RetryPolicy()), list[str])
    assert_type(await ctx.step(charge, order.id, 5), str)
    assert_type(await ctx.step(reserve, "sku-2", 3), bool)
    assert_type(await ctx.step(lambda: 42), int)
    assert_type(await ctx.step(charge, order.id, 1, name="charge-again", timeout=30), str)

    # ctx.gather: a tuple per position to unpack; one list for many of one type; BatchResult
    # with a completion policy.
    sent, packed = await ctx.gather(charge(order.id, 1), ctx.step(weigh, "box"))
    assert_type(sent, str)
    assert_type(packed, float)
    assert_type(await ctx.gather(label("a")), tuple[bytes])
    assert_type(await ctx.gather(label("a"), charge("b", 2), reserve("c"), ctx.step(weigh, "d"),
                                 ctx.step(fetch, "e"), ctx.sleep(1)),
                tuple[bytes, str, bool, float, dict[str, int], None])
    async def branch(item: str) -> int:  # a branch of several operations
        await ctx.sleep(1)
        return len(await label(item))

    assert_type(await ctx.gather(branch("a"), label("b")), tuple[int, bytes])
    labels = [label(item) for item in ("a", "b", "c")]
    assert_type(await ctx.gather(*labels), list[bytes])
    assert_type(await ctx.gather(*labels, completion=Completion.every()), BatchResult[bytes])

    # ctx.map: a BatchResult of the function's result.
    weights = await ctx.map(weigh, ["a", "b"], max_concurrency=2)
    assert_type(weights, BatchResult[float])
    assert_type(weights.results, list[float])
    assert_type(weights[0], float | None)
    assert_type(await ctx.map(label, ["a"]), BatchResult[bytes])
    assert_type(await ctx.map(fetch_async, ("a", "b")), BatchResult[list[str]])

    # Child workflows give the child's result; by name, the type is not known here.
    assert_type(await ctx.invoke(ship, order), UUID)
    assert_type(await ctx.invoke(tick, id="tick-1"), None)
    assert_type(await ctx.invoke(pair, 1, "one", tenant_id="t"), tuple[int, str])
    assert_type(await ctx.invoke("charge", {"id": order.id}), Any)
    assert_type(await ctx.start_child(ship, order, id="ship-1"), str)
    assert_type(await ctx.start_child("charge"), str)

    # Callbacks and signals: typed by the class they are decoded as, else JSON (Any).
    assert_type(await ctx.wait_for_signal("approve", type_hint=Approval), Approval)
    assert_type(await ctx.wait_for_signal("approve"), Any)
    assert_type(await ctx.wait_for_callback(notify, type_hint=Approval), Approval)
    callback = await ctx.create_callback(name="approval")
    assert_type(callback, Callback)
    assert_type(await callback.result(Approval), Approval)
    assert_type(await callback.result(), Any)

    # wait_for_condition: the state's type, from the initial state through check and strategy.
    def stop_at_three(state: int, polls: int) -> WaitDecision:
        return WaitDecision.stop_polling() if state >= 3 else WaitDecision.continue_waiting(1)

    assert_type(await ctx.wait_for_condition(lambda n: n + 1, initial_state=0,
                                             wait_strategy=stop_at_three), int)

    async def poll(state: dict[str, bool]) -> dict[str, bool]:
        return {"done": not state["done"]}

    until_done = WaitStrategy[dict[str, bool]](lambda state: not state["done"], max_attempts=5)
    assert_type(await ctx.wait_for_condition(poll, initial_state={"done": False},
                                             wait_strategy=until_done), dict[str, bool])

    # Recorded values.
    assert_type(ctx.now(), datetime)
    assert_type(ctx.random(), float)
    assert_type(ctx.uuid4(), UUID)
    return order.total


def takes_order_workflows(wf: Workflow[[Order], UUID]) -> None:
    del wf


def the_workflow_objects_keep_their_signature() -> None:
    takes_order_workflows(ship)
    assert_type(ship.decode_result(None), UUID)


# -- what must not type-check ----------------------------------------------------------------

@workflow
async def mistakes(ctx: Context, order: Order) -> None:
    await charge(order.id, "ten")  # expect-error
    await charge(order.id)  # expect-error
    await ctx.step(fetch, 17)  # expect-error
    await ctx.step(fetch)  # expect-error
    await ctx.invoke(ship, "order-17")  # expect-error
    await ctx.invoke(ship)  # expect-error
    await ctx.invoke(pair, "1", "one")  # expect-error
    await ctx.invoke("charge", 1, 2)  # expect-error
    await ctx.map(weigh, [1, 2])  # expect-error
    await ctx.wait_for_condition(lambda n: n + 1, initial_state="0",  # expect-error
                                 wait_strategy=lambda state, polls: WaitDecision.stop_polling())
    await ctx.gather(charge(order.id, 1), completion="every")  # expect-error
    wrong: str = await ctx.invoke(ship, order)  # expect-error
    del wrong


@workflow  # expect-error
async def no_context() -> None: ...
