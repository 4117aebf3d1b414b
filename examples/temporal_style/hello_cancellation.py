"""Temporal's hello-cancellation sample as its samples write it, imports changed only: a sync
activity that heartbeats forever on a thread pool, a workflow that runs a cleanup activity
however that one ends, and a client that cancels the workflow.

    python examples/temporal_style/hello_cancellation.py

The workflow's cancellation reaches the running activity through its heartbeat: the next
`activity.heartbeat()` raises `CancelledError`, the cleanup activity runs, and the client's
`result()` raises `WorkflowFailureError`.
"""

import asyncio
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import NoReturn

from durable.temporal import activity, workflow
from durable.temporal.client import Client, WorkflowFailureError
from durable.temporal.envconfig import ClientConfig
from durable.temporal.exceptions import CancelledError
from durable.temporal.worker import Worker


@activity.defn
def never_complete_activity() -> NoReturn:
    # All long-running activities should heartbeat. Heartbeat is how
    # cancellation is delivered from the server.
    try:
        while True:
            print("Heartbeating activity")
            activity.heartbeat()
            time.sleep(1)
    except CancelledError:
        print("Activity cancelled")
        raise


@activity.defn
def cleanup_activity() -> None:
    print("Executing cleanup activity")


@workflow.defn
class CancellationWorkflow:
    @workflow.run
    async def run(self) -> None:
        # Execute the forever running activity, and do a cleanup activity when
        # it is complete (on error or cancel)
        try:
            await workflow.execute_activity(
                never_complete_activity,
                start_to_close_timeout=timedelta(seconds=1000),
                # Always set a heartbeat timeout for long-running activities
                heartbeat_timeout=timedelta(seconds=2),
            )
        finally:
            await workflow.execute_activity(
                cleanup_activity, start_to_close_timeout=timedelta(seconds=5)
            )


async def main(workflow_id: str = "hello-cancellation-workflow-id") -> None:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)

    async with Worker(
        client,
        task_queue="hello-cancellation-task-queue",
        workflows=[CancellationWorkflow],
        activities=[never_complete_activity, cleanup_activity],
        activity_executor=ThreadPoolExecutor(5),
    ):
        # While the worker is running, use the client to start the workflow.
        # Note, in many production setups, the client would be in a completely
        # separate process from the worker.
        handle = await client.start_workflow(
            CancellationWorkflow.run,
            id=workflow_id,
            task_queue="hello-cancellation-task-queue",
        )

        # Now that we've started, wait a couple of seconds then cancel it
        await asyncio.sleep(2)
        await handle.cancel()

        # Now wait on the result which we expect will fail since it was
        # cancelled
        try:
            await handle.result()
            raise RuntimeError("Should not succeed")
        except WorkflowFailureError:
            print("Got expected exception: ", traceback.format_exc())


if __name__ == "__main__":
    asyncio.run(main())
