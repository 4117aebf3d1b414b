"""Message passing as Temporal's samples do it, on Durable with only the imports changed.

An async signal handler puts each name on an `asyncio.Queue`; another awaits an activity before
it records its effect; a dynamic signal handler takes any other signal name, with its arguments
as `RawValue`s typed by `workflow.payload_converter()`; a task made with `asyncio.create_task`
counts the greetings under an `asyncio.Lock`; and queries (one set at run time with
`workflow.set_query_handler`) read the state.

    python examples/temporal_style/message_passing.py
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.common import RawValue
from durable.temporal.envconfig import ClientConfig
from durable.temporal.worker import Worker


@activity.defn
async def lookup_title(name: str) -> str:
    return "Dr." if name.startswith("Dr") else "Ms."


@workflow.defn
class MessagePassingWorkflow:
    def __init__(self) -> None:
        self._pending: asyncio.Queue[str] = asyncio.Queue()
        self._greeted = 0
        self._lock = asyncio.Lock()
        self._titled: list[str] = []
        self._extra: list[str] = []
        self._exit = False

    @workflow.run
    async def run(self) -> list[str]:
        workflow.set_query_handler("greeted", lambda: self._greeted)
        counter = asyncio.create_task(self._count_titles())
        greetings: list[str] = []
        while True:
            await workflow.wait_condition(lambda: not self._pending.empty() or self._exit)
            while not self._pending.empty():
                name = await self._pending.get()
                async with self._lock:
                    self._greeted += 1
                greetings.append(f"Hello, {name}")
            if self._exit:
                await workflow.wait_condition(workflow.all_handlers_finished)
                await counter
                return greetings + self._titled + self._extra

    async def _count_titles(self) -> None:
        await workflow.wait_condition(lambda: self._exit and workflow.all_handlers_finished())
        async with self._lock:
            self._greeted += len(self._titled)

    @workflow.signal
    async def submit_greeting(self, name: str) -> None:
        await self._pending.put(name)

    @workflow.signal
    async def submit_titled(self, name: str) -> None:
        title = await workflow.execute_activity(
            lookup_title, name, start_to_close_timeout=timedelta(seconds=10))
        self._titled.append(f"Hello, {title} {name}")

    @workflow.signal(dynamic=True)
    async def any_signal(self, name: str, args: Sequence[RawValue]) -> None:
        value = workflow.payload_converter().from_payload(args[0].payload, str)
        self._extra.append(f"{name}: {value}")

    @workflow.signal
    def exit(self) -> None:
        self._exit = True

    @workflow.query(dynamic=True)
    def any_query(self, name: str, args: Sequence[RawValue]) -> str:
        return f"no query {name!r} here"


async def main() -> None:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)
    async with Worker(client, task_queue="message-passing-task-queue",
                      workflows=[MessagePassingWorkflow], activities=[lookup_title]):
        handle = await client.start_workflow(
            MessagePassingWorkflow.run, id="message-passing-workflow-id",
            task_queue="message-passing-task-queue")
        await handle.signal(MessagePassingWorkflow.submit_greeting, "user1")
        await handle.signal(MessagePassingWorkflow.submit_greeting, "user2")
        await handle.signal(MessagePassingWorkflow.submit_titled, "Dr Who")
        await handle.signal("shout", "hey")
        await handle.signal(MessagePassingWorkflow.exit)
        print(f"Results: {await handle.result()}")
        print(f"Greeted: {await handle.query('greeted')}")
        print(await handle.query("anything"))


if __name__ == "__main__":
    asyncio.run(main())
