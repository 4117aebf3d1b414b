"""Handlers for AWS's durable-execution conformance requirements, written with AWS's SDK
(aws-durable-execution-sdk-python) from each requirement's description, as a user would write
them for Lambda. Each is registered as function `req-<id>` (requirement 1.1 is `req-1-1`);
tests/test_aws_conformance.py runs the requirement's YAML against it.

`app` hosts them all in one process (uvicorn tests.apps.conformance_functions:app).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import boto3
from aws_durable_execution_sdk_python.concurrency.models import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
)
from aws_durable_execution_sdk_python.config import (
    CallbackConfig,
    ChildConfig,
    CompletionConfig,
    Duration,
    InvokeConfig,
    JitterStrategy,
    MapConfig,
    NestingType,
    ParallelBranch,
    ParallelConfig,
    StepConfig,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.retries import (
    RetryDecision,
    RetryStrategyConfig,
    create_retry_strategy,
)
from aws_durable_execution_sdk_python.serdes import DEFAULT_JSON_SERDES, SerDes, SerDesContext
from aws_durable_execution_sdk_python.types import (
    StepContext,
    WaitForCallbackContext,
    WaitForConditionCheckContext,
)
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitForConditionDecision,
    WaitStrategyConfig,
    create_wait_strategy,
)

import durable

Handler = Callable[[Any, Any], Any]
HANDLERS: dict[str, Handler] = {}


def requirement(*ids: str) -> Callable[[Callable[[Any, DurableContext], Any]], Handler]:
    """Register the durable handler as the function of requirement(s) `ids` ("1.1")."""
    return function(*(f"req-{rid.replace('.', '-')}" for rid in ids))


def function(*names: str) -> Callable[[Callable[[Any, DurableContext], Any]], Handler]:
    """Register the durable handler under `names` (the targets the requirements invoke)."""
    def register(fn: Callable[[Any, DurableContext], Any]) -> Handler:
        handler: Handler = durable_execution(fn)
        for name in names:
            HANDLERS[name] = handler
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


# -- 3. child contexts -------------------------------------------------------------------------

def returning(value: Any) -> Callable[[StepContext], Any]:
    return lambda _: value


@requirement("3.1")
def child_one_step(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.step(returning(event)))


@requirement("3.2")
def child_named(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.step(returning(event["value"])),
                                        name=event["name"])


def _two_steps(event: Any) -> Callable[[DurableContext], Any]:
    def body(child: DurableContext) -> Any:
        first = child.step(returning(event))
        return child.step(returning(first))
    return body


@requirement("3.3")
def child_two_steps(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(_two_steps(event), name="two-steps")


@requirement("3.4")
def child_step_fails(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.step(_always_fails, config=NO_RETRY),
                                        name="failing")


@requirement("3.5")
def child_failure_caught(event: Any, context: DurableContext) -> Any:
    with contextlib.suppress(Exception):  # the SDK's ChildContextError
        context.run_in_child_context(lambda child: child.step(_always_fails, config=NO_RETRY))
    return context.step(returning(event))


def _outer(event: Any) -> Callable[[DurableContext], Any]:
    def body(outer: DurableContext) -> Any:
        outer.step(returning(event))
        return outer.run_in_child_context(lambda inner: inner.step(returning(event)),
                                          name="inner")
    return body


@requirement("3.6")
def child_nested(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(_outer(event), name="outer")


@requirement("3.7")
def child_step_retried(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(
        lambda child: child.step(failing_until(2, event), config=every_second(2)),
        name="retrying")


@requirement("3.8")
def child_step_retries_exhausted(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(
        lambda child: child.step(_always_fails, config=every_second(2)), name="exhausted")


@requirement("3.9")
def child_then_wait(event: Any, context: DurableContext) -> Any:
    value = context.run_in_child_context(lambda child: child.step(returning(event)))
    context.wait(Duration.from_seconds(1))
    return value


def _step_then_wait(event: Any) -> Callable[[DurableContext], Any]:
    def body(child: DurableContext) -> Any:
        value = child.step(returning(event))
        child.wait(Duration.from_seconds(1))
        return value
    return body


@requirement("3.10")
def child_step_and_wait(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(_step_then_wait(event), name="step-and-wait")


def _only_waits(event: Any) -> Callable[[DurableContext], Any]:
    def body(child: DurableContext) -> Any:
        child.wait(Duration.from_seconds(1))
        return event
    return body


@requirement("3.13")
def child_only_waits(event: Any, context: DurableContext) -> Any:
    value = context.run_in_child_context(_only_waits(event), name="waiting")
    return context.step(returning(value))


class Crash(BaseException):
    """Ends the invocation as a crashed Lambda runtime does (process.exit): not an Exception,
    so neither the SDK nor the host turn it into the function's error; the host answers the
    invocation with a 500, as a runtime that died would leave it unanswered. The functions
    share one host process, which a real exit would take down with them."""


CRASHED: set[str] = set()
"""The inputs whose first attempt has crashed: the next one runs to its end."""


def crash_once(event: Any, arn: str) -> Callable[[StepContext], Any]:
    """A step that, on its first run, crashes once its START is checkpointed (the SDK sends
    it in the background; the requirement is a crash after it, before the step's outcome)."""
    def run(step_context: StepContext) -> Any:
        if event in CRASHED:
            return event
        client = boto3.client("lambda")
        deadline = time.monotonic() + 30
        while not any(e["EventType"] == "StepStarted" for e in client.get_durable_execution_history(
                DurableExecutionArn=arn)["Events"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        CRASHED.add(event)
        raise Crash(f"runtime exited while running the step for {event!r}")
    return run


@requirement("3.12")
def child_interrupted(event: Any, context: DurableContext) -> Any:
    arn = context.execution_context.durable_execution_arn
    return context.run_in_child_context(lambda child: child.step(crash_once(event, arn)))


class UppercaseRaw(SerDes[str]):
    """The string itself, upper-cased: not JSON."""

    def serialize(self, value: str, serdes_context: SerDesContext) -> str:
        return value.upper()

    def deserialize(self, data: str, serdes_context: SerDesContext) -> str:
        return data


@requirement("3.14")
def child_custom_serdes(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.step(returning(event)),
                                        name="shouting", config=ChildConfig(serdes=UppercaseRaw()))


def _raises(child: DurableContext) -> None:
    raise RuntimeError("the child context failed")


@requirement("3.15")
def child_raises(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(_raises, name="raising")


@requirement("3.16")
def child_returns_none(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: None, name="empty")


@requirement("3.18")
def child_then_more(event: Any, context: DurableContext) -> Any:
    value = context.run_in_child_context(_step_then_wait(event), name="first-part")
    result = context.step(returning(value))
    context.wait(Duration.from_seconds(1))
    return result


# -- 4. callbacks ------------------------------------------------------------------------------

def seconds(n: int) -> Duration:
    return Duration.from_seconds(n)


@requirement("4.1")
def callback_named_by_input(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=event).result()


@requirement("4.2")
def callback_approval(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name="approval").result()


@requirement("4.3")
def callback_times_out(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=event, config=CallbackConfig(timeout=seconds(5))).result()


@requirement("4.4")
def callback_heartbeat_times_out(event: Any, context: DurableContext) -> Any:
    return context.create_callback(
        name=event, config=CallbackConfig(heartbeat_timeout=seconds(5))).result()


@requirement("4.5")
def callback_heartbeats(event: Any, context: DurableContext) -> Any:
    return context.create_callback(
        name=event, config=CallbackConfig(heartbeat_timeout=seconds(10))).result()


@requirement("4.6")
def callback_fails(event: Any, context: DurableContext) -> Any:
    return context.create_callback(name=event).result()


@requirement("4.7")
def callback_then_step_fails(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=event)
    context.step(returning("meanwhile"))
    return callback.result()


@requirement("4.8")
def callback_then_step_times_out(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=event, config=CallbackConfig(timeout=seconds(5)))
    context.step(returning("meanwhile"))
    return callback.result()


@requirement("4.9", "4.10")
def callback_during_wait(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=event)
    context.wait(seconds(5))
    return callback.result()


@requirement("4.11")
def callback_times_out_during_wait(event: Any, context: DurableContext) -> Any:
    callback = context.create_callback(name=event, config=CallbackConfig(timeout=seconds(3)))
    context.wait(seconds(6))
    return callback.result()


@requirement("4.12")
def callback_then_wait(event: Any, context: DurableContext) -> Any:
    result = context.create_callback(name=event).result()
    context.wait(seconds(2))
    return result


def _caught_then_wait(context: DurableContext, name: str, config: CallbackConfig | None) -> str:
    try:
        message = str(context.create_callback(name=name, config=config).result())
    except Exception as e:  # CallbackError: the failure the sender reported, or the timeout
        message = f"callback failed: {e}"
    context.wait(seconds(2))
    return message


@requirement("4.13")
def callback_failure_caught_then_wait(event: Any, context: DurableContext) -> str:
    return _caught_then_wait(context, event, None)


@requirement("4.14")
def callback_timeout_caught_then_wait(event: Any, context: DurableContext) -> str:
    return _caught_then_wait(context, event, CallbackConfig(timeout=seconds(3)))


class Received(SerDes[dict[str, Any]]):
    """The callback's JSON, its ISO timestamp made epoch seconds."""

    def serialize(self, value: dict[str, Any], serdes_context: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> dict[str, Any]:
        parsed = json.loads(data)
        stamp = datetime.fromisoformat(parsed["timestamp"].replace("Z", "+00:00"))
        return {**parsed, "timestamp": int(stamp.timestamp())}


@requirement("4.15")
def callback_custom_deserializer(event: Any, context: DurableContext) -> Any:
    return {"received": context.create_callback(
        name=event, config=CallbackConfig(serdes=Received())).result()}


class Number(SerDes[int]):
    def serialize(self, value: int, serdes_context: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> int:
        return int(json.loads(data))


@requirement("4.16")
def callback_number(event: Any, context: DurableContext) -> Any:
    count = context.create_callback(name=event, config=CallbackConfig(serdes=Number())).result()
    assert count is not None
    return {"count": count, "doubled": count * 2}


@requirement("4.17")
def callbacks_one_after_the_other(event: Any, context: DurableContext) -> Any:
    a = context.create_callback(name=event[0]).result()
    return [a, context.create_callback(name=event[1]).result()]


@requirement("4.18")
def callbacks_both_then_in_order(event: Any, context: DurableContext) -> Any:
    a, b = context.create_callback(name=event[0]), context.create_callback(name=event[1])
    return [a.result(), b.result()]


@requirement("4.19")
def callbacks_both_then_reversed(event: Any, context: DurableContext) -> Any:
    a, b = context.create_callback(name=event[0]), context.create_callback(name=event[1])
    second = b.result()
    return [a.result(), second]


# -- 5. invoke: the targets, then the callers ----------------------------------------------------

@function("echo")
def echo(event: Any, context: DurableContext) -> Any:
    return event


@function("fails")
def fails(event: Any, context: DurableContext) -> None:
    raise ValueError("the target function failed")


@function("measure")
def measure(event: Any, context: DurableContext) -> dict[str, int]:
    return {"received": len(event)}


@requirement("5.1", "5.3", "5.4")
def invoke_echo(event: Any, context: DurableContext) -> Any:
    return context.invoke("echo", event)


@requirement("5.2")
def invoke_named(event: Any, context: DurableContext) -> Any:
    return context.invoke("echo", event["payload"], name=event["name"])


@requirement("5.5")
def invoke_failing(event: Any, context: DurableContext) -> Any:
    return context.invoke("fails", event)


@requirement("5.6")
def invoke_failure_caught(event: Any, context: DurableContext) -> str:
    try:
        return context.invoke("fails", event)
    except Exception:  # the SDK's InvokeError
        return "fallback"


@requirement("5.7")
def invoke_large_payload(event: Any, context: DurableContext) -> Any:
    # Near the limit of an operation's payload (256 KiB), JSON quotes included.
    return context.invoke("measure", "x" * (250 * 1024))


@requirement("5.8")
def invoke_for_tenant(event: Any, context: DurableContext) -> Any:
    return context.invoke("echo", event["payload"],
                          config=InvokeConfig(tenant_id=event["tenantId"]))


@requirement("5.9")
def invoke_then_wait(event: Any, context: DurableContext) -> Any:
    result = context.invoke("echo", "cached")
    context.wait(Duration.from_seconds(1))
    return result


@requirement("5.10")
def invoke_failure_then_wait(event: Any, context: DurableContext) -> str:
    try:
        outcome = str(context.invoke("fails", None))
    except Exception:  # re-raised from the checkpoint on replay, without invoking again
        outcome = "caught"
    context.wait(Duration.from_seconds(1))
    return outcome


@requirement("5.11")
def step_then_invoke(event: Any, context: DurableContext) -> Any:
    value = context.step(lambda _: "from the step")
    return context.invoke("echo", value)


@requirement("5.12")
def invoke_then_step(event: Any, context: DurableContext) -> Any:
    value = context.invoke("echo", "from the target")
    return context.step(lambda _: f"processed {value}")


@requirement("5.13")
def invoke_in_child_context(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(lambda child: child.invoke("echo", "inside"))


@requirement("5.14")
def invoke_twice(event: Any, context: DurableContext) -> list[Any]:
    return [context.invoke("echo", "first"), context.invoke("echo", "second")]


class UppercaseText(SerDes[Any]):
    """The JSON text, upper-cased: on the way out (payload) or the way in (result)."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(value).upper()

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return data.upper()


@requirement("5.15")
def invoke_payload_serdes(event: Any, context: DurableContext) -> Any:
    return context.invoke("echo", event, config=InvokeConfig(serdes_payload=UppercaseText()))


@requirement("5.16")
def invoke_result_serdes(event: Any, context: DurableContext) -> Any:
    return context.invoke("echo", event, config=InvokeConfig(serdes_result=UppercaseText()))


# -- 6. wait_for_condition ----------------------------------------------------------------------

def poll_until(threshold: Any, initial: Any, delay: int = 1) -> WaitForConditionConfig[Any]:
    """Poll every `delay` seconds while the state is below `threshold`."""
    return WaitForConditionConfig(initial_state=initial, wait_strategy=create_wait_strategy(
        WaitStrategyConfig(should_continue_polling=lambda state: state < threshold,
                           initial_delay=Duration.from_seconds(delay), backoff_rate=1,
                           jitter_strategy=JitterStrategy.NONE)))


def increment(state: int, check: WaitForConditionCheckContext) -> int:
    return state + 1


@requirement("6.1")
def condition_counter(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(increment, poll_until(event, 0))


@requirement("6.2")
def condition_met_at_once(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(lambda state, _: state, poll_until(5, event))


@requirement("6.3")
def condition_named(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(increment, poll_until(event, 0), name="poll-status")


@requirement("6.4")
def condition_initial_state(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(increment, poll_until(event, 5))


@requirement("6.5")
def condition_fixed_delay(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(increment, poll_until(event, 0, delay=2))


@requirement("6.6")
def condition_never_met(event: Any, context: DurableContext) -> int:
    return context.wait_for_condition(increment, WaitForConditionConfig(
        initial_state=event, wait_strategy=create_wait_strategy(WaitStrategyConfig(
            should_continue_polling=lambda state: True, max_attempts=3,
            initial_delay=Duration.from_seconds(1), backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE))))


def _check_fails(state: Any, check: WaitForConditionCheckContext) -> Any:
    raise RuntimeError("the check failed")


@requirement("6.7")
def condition_check_fails(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(_check_fails, poll_until(1, 0))


@requirement("6.8")
def condition_check_failure_caught(event: Any, context: DurableContext) -> Any:
    try:
        return context.wait_for_condition(_check_fails, poll_until(1, 0))
    except Exception:  # the check's error, re-raised by the SDK
        return "recovered"


def _progress(state: dict[str, Any], check: WaitForConditionCheckContext) -> dict[str, Any]:
    attempts = state["attempts"] + 1
    return {"status": "DONE" if attempts >= 2 else "PENDING", "attempts": attempts}


def _stop_when_done(state: dict[str, Any], attempts: int) -> WaitForConditionDecision:
    if state["status"] == "DONE":
        return WaitForConditionDecision.stop_polling()
    return WaitForConditionDecision.continue_waiting(Duration.from_seconds(1))


@requirement("6.9")
def condition_object_state(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(_progress, WaitForConditionConfig(
        initial_state={"status": "PENDING", "attempts": 0}, wait_strategy=_stop_when_done))


def _stop(state: Any, attempts: int) -> WaitForConditionDecision:
    return WaitForConditionDecision.stop_polling()


@requirement("6.10")
def condition_null_state(event: Any, context: DurableContext) -> Any:
    return context.wait_for_condition(lambda state, _: None, WaitForConditionConfig(
        initial_state=None, wait_strategy=_stop))


class ReversedText(SerDes[str]):
    """A string state stored reversed in an object: only this serdes reads it back."""

    def serialize(self, value: str, serdes_context: SerDesContext) -> str:
        return json.dumps({"reversed": value[::-1]})

    def deserialize(self, data: str, serdes_context: SerDesContext) -> str:
        return str(json.loads(data)["reversed"])[::-1]


@requirement("6.11")
def condition_custom_serdes(event: Any, context: DurableContext) -> str:
    config = poll_until(2, "")
    return context.wait_for_condition(lambda state, _: state + "x", WaitForConditionConfig(
        initial_state="", serdes=ReversedText(),
        wait_strategy=lambda state, attempts: config.wait_strategy(len(state), attempts)))


@requirement("6.12")
def condition_then_step(event: Any, context: DurableContext) -> int:
    reached = context.wait_for_condition(increment, poll_until(event, 0))
    return context.step(lambda _: reached * 10)


@requirement("6.13")
def conditions_in_sequence(event: Any, context: DurableContext) -> int:
    first = context.wait_for_condition(increment, poll_until(2, 0))
    return context.wait_for_condition(increment, poll_until(4, first))


# -- 7. wait_for_callback ----------------------------------------------------------------------

def submit(callback_id: str, submission: WaitForCallbackContext) -> None:
    """Hands the callback id to the external system; the runner plays that system."""


@requirement("7.1", "7.4", "7.15")
def callback_waited_by_input_name(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=event)


@requirement("7.2")
def callback_waited_approval(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name="approval")


@requirement("7.3")
def callback_waited_anonymously(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(lambda callback_id, submission: None)


@requirement("7.5")
def callback_waited_times_out(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=event,
                                     config=WaitForCallbackConfig(timeout=seconds(3)))


@requirement("7.6")
def callback_waited_failure_caught(event: Any, context: DurableContext) -> Any:
    try:
        return context.wait_for_callback(submit, name=event)
    except Exception:  # CallbackError: the sender reported a failure
        return "recovered"


def _submitter_fails(callback_id: str, submission: WaitForCallbackContext) -> None:
    raise ConnectionError("could not hand the callback id over")


@requirement("7.7")
def callback_submitter_fails(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(_submitter_fails, name=event, config=WaitForCallbackConfig(
        retry_strategy=create_retry_strategy(RetryStrategyConfig(
            max_attempts=2, initial_delay=seconds(1), backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE))))


@requirement("7.8")
def callback_waited_in_child(event: Any, context: DurableContext) -> Any:
    return context.run_in_child_context(
        lambda child: child.wait_for_callback(submit, name=event), name="wrapper")


@requirement("7.9")
def callbacks_waited_in_turn(event: Any, context: DurableContext) -> Any:
    context.wait_for_callback(submit, name="first")
    return context.wait_for_callback(submit, name="second")


@requirement("7.10")
def callback_waited_after_wait_and_step(event: Any, context: DurableContext) -> Any:
    context.wait(seconds(1))
    context.step(returning({"prepared": True}))
    return context.wait_for_callback(submit, name=event)


class JsonObject(SerDes[Any]):
    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps(value)

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)


@requirement("7.11")
def callback_waited_json(event: Any, context: DurableContext) -> Any:
    answer = context.wait_for_callback(submit, name=event,
                                       config=WaitForCallbackConfig(serdes=JsonObject()))
    return answer["status"]


@requirement("7.12")
def callback_waited_heartbeat_times_out(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=event,
                                     config=WaitForCallbackConfig(heartbeat_timeout=seconds(5)))


@requirement("7.13")
def callback_waited_heartbeats(event: Any, context: DurableContext) -> Any:
    return context.wait_for_callback(submit, name=event,
                                     config=WaitForCallbackConfig(heartbeat_timeout=seconds(10)))


@requirement("7.14")
def callback_waited_timeout_caught(event: Any, context: DurableContext) -> Any:
    try:
        return context.wait_for_callback(submit, name=event,
                                         config=WaitForCallbackConfig(timeout=seconds(3)))
    except Exception:  # CallbackError: the callback timed out
        return "timed-out-handled"


# -- 8. parallel --------------------------------------------------------------------------------

Branch = Callable[[DurableContext], Any]


def const(value: Any) -> Branch:
    return lambda ctx: value


def step_of(value: Any) -> Branch:
    return lambda ctx: ctx.step(returning(value))


def _fails(ctx: DurableContext) -> Any:
    raise RuntimeError("the branch failed")


def one_at_a_time(**completion: Any) -> ParallelConfig:
    return ParallelConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def projection(batch: BatchResult[Any], *fields: str) -> dict[str, Any]:
    """What the requirements read off a batch result."""
    known = {"completionReason": batch.completion_reason.value, "status": batch.status.value,
             "successCount": batch.success_count, "failureCount": batch.failure_count,
             "totalCount": batch.total_count}
    return {f: known[f] for f in fields}


ALL = ("completionReason", "status", "successCount", "failureCount", "totalCount")
COUNTS = ("completionReason", "successCount", "failureCount", "totalCount")


@requirement("8.1")
def parallel_steps(event: Any, context: DurableContext) -> Any:
    return context.parallel([step_of("task-1"), step_of("task-2")], name="parallel",
                            config=one_at_a_time()).get_results()


@requirement("8.2")
def parallel_unnamed(event: Any, context: DurableContext) -> Any:
    return context.parallel([const("alpha"), const("beta")],
                            config=one_at_a_time()).get_results()


@requirement("8.3")
def parallel_named_branches(event: Any, context: DurableContext) -> Any:
    return context.parallel([ParallelBranch(const("one"), name="first"),
                             ParallelBranch(const("two"), name="second")],
                            name="named", config=one_at_a_time()).get_results()


@requirement("8.4")
def parallel_mixed_types(event: Any, context: DurableContext) -> Any:
    return context.parallel([const("hello"), const(42), const({"k": "v"})],
                            config=one_at_a_time()).get_results()


@requirement("8.5")
def parallel_empty(event: Any, context: DurableContext) -> Any:
    return context.parallel([], config=one_at_a_time()).get_results()


@requirement("8.6")
def parallel_fail_fast(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([const("ok"), _fails, const("never")],
                                       config=one_at_a_time(tolerated_failure_count=0)), *ALL)


@requirement("8.7")
def parallel_fail_fast_rethrown(event: Any, context: DurableContext) -> Any:
    batch = context.parallel([_fails, const("never")],
                             config=one_at_a_time(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("8.8")
def parallel_min_successful(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([const(f"b{i}") for i in range(4)],
                                       config=one_at_a_time(min_successful=2)),
                      "completionReason", "successCount", "totalCount")


@requirement("8.9")
def parallel_one_failure_tolerated(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([const("a"), _fails, const("c")],
                                       config=one_at_a_time(tolerated_failure_count=1)), *ALL)


@requirement("8.10")
def parallel_tolerance_exceeded(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([_fails, _fails, const("never")],
                                       config=one_at_a_time(tolerated_failure_count=1)), *COUNTS)


@requirement("8.11")
def parallel_concurrent(event: Any, context: DurableContext) -> Any:
    return context.parallel([const("r0"), const("r1"), const("r2")],
                            config=ParallelConfig(max_concurrency=2)).get_results()


@requirement("8.12")
def parallel_flat(event: Any, context: DurableContext) -> Any:
    return context.parallel([step_of("fa"), step_of("fb")], config=ParallelConfig(
        max_concurrency=1, nesting_type=NestingType.FLAT)).get_results()


@requirement("8.13")
def parallel_percentage_exceeded(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel(
        [_fails, _fails, const("c"), const("d")],
        config=one_at_a_time(tolerated_failure_percentage=25)), *COUNTS)


def _waits_then(value: Any) -> Branch:
    def branch(ctx: DurableContext) -> Any:
        ctx.wait(seconds(2))
        return value
    return branch


@requirement("8.14")
def parallel_branch_waits(event: Any, context: DurableContext) -> Any:
    return context.parallel([step_of("b0"), _waits_then("b1")],
                            config=one_at_a_time()).get_results()


class Wrapped(SerDes[Any]):
    """v as {"wrapped": v}, and back."""

    def serialize(self, value: Any, serdes_context: SerDesContext) -> str:
        return json.dumps({"wrapped": value})

    def deserialize(self, data: str, serdes_context: SerDesContext) -> Any:
        return json.loads(data)["wrapped"]


@requirement("8.15")
def parallel_item_serdes(event: Any, context: DurableContext) -> Any:
    return context.parallel([const("x"), const("y")], config=ParallelConfig(
        max_concurrency=1, item_serdes=Wrapped())).get_results()


@requirement("8.16")
def parallel_all_fail_tolerated(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([_fails, _fails, _fails],
                                       config=one_at_a_time(tolerated_failure_count=3)), *ALL)


@requirement("8.17")
def parallel_min_successful_missed(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel([const("a"), _fails, const("c")],
                                       config=one_at_a_time(min_successful=3)), *ALL)


@requirement("8.18")
def parallel_tolerance_before_minimum(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel(
        [_fails, _fails, const("c"), const("d")],
        config=one_at_a_time(min_successful=3, tolerated_failure_count=1)), *COUNTS)


@requirement("8.19")
def parallel_invalid_concurrency(event: Any, context: DurableContext) -> Any:
    return context.parallel([const("a"), const("b")],
                            config=ParallelConfig(max_concurrency=0)).get_results()


@requirement("8.20")
def parallel_accessors(event: Any, context: DurableContext) -> Any:
    batch = context.parallel([const("a"), _fails, const("c")],
                             config=one_at_a_time(tolerated_failure_count=1))
    return {"hasFailure": batch.has_failure, "successCount": len(batch.succeeded()),
            "failureCount": len(batch.failed()),
            "errorCount": len([e for e in batch.get_errors() if e is not None])}


def _inner(ctx: DurableContext) -> Any:
    return ctx.parallel([step_of("i1"), step_of("i2")], config=one_at_a_time()).get_results()


@requirement("8.21")
def parallel_nested(event: Any, context: DurableContext) -> Any:
    return context.parallel([_inner], config=one_at_a_time()).get_results()


@requirement("8.22")
def parallel_percentage_not_exceeded(event: Any, context: DurableContext) -> Any:
    return projection(context.parallel(
        [_fails, const("b"), const("c"), const("d")],
        config=one_at_a_time(tolerated_failure_percentage=25)), *ALL)



# -- 9. map -------------------------------------------------------------------------------------

def in_order(**completion: Any) -> MapConfig[Any]:
    """One item at a time, in index order, so the history is deterministic."""
    return MapConfig(max_concurrency=1, completion_config=CompletionConfig(**completion))


def _greet_in_step(ctx: DurableContext, item: str, index: int, items: Any) -> Any:
    return ctx.step(returning(f"Hello, {item}!"))


def _item_itself(ctx: DurableContext, item: Any, index: int, items: Any) -> Any:
    return item


def _upper_item(ctx: DurableContext, item: str, index: int, items: Any) -> str:
    return item.upper()


def _fails_on_fail(ctx: DurableContext, item: str, index: int, items: Any) -> str:
    """The item itself, except that the item "fail" fails its iteration."""
    if item == "fail":
        raise RuntimeError("the item failed")
    return item


@requirement("9.1")
def map_steps(event: Any, context: DurableContext) -> Any:
    return context.map(event, _greet_in_step, name="map", config=in_order()).get_results()


@requirement("9.2")
def map_unnamed(event: Any, context: DurableContext) -> Any:
    return context.map(event, lambda ctx, item, index, items: item * 2,
                       config=in_order()).get_results()


@requirement("9.3")
def map_with_index(event: Any, context: DurableContext) -> Any:
    return context.map(event, lambda ctx, item, index, items: item + index, name="indexed",
                       config=in_order()).get_results()


@requirement("9.4")
def map_empty(event: Any, context: DurableContext) -> Any:
    return context.map(event, _item_itself, name="empty").get_results()


@requirement("9.5")
def map_fail_fast(event: Any, context: DurableContext) -> Any:
    return projection(context.map(["ok", "fail", "never"], _fails_on_fail, name="failfast",
                                  config=in_order(tolerated_failure_count=0)), *ALL)


@requirement("9.6")
def map_fail_fast_rethrown(event: Any, context: DurableContext) -> Any:
    batch: BatchResult[str] = context.map(["fail", "never"], _fails_on_fail, name="throwing",
                        config=in_order(tolerated_failure_count=0))
    batch.throw_if_error()
    return batch.get_results()


@requirement("9.7")
def map_min_successful(event: Any, context: DurableContext) -> Any:
    return projection(context.map(["a", "b", "c", "d"], _item_itself, name="min-successful",
                                  config=in_order(min_successful=2)),
                      "completionReason", "successCount", "totalCount")


@requirement("9.8")
def map_one_failure_tolerated(event: Any, context: DurableContext) -> Any:
    return projection(context.map(["a", "fail", "c"], _fails_on_fail, name="tolerated",
                                  config=in_order(tolerated_failure_count=1)), *ALL)


@requirement("9.9")
def map_tolerance_exceeded(event: Any, context: DurableContext) -> Any:
    return projection(context.map(["fail", "fail", "never"], _fails_on_fail,
                                  name="tolerated-exceeded",
                                  config=in_order(tolerated_failure_count=1)), *COUNTS)


@requirement("9.10")
def map_percentage_exceeded(event: Any, context: DurableContext) -> Any:
    return projection(context.map(["fail", "fail", "c", "d"], _fails_on_fail,
                                  name="tolerated-pct",
                                  config=in_order(tolerated_failure_percentage=25)), *COUNTS)


@requirement("9.11")
def map_concurrent(event: Any, context: DurableContext) -> Any:
    return context.map(["r0", "r1", "r2"], _item_itself, name="concurrent",
                       config=MapConfig(max_concurrency=2)).get_results()


@requirement("9.12")
def map_flat(event: Any, context: DurableContext) -> Any:
    return context.map(["fa", "fb"], lambda ctx, item, index, items: ctx.step(returning(item)),
                       name="flat", config=MapConfig(max_concurrency=1,
                                                     nesting_type=NestingType.FLAT)).get_results()


@requirement("9.13")
def map_item_namer(event: Any, context: DurableContext) -> Any:
    return context.map(event, lambda ctx, item, index, items: item * 10, name="named-items",
                       config=MapConfig(max_concurrency=1,
                                        item_namer=lambda item, index: f"item-{item}")
                       ).get_results()


class Prefixed(SerDes[str]):
    """A string as "wrapped:<string>" (not JSON), and back."""

    PREFIX = "wrapped:"

    def serialize(self, value: str, serdes_context: SerDesContext) -> str:
        return self.PREFIX + value

    def deserialize(self, data: str, serdes_context: SerDesContext) -> str:
        return data.removeprefix(self.PREFIX)


@requirement("9.14")
def map_item_serdes(event: Any, context: DurableContext) -> Any:
    return context.map(["x", "y"], _upper_item, name="serdes", config=MapConfig(
        max_concurrency=1, item_serdes=Prefixed())).get_results()


@requirement("9.15")
def map_suspends_in_iteration(event: Any, context: DurableContext) -> Any:
    def iteration(ctx: DurableContext, item: str, index: int, items: Any) -> Any:
        if index == 1:
            ctx.wait(seconds(1))
        return ctx.step(returning(item))
    return context.map(["r0", "r1"], iteration, name="suspend", config=in_order()).get_results()


@requirement("9.16")
def map_large_result(event: Any, context: DurableContext) -> Any:
    # Four results of 70 KB: the batch (280 KB) is over the 256 KB a checkpoint holds inline.
    return projection(context.map([70 * 1024] * 4, lambda ctx, size, index, items: "x" * size,
                                  name="large", config=in_order()),
                      "successCount", "totalCount")


def _then_wait(context: DurableContext, value: Any) -> Any:
    context.wait(seconds(1))
    return value


@requirement("9.17")
def map_then_wait(event: Any, context: DurableContext) -> Any:
    batch: BatchResult[str] = context.map(["a", "b"], _upper_item, name="then-wait",
                                          config=in_order())
    return _then_wait(context, batch.get_results())


@requirement("9.18")
def map_failure_then_wait(event: Any, context: DurableContext) -> Any:
    batch: BatchResult[str] = context.map(["ok", "fail"], _fails_on_fail, name="fail-then-wait",
                        config=in_order(tolerated_failure_count=1))
    return _then_wait(context, projection(batch, *ALL))


class JoinedResults(SerDes[BatchResult[str]]):
    """A batch of string results as "OPSERDE:" and the results comma-joined; read back as a
    batch whose items all succeeded."""

    PREFIX = "OPSERDE:"

    def serialize(self, value: BatchResult[str], serdes_context: SerDesContext) -> str:
        return self.PREFIX + ",".join(value.get_results())

    def deserialize(self, data: str, serdes_context: SerDesContext) -> BatchResult[str]:
        results = data.removeprefix(self.PREFIX).split(",")
        batch: BatchResult[str] = BatchResult.from_items(
            [BatchItem(i, BatchItemStatus.SUCCEEDED, r) for i, r in enumerate(results)])
        return batch


def _joined(context: DurableContext, name: str) -> BatchResult[str]:
    return context.map(["x", "y"], _upper_item, name=name, config=MapConfig(
        max_concurrency=1, serdes=JoinedResults(), item_serdes=DEFAULT_JSON_SERDES))


@requirement("9.19")
def map_result_serdes(event: Any, context: DurableContext) -> Any:
    return _joined(context, "op-serde").get_results()


@requirement("9.20")
def map_result_serdes_replayed(event: Any, context: DurableContext) -> Any:
    return _then_wait(context, _joined(context, "op-serde-replay").get_results())


app = durable.serve(**HANDLERS)
