"""Failures in Temporal's wire form: `WorkflowFailureError.failure` (and every failure's
`.failure`) shaped as `temporalio.api.failure.v1.Failure`, read as Temporal code reads it; and
`WorkflowAlreadyStartedError` carrying Temporal's attributes."""

from __future__ import annotations

import asyncio
import json

import pytest

from durable.temporal.client import Client
from durable.temporal.exceptions import (
    ApplicationError,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
)
from durable.temporal.worker import Worker
from tests.test_temporal_failures import CAUGHT, CheckoutOrFail, Order, charge

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works


async def test_the_client_failure_carries_the_chain_in_temporals_failure_form(
        any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[Order, CheckoutOrFail],
                      activities=[charge]):
        with pytest.raises(WorkflowFailureError) as failed:
            await asyncio.wait_for(client.execute_workflow(Order.run, "4242", id="order",
                                                           task_queue="q"), HANG_GUARD)
        with pytest.raises(WorkflowAlreadyStartedError) as taken:
            await client.start_workflow(Order.run, "4242", id="order", task_queue="q",
                                        id_reuse_policy=3)  # REJECT_DUPLICATE
    failure = failed.value.failure
    assert failure.WhichOneof("failure_info") == "child_workflow_execution_failure_info"
    child = failure.child_workflow_execution_failure_info
    assert child is not None
    assert (child.workflow_type.name, child.workflow_execution.workflow_id) == (
        "CheckoutOrFail", "order-pay")

    activity = failure.cause
    assert activity is not None and activity.HasField("activity_failure_info")
    assert activity.activity_failure_info is not None
    assert activity.activity_failure_info.activity_type.name == "charge"

    root = activity.cause
    assert root is not None and root.cause is None and not root.HasField("cause")
    info = root.application_failure_info
    assert info is not None
    assert (root.message, info.type, info.non_retryable, info.category) == (
        "card declined", "CardDeclined", True, 1)
    assert info.details is not None
    assert [json.loads(p.data) for p in info.details.payloads] == CAUGHT["details"]
    assert {p.metadata["encoding"] for p in info.details.payloads} == {b"json/plain"}
    assert "in charge" in root.stack_trace  # where the activity raised it
    assert failed.value.cause is not None
    assert failed.value.cause.failure == failure  # the workflow's failure is its cause's

    assert (taken.value.workflow_id, taken.value.workflow_type, taken.value.run_id) == (
        "order", "Order", "order")
    client.durable.close()


def test_an_exception_raised_here_has_its_failure_form_too() -> None:
    error = ApplicationError("out of stock", {"sku": "A1"}, type="OutOfStock")
    failure = error.failure
    assert failure.application_failure_info is not None
    assert failure.application_failure_info.type == "OutOfStock"
    assert failure.source == "PythonSDK" and failure.stack_trace == ""
    with pytest.raises(ValueError, match='no "bogus" field'):
        failure.HasField("bogus")
