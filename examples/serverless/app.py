"""A Durable workflow deployed as a serverless function.

Locally, uvicorn stands in for the cloud function host, and `durable server` invokes it only
when a run has work:

    uvicorn examples.serverless.app:app --port 9000            # the function
    durable server --port 8777                                 # the engine
    durable functions add checkout --url http://127.0.0.1:9000/checkout

On AWS Lambda, `handler` is the handler of a durable function (see README.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import durable
from durable import Context, RetryPolicy, workflow


def reserve(sku: str, quantity: int) -> str:
    return f"reservation-{sku}-{quantity}"


def charge(order_id: str, amount: int) -> str:
    return f"charge-{order_id}-{amount}"


@workflow(name="checkout")
async def checkout(ctx: Context, order: dict[str, Any]) -> dict[str, Any]:
    """Reserve, wait for a person's approval (the run holds nothing meanwhile), then charge."""
    reservation = await ctx.step(reserve, order["sku"], order["quantity"])
    approval = await ctx.create_callback(name="approval", timeout=timedelta(days=7))
    ctx.logger.info("approve with callback id %s", approval.id)
    decision = await approval.result()
    if decision != "approve":
        return {"order": order["id"], "status": "rejected"}
    await ctx.sleep(timedelta(seconds=2))  # a durable timer: no process waits on it
    payment = await ctx.step(charge, order["id"], order["amount"],
                             retry=RetryPolicy(max_attempts=5, initial_interval=1.0))
    return {"order": order["id"], "status": "charged", "reservation": reservation,
            "payment": payment}


app = durable.serve(checkout)
"""ASGI app: POST /checkout takes one invocation envelope."""

handler = durable.lambda_handler(checkout)
"""AWS Lambda handler: `examples.serverless.app.handler`."""
