"""Workflow ids as Temporal's policies treat them. Temporal's samples start a fixed id
(`hello-activity-workflow-id`) every time they run: by default a new run may take the id of an
ended one, a running one refuses a second start, and the policies change either."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from durable import ExecutionStatus
from durable.temporal import workflow
from durable.temporal.client import Client, WorkflowAlreadyStartedError
from durable.temporal.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from durable.temporal.exceptions import ApplicationError, WorkflowFailureError
from durable.temporal.worker import Worker
from tests.test_temporal_workflows import load_example

HANG_GUARD = 60.0


@workflow.defn
class Gate:
    def __init__(self) -> None:
        self.opened = False

    @workflow.run
    async def run(self, outcome: str) -> str:
        await workflow.wait_condition(lambda: self.opened)
        if outcome == "fail":
            raise ApplicationError("asked to fail")
        return outcome

    @workflow.signal
    def open(self) -> None:
        self.opened = True


async def test_running_the_hello_sample_twice_reuses_its_fixed_id(
        monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", db_url)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
    sample = load_example("hello_activity")
    for _ in range(2):
        assert await asyncio.wait_for(sample.main(), HANG_GUARD) == "Hello, World!"


async def finish(client: Client, id: str) -> None:
    handle = client.get_workflow_handle(id)
    await handle.signal(Gate.open)
    with contextlib.suppress(WorkflowFailureError):  # the run's outcome is the test's to check
        await asyncio.wait_for(handle.result(), HANG_GUARD)


async def test_id_policies_decide_what_a_start_under_a_used_id_does(any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[Gate]):
        first = await client.start_workflow(Gate.run, "one", id="gate", task_queue="q")
        with pytest.raises(WorkflowAlreadyStartedError, match="gate"):  # running: FAIL
            await client.start_workflow(Gate.run, "two", id="gate", task_queue="q")
        same = await client.start_workflow(
            Gate.run, "ignored", id="gate", task_queue="q",
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
        await finish(client, same.id)
        assert await first.result() == "one"  # USE_EXISTING gave the running run

        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow(Gate.run, "x", id="gate", task_queue="q",
                                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
        with pytest.raises(WorkflowAlreadyStartedError):  # it succeeded
            await client.start_workflow(
                Gate.run, "x", id="gate", task_queue="q",
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        await client.start_workflow(Gate.run, "fail", id="gate", task_queue="q")  # default
        await finish(client, "gate")
        assert client.durable.get("gate").status is ExecutionStatus.FAILED
        again = await client.start_workflow(
            Gate.run, "after failure", id="gate", task_queue="q",
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
        replaced = await client.start_workflow(
            Gate.run, "replacement", id="gate", task_queue="q",
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
        await finish(client, "gate")
        assert await replaced.result() == "replacement" and again.id == "gate"
    client.durable.close()
