"""The seed's greeting, Temporal-style: only the import lines differ from the Temporal version.

An activity composes a greeting; the workflow calls it five times with a 30-second
`asyncio.sleep` between calls. On Durable each greeting is a checkpointed step and each sleep a
durable timer: kill the process during a sleep and the next one carries on at the original due
time, without composing the greetings already made again. `handler` is the serverless entry, the
body of an AWS Lambda handler (or any function a scheduler calls): each call does the work that
is due and returns before the invocation's deadline.

Run it here (about two minutes: the sleeps are real):

    python examples/temporal_style/greeting.py [NAME]

The Temporal version, for comparison, differs in these lines only:

    from temporalio import activity, workflow
    from <the seed's serverless SDK> import run
"""

import asyncio
import sys
import time
from dataclasses import dataclass
from datetime import timedelta

from durable.temporal import activity, workflow
from durable.temporal.serverless import run


@dataclass
class ComposeGreetingInput:
    greeting: str
    name: str


@activity.defn
async def compose_greeting(input: ComposeGreetingInput) -> str:
    activity.logger.info("Running activity with parameter %s", input)
    return f"{input.greeting}, {input.name}!"


@workflow.defn
class GreetingWorkflow:
    @workflow.run
    async def run(self, name: str) -> list[str]:
        workflow.logger.info("Running workflow with parameter %s", name)
        greetings = []
        for _ in range(5):
            greeting = await workflow.execute_activity(
                compose_greeting,
                ComposeGreetingInput("Hello", name),
                start_to_close_timeout=timedelta(seconds=10),
            )
            workflow.logger.info(greeting)
            greetings.append(greeting)
            await asyncio.sleep(30)
        return greetings


def handler(event, context):
    return run(workflows=[GreetingWorkflow], activities=[compose_greeting], context=context)


def main(name: str) -> None:
    """Start one run, then call the handler as a scheduler would: whenever work is due."""
    from durable.temporal.client import Client

    async def start() -> str:
        client = await Client.connect()
        handle = await client.start_workflow(GreetingWorkflow.run, name,
                                             id=f"greeting-{name}-{int(time.time())}",
                                             task_queue="greetings")
        return handle.id

    run_id = asyncio.run(start())
    while True:
        summary = handler({}, None)
        print(summary, file=sys.stderr)
        if summary["next_due"] is None:
            break
        time.sleep(max(summary["next_due"] - time.time(), 0))
    import durable

    print(durable.Client().result(run_id))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "World")
