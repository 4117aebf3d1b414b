"""Signals, queries and a child workflow, Temporal-style (imports are the only difference).

A greeting service: clients `submit` names by signal and read progress by query; the workflow
greets each name through a child workflow (which calls an activity) and ends on the `exit`
signal, returning every greeting made. Signals are applied in order of arrival, queries answer
from the run's state including signals not yet processed, and a kill -9 at any moment loses
neither.

    python examples/temporal_style/signals.py
"""

import asyncio
from datetime import timedelta

from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.common import RetryPolicy
from durable.temporal.worker import Worker


@activity.defn
async def compose(greeting: str, name: str) -> str:
    return f"{greeting}, {name}!"


@workflow.defn
class GreetOne:
    @workflow.run
    async def run(self, name: str) -> str:
        return await workflow.execute_activity(
            compose, args=["Hello", name], start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3))


@workflow.defn
class GreetingService:
    def __init__(self) -> None:
        self._pending: list[str] = []
        self._greetings: list[str] = []
        self._exit = False

    @workflow.run
    async def run(self) -> list[str]:
        while True:
            await workflow.wait_condition(lambda: bool(self._pending) or self._exit)
            while self._pending:
                name = self._pending.pop(0)
                self._greetings.append(await workflow.execute_child_workflow(
                    GreetOne.run, name, id=f"{workflow.info().workflow_id}-{name}"))
            if self._exit:
                return self._greetings

    @workflow.signal
    def submit(self, name: str) -> None:
        self._pending.append(name)

    @workflow.signal
    def exit(self) -> None:
        self._exit = True

    @workflow.query
    def greetings(self) -> list[str]:
        return list(self._greetings)

    @workflow.query
    def waiting(self) -> list[str]:
        return list(self._pending)


async def main() -> None:
    client = await Client.connect()
    async with Worker(client, task_queue="greetings", workflows=[GreetingService, GreetOne],
                      activities=[compose]):
        handle = await client.start_workflow(GreetingService.run, id="greeting-service",
                                             task_queue="greetings")
        for name in ("Ada", "Grace", "Edsger"):
            await handle.signal(GreetingService.submit, name)
        print("waiting:", await handle.query(GreetingService.waiting))
        await handle.signal(GreetingService.exit)
        print("result:", await handle.result())
        print("greetings:", await handle.query(GreetingService.greetings))


if __name__ == "__main__":
    asyncio.run(main())
