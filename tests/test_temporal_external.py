"""`workflow.get_external_workflow_handle(...)`: one workflow signalling and cancelling another,
as Temporal's documentation writes it. Each signal or cancel is recorded once: the other
workflow's handler runs once however often the sender replays. Both stores, embedded and
through the serverless entry.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from durable import ExecutionStatus
from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.exceptions import ApplicationError, WorkflowFailureError
from durable.temporal.serverless import run_async
from durable.temporal.worker import Worker

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works


@workflow.defn
class Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.closed = False

    @workflow.run
    async def run(self) -> list[str]:
        try:
            await workflow.wait_condition(lambda: self.closed)
        except asyncio.CancelledError:
            self.messages.append("(cancelled)")  # clean up, then let the cancellation end it
            raise
        return self.messages

    @workflow.signal
    def deliver(self, message: str) -> None:
        self.messages.append(message)

    @workflow.signal
    def close(self) -> None:
        self.closed = True

    @workflow.query
    def received(self) -> list[str]:
        return self.messages


@activity.defn
async def note(text: str) -> str:
    return text


@workflow.defn
class Mailer:
    @workflow.run
    async def run(self, inbox_id: str) -> str:
        inbox = workflow.get_external_workflow_handle_for(Inbox.run, inbox_id)
        await inbox.signal(Inbox.deliver, "hello")
        # durable work after the signals: the sender replays past them, sending nothing again
        await workflow.execute_activity(note, "sent", start_to_close_timeout=timedelta(seconds=5))
        await workflow.get_external_workflow_handle(inbox_id).signal("deliver", args=["bye"])
        await inbox.signal(Inbox.close)
        try:
            await workflow.get_external_workflow_handle("nobody").signal("deliver", "lost")
        except ApplicationError as e:
            return f"{e.type}: {e.message}"
        return "delivered to nobody"


@workflow.defn
class Janitor:
    @workflow.run
    async def run(self, inbox_id: str) -> str:
        await workflow.get_external_workflow_handle(inbox_id).cancel()
        await workflow.execute_activity(note, "x", start_to_close_timeout=timedelta(seconds=5))
        # A durable timer: the inbox, due at once, has taken its cancellation when it fires.
        await asyncio.sleep(0.5)
        try:
            await workflow.get_external_workflow_handle(inbox_id).cancel()
        except ApplicationError as e:  # it has ended by now
            return e.type or ""
        return "cancelled twice"




async def test_a_workflow_signals_another_once_and_learns_of_a_missing_one(any_db: str) -> None:
    client = Client(any_db)
    async with Worker(client, task_queue="q", workflows=[Inbox, Mailer], activities=[note]):
        inbox = await client.start_workflow(Inbox.run, id="inbox", task_queue="q")
        outcome = await asyncio.wait_for(
            client.execute_workflow(Mailer.run, "inbox", id="mailer", task_queue="q"),
            HANG_GUARD)
        assert await asyncio.wait_for(inbox.result(), HANG_GUARD) == ["hello", "bye"]
    assert outcome.startswith("ExternalWorkflowExecutionNotFound: Unable to signal external "
                              "workflow 'nobody'")
    client.durable.close()


async def test_a_workflow_cancels_another_once_through_the_serverless_entry(db_url: str) -> None:
    client = Client(db_url)
    inbox = await client.start_workflow(Inbox.run, id="inbox", task_queue="q")
    janitor = await client.start_workflow(Janitor.run, "inbox", id="janitor", task_queue="q")
    for _ in range(10):  # each call does what is due: the janitor, the inbox, the janitor
        summary = await run_async([Inbox, Janitor], [note], db=db_url)
        if not client.durable.get("janitor").status.live:
            break
        if summary["next_due"] is not None:  # as the function's scheduler would call it again
            await asyncio.sleep(max(0.0, summary["next_due"] - time.time()))
    assert await janitor.result() == "ExternalWorkflowExecutionNotFound"
    with pytest.raises(WorkflowFailureError) as ended:
        await inbox.result()
    assert ended.value.status == "CANCELED"
    assert client.durable.get("inbox").status is ExecutionStatus.STOPPED
    client.durable.close()


def test_an_external_handle_outside_workflow_code_says_where_it_belongs() -> None:
    with pytest.raises(Exception, match="can only be used in workflow code"):
        workflow.get_external_workflow_handle("inbox")
