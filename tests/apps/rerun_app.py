"""An order whose charge fails for a quantity over the stock: what `durable rerun --patch`
fixes. Every step body appends a line to $RERUN_EFFECTS, so a test can count executions."""

from __future__ import annotations

import os
from typing import Any

from durable import Context, RetryPolicy, step, workflow

STOCK = 5


def _effect(line: str) -> None:
    with open(os.environ["RERUN_EFFECTS"], "a") as out:
        out.write(line + "\n")


@step
def reserve(order: dict[str, Any]) -> str:
    _effect(f"reserve {order['sku']}")
    return f"hold-{order['sku']}"


@step(retry=RetryPolicy(max_attempts=1))  # out of stock stays out of stock
def charge(order: dict[str, Any], hold: str) -> int:
    _effect(f"charge {order['qty']}")
    if order["qty"] > STOCK:
        raise ValueError(f"only {STOCK} in stock, {order['qty']} ordered")
    return int(order["qty"]) * int(order["price"])


@workflow
async def order(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    hold = await reserve(order)
    total = await charge(order, hold)
    ctx.set_event("stage", "charged")
    return {"hold": hold, "total": total, "note": order.get("note")}
