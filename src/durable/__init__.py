"""Durable: durable execution for async Python.

Write ordinary `async def` workflows of steps, durable sleeps, callbacks and signals; every
finished step is checkpointed, and after a crash, a deploy or a month-long wait the workflow
replays its log and carries on.
"""

from durable.client import Client, RunHandle, run, run_async
from durable.engine.worker import Worker
from durable.errors import (
    CallbackFailed,
    CallbackNotFound,
    Cancelled,
    ChildFailed,
    ConditionNotMet,
    DurableError,
    NonDeterminismError,
    RunNotFound,
    SerializationError,
    StepFailed,
    StepInterrupted,
    StepTimeout,
    StoreUnusable,
    UsageError,
    WaitTimeout,
    WorkflowFailed,
)
from durable.invoke.host import lambda_handler, serve
from durable.model import ExecutionStatus
from durable.model.queues import Queue
from durable.model.schedule import Schedule, ScheduleInfo
from durable.sdk.callback import Callback
from durable.sdk.condition import WaitDecision, WaitStrategy
from durable.sdk.context import Context
from durable.sdk.parallel import BatchFailed, BatchItem, BatchResult, Completion
from durable.sdk.retry import RetryPolicy
from durable.sdk.serializer import JsonSerializer, Serializer
from durable.sdk.workflow import Workflow, step, workflow

__all__ = [
    "BatchFailed",
    "BatchItem",
    "BatchResult",
    "Callback",
    "CallbackFailed",
    "CallbackNotFound",
    "Cancelled",
    "ChildFailed",
    "Client",
    "Completion",
    "ConditionNotMet",
    "Context",
    "DurableError",
    "ExecutionStatus",
    "JsonSerializer",
    "NonDeterminismError",
    "Queue",
    "RetryPolicy",
    "RunHandle",
    "RunNotFound",
    "Schedule",
    "ScheduleInfo",
    "SerializationError",
    "Serializer",
    "StepFailed",
    "StepInterrupted",
    "StepTimeout",
    "StoreUnusable",
    "UsageError",
    "WaitDecision",
    "WaitStrategy",
    "WaitTimeout",
    "Worker",
    "Workflow",
    "WorkflowFailed",
    "lambda_handler",
    "run",
    "run_async",
    "serve",
    "step",
    "workflow",
]
