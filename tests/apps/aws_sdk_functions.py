"""Durable functions written with AWS's SDK (aws-durable-execution-sdk-python), as a user would
write them for Lambda: nothing here knows about Durable.

`app` hosts them over HTTP (uvicorn tests.apps.aws_sdk_functions:app), each under its function
name; the SDK inside finds the backend through AWS_ENDPOINT_URL_LAMBDA alone.
"""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python.config import (
    CallbackConfig,
    Duration,
    JitterStrategy,
    StepConfig,
    StepSemantics,
    WaitForCallbackConfig,
)
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from aws_durable_execution_sdk_python.types import StepContext
from aws_durable_execution_sdk_python.waits import (
    WaitForConditionConfig,
    WaitStrategyConfig,
    create_wait_strategy,
)

import durable

RETRY_FAST = create_retry_strategy(RetryStrategyConfig(
    max_attempts=3, initial_delay=Duration.from_seconds(1), backoff_rate=1,
    jitter_strategy=JitterStrategy.NONE))


@durable_step
def flaky(step_context: StepContext, succeed_on: int) -> dict[str, int]:
    """Fails until its `succeed_on`-th attempt."""
    if step_context.attempt < succeed_on:
        raise ConnectionError(f"attempt {step_context.attempt} failed")
    return {"attempt": step_context.attempt}


@durable_execution
def steps(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    """Steps: plain, retried until they succeed, at-most-once, and one that exhausts retries."""
    first = context.step(lambda _: event["n"] * 2, name="double")
    retried = context.step(flaky(3), name="flaky",
                           config=StepConfig(retry_strategy=RETRY_FAST))
    once = context.step(lambda _: "charged", name="charge", config=StepConfig(
        step_semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY))
    try:
        context.step(flaky(99), name="doomed", config=StepConfig(retry_strategy=RETRY_FAST))
        doomed = "succeeded?"
    except Exception as e:  # StepError once retries are exhausted
        doomed = type(e).__name__
    return {"double": first, "flaky": retried, "charge": once, "doomed": doomed}


@durable_execution
def waits(event: dict[str, Any], context: DurableContext) -> str:
    before = context.step(lambda _: "before", name="before")
    context.wait(Duration.from_seconds(event.get("seconds", 2)), name="nap")
    after = context.step(lambda _: "after", name="after")
    return f"{before}-{after}"


@durable_execution
def callbacks(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    """A callback resolved from outside, and one that must heartbeat or time out."""
    approval = context.create_callback(name="approval", config=CallbackConfig(
        timeout=Duration.from_seconds(event.get("timeout", 60))))
    context.step(lambda _: approval.callback_id, name="publish")
    decision = approval.result()
    try:
        context.wait_for_callback(lambda callback_id, _: None, name="beating",
                                  config=WaitForCallbackConfig(
                                      timeout=Duration.from_seconds(60),
                                      heartbeat_timeout=Duration.from_seconds(
                                          event.get("heartbeat", 2))))
        beat = "answered"
    except Exception as e:
        beat = str(e)
    return {"decision": decision, "beat": beat}


@durable_execution
def children(event: dict[str, Any], context: DurableContext) -> list[str]:
    def block(child: DurableContext) -> list[str]:
        a = child.step(lambda _: "a", name="a")
        child.wait(Duration.from_seconds(1), name="inner-nap")
        b = child.step(lambda _: "b", name="b")
        return [a, b]
    return [*context.run_in_child_context(block, name="block"), "done"]


@durable_execution
def mapper(event: dict[str, Any], context: DurableContext) -> list[int]:
    def square(child: DurableContext, item: int, index: int, items: Any) -> int:
        return child.step(lambda _: item * item, name=f"square-{index}")
    return context.map(event["items"], square, name="squares").get_results()


@durable_execution
def fanout(event: dict[str, Any], context: DurableContext) -> list[str]:
    def branch(label: str) -> Any:
        def run(child: DurableContext) -> str:
            child.wait(Duration.from_seconds(1), name=f"{label}-nap")
            return child.step(lambda _: label.upper(), name=label)
        return run
    return context.parallel([branch("x"), branch("y"), branch("z")],
                            name="fan").get_results()


@durable_execution
def condition(event: dict[str, Any], context: DurableContext) -> int:
    """Polls until a counter reaches the target, one durable wait between polls."""
    def check(state: int, _: Any) -> int:
        return state + 1
    return context.wait_for_condition(check, config=WaitForConditionConfig(
        initial_state=0, wait_strategy=create_wait_strategy(WaitStrategyConfig(
            should_continue_polling=lambda state: state < event["target"],
            initial_delay=Duration.from_seconds(1), backoff_rate=1,
            jitter_strategy=JitterStrategy.NONE))), name="poll")


@durable_execution
def invoker(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    """Invokes another durable function and waits for its result."""
    doubled = context.invoke("doubler", {"n": event["n"]}, name="call-doubler")
    return {"got": doubled}


@durable_execution
def doubler(event: dict[str, Any], context: DurableContext) -> int:
    return int(context.step(lambda _: event["n"] * 2, name="double"))


@durable_execution
def waiter(event: dict[str, Any], context: DurableContext) -> str:
    """Waits on a timer or a callback (the idle test's function)."""
    if event.get("mode") == "callback":
        return str(context.create_callback(name="cb").result())
    context.wait(Duration.from_seconds(event["seconds"]), name="idle")
    return "woke"


@durable_execution
def failing(event: dict[str, Any], context: DurableContext) -> None:
    context.step(lambda _: "ok", name="fine")
    raise ValueError(f"bad order {event.get('order')}")


app = durable.serve(steps=steps, waits=waits, callbacks=callbacks, children=children,
                    mapper=mapper, fanout=fanout, condition=condition, invoker=invoker,
                    doubler=doubler, waiter=waiter, failing=failing)
