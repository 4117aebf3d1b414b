"""Activities resolved by name, as Temporal's worker resolves them: an activity class's bound
methods registered on the worker (`workflow.execute_activity_method(Cls.method, ...)`), an
activity called by its string name, and a stub the workflow module imports whose real code is
the worker's registration. Run in `async with Worker(...)` and through the serverless entry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from durable import ExecutionStatus
from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.serverless import run_async
from durable.temporal.worker import Worker
from tests.kit import wait_until_async

HANG_GUARD = 60.0
TIMEOUT = timedelta(seconds=10)


class GreetingActivities:
    """Temporal's activity-class pattern: state (a client, a greeting) held by the instance."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.calls: list[str] = []

    @activity.defn
    async def say_hello(self, name: str) -> str:
        self.calls.append(name)
        return f"{self.greeting}, {name}!"

    @activity.defn
    def count_letters(self, text: str) -> int:
        return sum(c.isalpha() for c in text)


@activity.defn(name="shout")
async def shout_impl(text: str) -> str:
    return text.upper()


@activity.defn(name="shout")
async def shout(text: str) -> str:
    """The stub a workflow module imports; the worker registers `shout_impl` under its name.
    Defined after it, so that only the worker's registration can make the call work."""
    raise NotImplementedError("implemented by the worker")


@workflow.defn
class ByName:
    @workflow.run
    async def run(self, name: str) -> list[Any]:
        hello = await workflow.execute_activity_method(
            GreetingActivities.say_hello, name, start_to_close_timeout=TIMEOUT)
        letters = await workflow.execute_activity_method(
            GreetingActivities.count_letters, hello, start_to_close_timeout=TIMEOUT)
        by_string = await workflow.execute_activity("shout", hello,
                                                    start_to_close_timeout=TIMEOUT)
        by_stub = await workflow.execute_activity(shout, name, start_to_close_timeout=TIMEOUT)
        handle = workflow.start_activity_method(GreetingActivities.say_hello, "again",
                                                start_to_close_timeout=TIMEOUT)
        return [hello, letters, by_string, by_stub, await handle]


EXPECTED = ["Howdy, Ada!", 8, "HOWDY, ADA!", "ADA", "Howdy, again!"]


async def test_bound_methods_names_and_stubs_run_the_workers_registrations(
        any_db: str) -> None:
    client = Client(any_db)
    acts = GreetingActivities("Howdy")
    async with Worker(client, task_queue="q", workflows=[ByName],
                      activities=[acts.say_hello, acts.count_letters, shout_impl]):
        result = await asyncio.wait_for(
            client.execute_workflow(ByName.run, "Ada", id="by-name", task_queue="q"),
            HANG_GUARD)
    assert result == EXPECTED
    assert acts.calls == ["Ada", "again"]
    steps = [op.name for op in client.durable.operations("by-name") if op.type.value == "STEP"]
    assert steps == ["say_hello", "count_letters", "shout", "shout", "say_hello"]
    client.durable.close()


async def test_the_serverless_entry_runs_the_registered_activities(db_url: str) -> None:
    client = Client(db_url)
    acts = GreetingActivities("Howdy")
    handle = await client.start_workflow(ByName.run, "Ada", id="by-name", task_queue="q")
    summary = await run_async([ByName], [acts.say_hello, acts.count_letters, shout_impl],
                              db=db_url)
    assert summary["completed"] == 1
    assert await handle.result() == EXPECTED
    client.durable.close()


async def test_a_method_called_without_a_registered_instance_parks_the_run_saying_how(
        db_url: str) -> None:
    """No worker registered an instance: the run parks (Temporal fails the activity task for an
    unregistered activity) with an error naming the fix; registering one resumes it."""
    client = Client(db_url)
    handle = await client.start_workflow(ByName.run, "Ada", id="unregistered", task_queue="q")
    async with Worker(client, task_queue="q", workflows=[ByName]):
        parked = await wait_until_async(lambda: client.durable.get(handle.id).parked,
                                        "the run parked")
    assert "GreetingActivities(...).say_hello" in parked.message
    assert client.durable.get(handle.id).status is ExecutionStatus.RUNNING
    acts = GreetingActivities("Howdy")
    async with Worker(client, task_queue="q", workflows=[ByName],
                      activities=[acts.say_hello, acts.count_letters, shout_impl]):
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == EXPECTED
    client.durable.close()


def test_registrations_end_with_the_worker() -> None:
    acts = GreetingActivities("Howdy")
    with activity.registered([acts.say_hello]):
        assert activity.implementation(GreetingActivities.say_hello) == acts.say_hello
        assert activity.implementation("say_hello") == acts.say_hello
    # by the function: another test module's @activity.defn may also be named "shout"
    assert activity.implementation(shout) is shout
    assert "say_hello" not in activity.IMPLEMENTATIONS
