"""Temporal search attributes onto Durable's run attributes: set at start
(`search_attributes=`) and by `workflow.upsert_search_attributes`, in Temporal's typed and
untyped forms, and found again with Durable's run filter."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from durable.errors import UsageError
from durable.model.attributes import shown
from durable.model.listing import run_filter
from durable.temporal import workflow
from durable.temporal.client import Client
from durable.temporal.common import (
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)
from durable.temporal.worker import Worker

HANG_GUARD = 60.0
CUSTOMER = SearchAttributeKey.for_keyword("Customer")
AMOUNT = SearchAttributeKey.for_float("Amount")
STATUS = SearchAttributeKey.for_keyword("OrderStatus")
PAID_AT = SearchAttributeKey.for_datetime("PaidAt")


@workflow.defn
class Order:
    @workflow.run
    async def run(self, amount: float) -> str:
        workflow.upsert_search_attributes([STATUS.value_set("paid"),
                                           PAID_AT.value_set(datetime(2026, 12, 1, tzinfo=UTC))])
        workflow.upsert_search_attributes({"Items": [3]})  # the older, untyped form
        await workflow.sleep(0.01)  # a replay must not set them again, nor differently
        workflow.upsert_search_attributes([AMOUNT.value_set(amount * 2)])
        return "done"


async def test_search_attributes_become_run_attributes_found_by_the_filter(any_db: str) -> None:
    client = Client(any_db)
    start = TypedSearchAttributes([SearchAttributePair(CUSTOMER, "acme"),
                                   SearchAttributePair(AMOUNT, 21.0)])
    async with Worker(client, task_queue="q", workflows=[Order]):
        handle = await client.start_workflow(Order.run, 21.0, id="order-1", task_queue="q",
                                             search_attributes=start)
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == "done"
    attrs = {a.key: shown(a) for a in client.durable.attributes("order-1")}
    assert attrs == {"Customer": "acme", "Amount": 42, "OrderStatus": "paid",
                     "PaidAt": "2026-12-01T00:00:00Z", "Items": 3}
    found = client.durable.runs(run_filter(where='Customer = "acme" AND Amount >= 40',
                                           now=time.time()))
    assert [r.run_id for r in found.runs] == ["order-1"]
    client.durable.close()


async def test_search_attributes_durable_cannot_hold_are_refused_saying_why(
        db_url: str) -> None:
    client = Client(db_url)
    cases = [
        (TypedSearchAttributes([SearchAttributePair(SearchAttributeKey.for_bool("Vip"), True)]),
         "is a bool"),
        ({"Tags": ["a", "b"]}, "has 2 values"),
        ([STATUS.value_unset()], "can be replaced but not removed"),
    ]
    for given, why in cases:
        with pytest.raises(UsageError, match=why):
            await client.start_workflow(Order.run, 1.0, id="refused", task_queue="q",
                                        search_attributes=given)
    client.durable.close()
