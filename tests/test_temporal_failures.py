"""Failures as Temporal delivers them: `ApplicationError(details..., type=, non_retryable=,
category=)` keeps all of it through the checkpoint, and a workflow failed by an activity or a
child keeps the cause chain, so the client's `WorkflowFailureError.cause` is the ActivityError
(or ChildWorkflowError) whose `.cause` is the ApplicationError raised, as in Temporal."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.common import RetryPolicy
from durable.temporal.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    ChildWorkflowError,
    WorkflowFailureError,
)
from durable.temporal.serverless import run_async
from durable.temporal.worker import Worker

HANG_GUARD = 60.0
TIMEOUT = timedelta(seconds=10)
attempts: list[str] = []


@activity.defn
async def charge(card: str) -> str:
    attempts.append(card)
    raise ApplicationError("card declined", {"code": 51, "card": card}, "retry later",
                           type="CardDeclined", non_retryable=True,
                           category=ApplicationErrorCategory.BENIGN)


@workflow.defn
class Checkout:
    @workflow.run
    async def run(self, card: str) -> dict[str, Any]:
        try:
            await workflow.execute_activity(charge, card, start_to_close_timeout=TIMEOUT,
                                            retry_policy=RetryPolicy(maximum_attempts=5))
        except ActivityError as e:
            cause = e.cause
            assert isinstance(cause, ApplicationError)
            return {"type": cause.type, "message": cause.message, "details": list(cause.details),
                    "non_retryable": cause.non_retryable, "category": cause.category.name}
        return {}


@workflow.defn
class CheckoutOrFail:
    @workflow.run
    async def run(self, card: str) -> str:
        return await workflow.execute_activity(charge, card, start_to_close_timeout=TIMEOUT)


@workflow.defn
class Order:
    @workflow.run
    async def run(self, card: str) -> str:
        return await workflow.execute_child_workflow(CheckoutOrFail.run, card,
                                                     id=f"{workflow.info().workflow_id}-pay")


CAUGHT = {"type": "CardDeclined", "message": "card declined",
          "details": [{"code": 51, "card": "4242"}, "retry later"], "non_retryable": True,
          "category": "BENIGN"}


async def test_application_error_details_category_and_non_retryable_reach_the_workflow(
        any_db: str) -> None:
    attempts.clear()
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[Checkout], activities=[charge]):
        result = await asyncio.wait_for(
            client.execute_workflow(Checkout.run, "4242", id="checkout", task_queue="q"),
            HANG_GUARD)
    assert result == CAUGHT
    assert attempts == ["4242"]  # non_retryable: one attempt of the five allowed
    client.durable.close()


def assert_declined(cause: BaseException | None) -> None:
    assert isinstance(cause, ApplicationError)
    assert (cause.type, cause.message, list(cause.details), cause.non_retryable,
            cause.category) == ("CardDeclined", "card declined", CAUGHT["details"], True,
                                ApplicationErrorCategory.BENIGN)


async def test_a_workflow_failed_by_its_activity_gives_the_client_the_cause_chain(
        any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[CheckoutOrFail], activities=[charge]):
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(client.execute_workflow(
                CheckoutOrFail.run, "4242", id="fails", task_queue="q"), HANG_GUARD)
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.activity_type == "charge"
    assert_declined(activity_error.cause)
    client.durable.close()


async def test_a_workflow_failed_by_its_child_keeps_the_chain_through_the_serverless_entry(
        db_url: str) -> None:
    client = Client(db_url)
    handle = await client.start_workflow(Order.run, "4242", id="order", task_queue="q")
    for _ in range(10):  # each call does what is due: parent, child, then parent again
        await run_async([Order, CheckoutOrFail], [charge], db=db_url)
        if not client.durable.get("order").status.live:
            break
    with pytest.raises(WorkflowFailureError) as failed:
        await handle.result()
    child_error = failed.value.cause
    assert isinstance(child_error, ChildWorkflowError)
    assert child_error.workflow_type == "CheckoutOrFail"
    activity_error = child_error.cause
    assert isinstance(activity_error, ActivityError)
    assert_declined(activity_error.cause)
    client.durable.close()
