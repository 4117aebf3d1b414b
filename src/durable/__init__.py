"""Durable: durable execution for async Python.

Write ordinary `async def` workflows of steps, durable sleeps, callbacks and signals; every
finished step is checkpointed, and after a crash, a deploy or a month-long wait the workflow
replays its log and carries on.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from durable.errors import (
    CallbackFailed,
    CallbackHeartbeatTimeout,
    CallbackNotFound,
    Cancelled,
    ChildFailed,
    ConditionNotMet,
    DurableError,
    KvTypeError,
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
from durable.model import ExecutionStatus
from durable.model.events import WebhookRequest, WebhookResponse
from durable.model.queues import Queue
from durable.model.schedule import Schedule, ScheduleInfo
from durable.sdk.callback import Callback
from durable.sdk.condition import WaitDecision, WaitStrategy
from durable.sdk.context import Context, current_context
from durable.sdk.parallel import BatchFailed, BatchItem, BatchProgress, BatchResult, Completion
from durable.sdk.retry import RetryPolicy
from durable.sdk.serializer import JsonSerializer, Serializer
from durable.sdk.workflow import Workflow, step, workflow

if TYPE_CHECKING:
    from durable.client import AsyncClient, AsyncRunHandle, Client, RunHandle, run, run_async
    from durable.engine.worker import Worker
    from durable.invoke.host import lambda_handler, serve

# What a workflow's own module needs (the SDK, the errors, the model) is imported above; the
# engine, the store, the client and the function hosts behind these names are imported when one
# of them is first looked up (`durable.Client`, `from durable import lambda_handler`), so a
# serverless function's cold start pays for its host only, never for the engine or the store.
_LAZY = {
    "AsyncClient": "durable.client",
    "AsyncRunHandle": "durable.client",
    "Client": "durable.client",
    "RunHandle": "durable.client",
    "run": "durable.client",
    "run_async": "durable.client",
    "Worker": "durable.engine.worker",
    "lambda_handler": "durable.invoke.host",
    "serve": "durable.invoke.host",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'durable' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # looked up once: later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "AsyncClient",
    "AsyncRunHandle",
    "BatchFailed",
    "BatchItem",
    "BatchProgress",
    "BatchResult",
    "Callback",
    "CallbackFailed",
    "CallbackHeartbeatTimeout",
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
    "KvTypeError",
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
    "WebhookRequest",
    "WebhookResponse",
    "Worker",
    "Workflow",
    "WorkflowFailed",
    "current_context",
    "lambda_handler",
    "run",
    "run_async",
    "serve",
    "step",
    "workflow",
]
