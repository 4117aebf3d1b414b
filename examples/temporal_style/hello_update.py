"""Temporal's hello-update sample as its samples write it, imports changed only: the workflow
waits until an update handler says it is complete; the client sends the update, prints what
the handler returned, then the workflow's result.

    python examples/temporal_style/hello_update.py

The update is a message recorded with the run: the caller waits for the handler's result on
the store's commit notifications, across worker restarts (see docs/guides/temporal.md).
"""

import asyncio

from durable.temporal import workflow
from durable.temporal.client import Client
from durable.temporal.envconfig import ClientConfig
from durable.temporal.worker import Worker


@workflow.defn
class HelloUpdateWorkflow:
    def __init__(self) -> None:
        self.is_complete = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.is_complete)
        return "Hello, World!"

    @workflow.update
    async def update_workflow_status(self) -> str:
        self.is_complete = True
        return "Workflow status updated"


async def main(workflow_id: str = "update-workflow-id") -> tuple[str, str]:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)

    # Run a worker for the workflow
    async with Worker(
        client,
        task_queue="update-workflow-task-queue",
        workflows=[HelloUpdateWorkflow],
    ):
        # While the worker is running, use the client to start the workflow.
        # Note that the workflow does not complete until it receives the update.
        handle = await client.start_workflow(
            HelloUpdateWorkflow.run,
            id=workflow_id,
            task_queue="update-workflow-task-queue",
        )

        # Send the update and wait for the handler's result.
        update_result = await handle.execute_update(HelloUpdateWorkflow.update_workflow_status)
        print(f"Update Result: {update_result}")

        # Get the result of the workflow.
        result = await handle.result()
        print(f"Workflow Result: {result}")
        return update_result, result


if __name__ == "__main__":
    asyncio.run(main())
