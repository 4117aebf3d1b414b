"""Temporal's hello-activity sample as its samples write it, imports changed only: connection
settings from `envconfig` (a TOML profile and TEMPORAL_* variables), a worker in `async with`,
a sync activity on a thread pool.

    python examples/temporal_style/hello_activity.py
    TEMPORAL_ADDRESS=postgresql://localhost/durable python examples/temporal_style/hello_activity.py

`localhost:7233`, the sample's default address, names no Durable database: DURABLE_DB or the
embedded default (.durable/durable.db) is used. A database URL in TEMPORAL_ADDRESS (or in the
profile's `address`) names that database.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from durable.temporal import activity, workflow
from durable.temporal.client import Client
from durable.temporal.envconfig import ClientConfig
from durable.temporal.worker import Worker


@dataclass
class ComposeGreetingInput:
    greeting: str
    name: str


@activity.defn
def compose_greeting(input: ComposeGreetingInput) -> str:
    activity.logger.info("Running activity with parameter %s", input)
    return f"{input.greeting}, {input.name}!"


@workflow.defn
class HelloActivityWorkflow:
    @workflow.run
    async def run(self, name: str) -> str:
        workflow.logger.info("Running workflow with parameter %s", name)
        return await workflow.execute_activity(
            compose_greeting,
            ComposeGreetingInput("Hello", name),
            start_to_close_timeout=timedelta(seconds=10),
        )


async def main(workflow_id: str = "hello-activity-workflow-id") -> str:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)

    async with Worker(
        client,
        task_queue="hello-activity-task-queue",
        workflows=[HelloActivityWorkflow],
        activities=[compose_greeting],
        activity_executor=ThreadPoolExecutor(5),
    ):
        result = await client.execute_workflow(
            HelloActivityWorkflow.run,
            "World",
            id=workflow_id,
            task_queue="hello-activity-task-queue",
        )
        print(f"Result: {result}")
        return str(result)


if __name__ == "__main__":
    asyncio.run(main())
