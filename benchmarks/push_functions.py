"""The function host of benchmarks/push.py, served by uvicorn in its own process.

`bench` is the workflow all three modes run (embedded imports it; `durable.serve` hosts it for
push mode). `aws_bench` is the same workload written with AWS's SDK, for AWS's own `WebRunner`.
"""

from __future__ import annotations

from typing import Any

import durable
from durable import Context, workflow


async def noop() -> None:
    """The trivial step: what is measured is everything around it."""


@workflow(name="bench")
async def bench(ctx: Context, steps: int) -> int:
    for _ in range(steps):
        await ctx.step(noop)
    return steps


def _aws_handler() -> Any:
    """The workload on AWS's SDK, when it is installed (dev extras)."""
    try:
        from aws_durable_execution_sdk_python.context import DurableContext, durable_step
        from aws_durable_execution_sdk_python.execution import durable_execution
        from aws_durable_execution_sdk_python.types import StepContext
    except ImportError:
        return None

    @durable_step
    def aws_noop(step_context: StepContext) -> None:
        return None

    @durable_execution
    def aws_bench(event: Any, context: DurableContext) -> int:
        for _ in range(int(event)):
            context.step(aws_noop())
        return int(event)
    return aws_bench


aws_bench = _aws_handler()
app = durable.serve(bench, **({"aws_bench": aws_bench} if aws_bench else {}))
