"""Handlers for AWS's durable-execution conformance requirements, written with AWS's SDK
(aws-durable-execution-sdk-python) from each requirement's description, as a user would write
them for Lambda. Each is registered as function `req-<id>` (requirement 1.1 is `req-1-1`);
tests/test_aws_conformance.py runs the requirement's YAML against it.

`app` hosts them all in one process (uvicorn tests.apps.conformance_functions:app).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_durable_execution_sdk_python.config import Duration, JitterStrategy, StepConfig
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.retries import (
    RetryDecision,
    RetryStrategyConfig,
    create_retry_strategy,
)
from aws_durable_execution_sdk_python.serdes import SerDes, SerDesContext
from aws_durable_execution_sdk_python.types import StepContext

import durable

Handler = Callable[[Any, Any], Any]
HANDLERS: dict[str, Handler] = {}


def requirement(*ids: str) -> Callable[[Callable[[Any, DurableContext], Any]], Handler]:
    """Register the durable handler as the function of requirement(s) `ids` ("1.1")."""
    def register(fn: Callable[[Any, DurableContext], Any]) -> Handler:
        handler: Handler = durable_execution(fn)
        for rid in ids:
            HANDLERS[f"req-{rid.replace('.', '-')}"] = handler
        return handler
    return register


class TransientError(Exception):
    """An error worth retrying (requirements 1.15 and 1.16)."""


NO_RETRY = StepConfig(retry_strategy=create_retry_strategy(RetryStrategyConfig(max_attempts=1)))


def every_second(attempts: int) -> StepConfig:
    return StepConfig(retry_strategy=create_retry_strategy(RetryStrategyConfig(
        max_attempts=attempts, initial_delay=Duration.from_seconds(1), backoff_rate=1,
        jitter_strategy=JitterStrategy.NONE)))


def failing_until(success_attempt: int, result: Any,
                  error: type[Exception] = RuntimeError) -> Callable[[StepContext], Any]:
    """A step function that fails each attempt before `success_attempt`."""
    def run(step_context: StepContext) -> Any:
        if step_context.attempt < success_attempt:
            raise error(f"attempt {step_context.attempt} failed")
        return result
    return run


# -- 1. step ------------------------------------------------------------------------------------

@durable_step
def greet(step_context: StepContext, name: str) -> str:
    return f"Hello, {name}!"


@requirement("1.1")
def step_basic(event: Any, context: DurableContext) -> str:
    return context.step(greet(event))


@requirement("1.2")
def step_named(event: Any, context: DurableContext) -> str:
    return context.step(greet(event), name="custom_step_name")


@requirement("1.3")
def step_chained(event: Any, context: DurableContext) -> str:
    first = context.step(lambda _: "first")
    return context.step(lambda _: f"{first}_second")


@requirement("1.4")
def step_nested_result(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: {"user": {"name": event["name"], "tags": event["tags"]},
                                   "count": len(event["tags"])})


@requirement("1.5")
def step_none(event: Any, context: DurableContext) -> None:
    return context.step(lambda _: None)


class UppercaseSerDes(SerDes[Any]):
    """Serializes every string in the value upper-cased."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(_upper(value))

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list):
        return [_upper(v) for v in value]
    if isinstance(value, dict):
        return {k: _upper(v) for k, v in value.items()}
    return value


@requirement("1.6")
def step_custom_serdes(event: Any, context: DurableContext) -> Any:
    return context.step(lambda _: event, config=StepConfig(serdes=UppercaseSerDes()))


@requirement("1.8")
def step_then_wait(event: Any, context: DurableContext) -> str:
    value = context.step(lambda _: "computed")
    context.wait(Duration.from_seconds(2))
    return value


@requirement("1.9")
def step_replayed_from_checkpoint(event: Any, context: DurableContext) -> str:
    value = context.step(lambda _: "cached_value")
    context.wait(Duration.from_seconds(1))
    return value


def _always_fails(_: StepContext) -> None:
    raise RuntimeError("this step always fails")


@requirement("1.10")
def step_failure_replayed(event: Any, context: DurableContext) -> str:
    try:
        context.step(_always_fails, config=NO_RETRY)
    except Exception as e:  # the SDK's StepError, re-raised from the checkpoint on replay
        caught = type(e).__name__
    context.wait(Duration.from_seconds(1))
    return caught


@requirement("1.11")
def step_retried_once(event: Any, context: DurableContext) -> str:
    return context.step(failing_until(2, "Operation succeeded"), config=every_second(3))


@requirement("1.12")
def step_retries_exhausted(event: Any, context: DurableContext) -> None:
    context.step(_always_fails, config=every_second(4))


@requirement("1.13")
def step_default_retries(event: Any, context: DurableContext) -> str:
    return context.step(failing_until(3, "third time"))


@requirement("1.14")
def step_backoff(event: Any, context: DurableContext) -> str:
    return context.step(failing_until(3, "third time"), config=StepConfig(
        retry_strategy=create_retry_strategy(RetryStrategyConfig(
            max_attempts=5, initial_delay=Duration.from_seconds(2), backoff_rate=3,
            jitter_strategy=JitterStrategy.NONE))))


@requirement("1.15")
def step_retry_by_error_type(event: Any, context: DurableContext) -> str:
    return context.step(failing_until(2, "recovered", TransientError), config=StepConfig(
        retry_strategy=create_retry_strategy(RetryStrategyConfig(
            max_attempts=3, initial_delay=Duration.from_seconds(1), backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE, retryable_error_types=[TransientError]))))


def _retry_unless_transient(error: Exception, attempts_made: int) -> RetryDecision:
    if isinstance(error, TransientError) or attempts_made >= 3:
        return RetryDecision.no_retry()
    return RetryDecision.retry(Duration.from_seconds(1))


@requirement("1.16")
def step_no_retry_by_error_type(event: Any, context: DurableContext) -> str:
    return context.step(failing_until(2, "recovered", TransientError),
                        config=StepConfig(retry_strategy=_retry_unless_transient))


@requirement("1.19")
def step_fails_without_retry(event: Any, context: DurableContext) -> None:
    context.step(_always_fails, config=NO_RETRY)


@requirement("1.20")
def step_failure_caught(event: Any, context: DurableContext) -> str:
    try:
        return context.step(_always_fails, config=NO_RETRY)
    except Exception:  # the step's error, caught by user code
        return context.step(lambda _: "fallback_result")


# -- 2. wait ------------------------------------------------------------------------------------

@requirement("2.1")
def wait_basic(event: Any, context: DurableContext) -> None:
    context.wait(Duration.from_seconds(2))


@requirement("2.2")
def wait_named(event: Any, context: DurableContext) -> None:
    context.wait(Duration.from_seconds(2), name="custom_wait_name")


@requirement("2.3")
def wait_twice(event: Any, context: DurableContext) -> dict[str, int]:
    context.wait(Duration.from_seconds(2), name="wait-1")
    context.wait(Duration.from_seconds(2), name="wait-2")
    return {"completedWaits": 2}


@requirement("2.4")
def wait_minutes(event: Any, context: DurableContext) -> None:
    context.wait(Duration.from_minutes(1))


@requirement("2.5")
def wait_hours(event: Any, context: DurableContext) -> None:
    context.wait(Duration.from_hours(1))


app = durable.serve(**HANDLERS)
