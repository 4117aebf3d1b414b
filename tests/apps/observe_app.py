"""Workflows for the queues and schedules pages (tests/test_ui.py): orders on a queue of one
slot that wait to be shipped, so later orders wait for admission; a schedule that ticks every two
seconds, and a nightly one that has not fired yet."""

from __future__ import annotations

from datetime import datetime, timedelta

import durable
from durable import Context, workflow

ORDERS = durable.Queue("orders", limit=1, rate="120/minute")


@workflow(name="orders.fulfil", queue=ORDERS)
async def fulfil(ctx: Context, order_id: str) -> str:
    await ctx.wait_for_signal("ship", timeout=timedelta(hours=1))
    return order_id


@workflow(name="reports.pulse", schedule="* * * * * */2")  # croniter's sixth field: seconds
async def pulse(ctx: Context, tick: datetime) -> str:
    return tick.isoformat()


@workflow(name="reports.nightly", schedule="0 3 * * *", timezone="Europe/Paris")
async def nightly(ctx: Context) -> None:
    return None
