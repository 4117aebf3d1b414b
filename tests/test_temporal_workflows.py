"""durable.temporal: Temporal-style workflows on Durable, checked against Temporal's semantics.

Each expected value below is what Temporal's documented semantics give for the same code: signal
handlers run in order of arrival before the workflow code resumes, a query sees every signal sent
before it, `asyncio.sleep` is a durable timer, a failed activity surfaces as ActivityError with an
ApplicationError cause, and unsupported API is refused when the class is defined.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from durable import ExecutionStatus
from durable.temporal import activity, durable_workflow, workflow
from durable.temporal.client import Client, WorkflowAlreadyStartedError
from durable.temporal.common import RetryPolicy, WorkflowIDReusePolicy
from durable.temporal.exceptions import (
    ActivityError,
    ApplicationError,
    UnsupportedFeature,
    WorkflowFailureError,
)
from durable.temporal.serverless import run_async
from durable.testing import TestEnvironment

EXAMPLES = Path(__file__).parent.parent / "examples" / "temporal_style"


def load_example(name: str) -> ModuleType:
    """Import examples/temporal_style/<name>.py once, as a module of its own."""
    module_name = f"temporal_style_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


# -- the seed's greeting ---------------------------------------------------------------------------

async def test_seed_greeting_runs_five_activities_with_durable_30s_sleeps_on_the_virtual_clock(
        ) -> None:
    greeting = load_example("greeting")
    calls: list[str] = []
    original = greeting.compose_greeting

    async def counted(input: Any) -> str:
        calls.append(input.name)
        return str(await original(input))

    wf = durable_workflow(greeting.GreetingWorkflow)
    async with TestEnvironment(wf) as env:
        greeting.compose_greeting = activity.defn(name="compose_greeting")(counted)
        try:
            began = env.now
            result = await env.run(wf, "Ada", id="greet-ada")
        finally:
            greeting.compose_greeting = activity.defn(original)
        assert result == ["Hello, Ada!"] * 5
        assert calls == ["Ada"] * 5
        assert env.now - began == pytest.approx(5 * 30)  # five 30 s sleeps, none real
        ops = env.operations("greet-ada")
        assert [op.type.value for op in ops] == ["STEP", "WAIT"] * 5
        assert Counter(op.name for op in ops if op.type.value == "STEP") == {
            "compose_greeting": 5}


async def test_seed_handler_does_the_due_work_and_returns_before_the_deadline(
        tmp_path: Path) -> None:
    """The serverless entry: each call runs what is due and says when the next call has work;
    a context with little time left cuts the call short well before its deadline."""
    greeting = load_example("greeting")
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    client = Client(db)
    handle = await client.start_workflow(greeting.GreetingWorkflow.run, "Lambda", id="g",
                                         task_queue="greetings")

    class LambdaContext:
        def __init__(self, millis: int) -> None:
            self.millis = millis

        def get_remaining_time_in_millis(self) -> int:
            return self.millis

    summary = await run_async([greeting.GreetingWorkflow], [greeting.compose_greeting],
                              LambdaContext(60_000), db=db)
    assert summary["deadline_reached"] is False
    assert summary["invocations"] == 1 and summary["completed"] == 0
    run = client.durable.get(handle.id)
    assert run.status is ExecutionStatus.RUNNING
    assert summary["next_due"] == pytest.approx(run.updated_at + 30, abs=1.0)
    ops = client.durable.operations(handle.id)
    assert [(op.type.value, op.status.value) for op in ops] == [("STEP", "SUCCEEDED"),
                                                                ("WAIT", "STARTED")]
    # nothing is due now: the call returns at once, whatever time it is given
    again = await run_async([greeting.GreetingWorkflow], [greeting.compose_greeting],
                            LambdaContext(60_000), db=db)
    assert again["invocations"] == 0 and again["seconds"] < 1.0
    client.durable.close()


async def test_handler_cut_short_by_the_deadline_returns_in_time(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'durable.db'}"

    @activity.defn
    async def slow() -> str:
        await asyncio.sleep(30)
        return "late"

    @workflow.defn
    class Slow:
        @workflow.run
        async def run(self) -> str:
            return await workflow.execute_activity(slow, start_to_close_timeout=timedelta(
                minutes=1))

    client = Client(db)
    await client.start_workflow(Slow.run, id="slow", task_queue="q")

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 1500

    loop = asyncio.get_running_loop()
    began = loop.time()
    summary = await run_async([Slow], [slow], Context(), db=db)
    assert summary["deadline_reached"] is True
    assert loop.time() - began < 1.5
    assert client.durable.get("slow").status is ExecutionStatus.RUNNING
    client.durable.close()


# -- signals, queries, child workflows -------------------------------------------------------------

async def test_signals_queries_and_children_give_temporal_results() -> None:
    signals = load_example("signals")
    service, child = durable_workflow(signals.GreetingService), durable_workflow(signals.GreetOne)
    async with TestEnvironment(service, child) as env:
        client = Client(env.client)
        handle = await client.start_workflow(signals.GreetingService.run, id="svc",
                                             task_queue="q")
        await env.settle()
        assert await handle.query(signals.GreetingService.waiting) == []

        await handle.signal(signals.GreetingService.submit, "Ada")
        # Temporal answers after the run has taken the signal: the handler queued Ada and the
        # run loop took her at once, starting her child workflow.
        assert await handle.query(signals.GreetingService.waiting) == []
        await env.settle()
        assert await handle.query("greetings") == ["Hello, Ada!"]

        for name in ("Grace", "Edsger"):
            await handle.signal("submit", name)
        await handle.signal(signals.GreetingService.exit)
        assert await handle.query(signals.GreetingService.waiting) == ["Edsger"]
        result = await env.result(env.client.handle("svc"))
        assert result == ["Hello, Ada!", "Hello, Grace!", "Hello, Edsger!"]
        assert await handle.result() == result
        assert await handle.query(signals.GreetingService.greetings) == result  # after the end
        children = [r.run_id for r in env.client.list(workflow="GreetOne")]
        assert sorted(children) == ["svc-Ada", "svc-Edsger", "svc-Grace"]


@activity.defn
async def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Collector:
    """Signals that arrive during a sleep are applied before the code after it runs."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.seen_after_sleep: list[list[str]] = []

    @workflow.run
    async def run(self, rounds: int) -> list[list[str]]:
        for _ in range(rounds):
            await asyncio.sleep(60)
            self.seen_after_sleep.append(list(self.items))
        return self.seen_after_sleep

    @workflow.signal
    def add(self, item: str) -> None:
        self.items.append(item)

    @workflow.query
    def count(self, prefix: str) -> int:
        return sum(item.startswith(prefix) for item in self.items)


async def test_signals_during_sleeps_are_seen_after_them_and_replays_agree() -> None:
    wf = durable_workflow(Collector)
    async with TestEnvironment(wf) as env:
        client = Client(env.client)
        handle = await client.start_workflow(Collector.run, 3, id="c", task_queue="q")
        await env.settle()
        await handle.signal(Collector.add, "a1")
        await env.skip(30)  # mid-sleep: the handler ran, the sleep goes on
        assert await handle.query(Collector.count, "a") == 1
        await handle.signal(Collector.add, "a2")
        await env.skip(40)
        await handle.signal(Collector.add, "b1")
        result = await env.result(env.client.handle("c"))
        assert result == [["a1", "a2"], ["a1", "a2", "b1"], ["a1", "a2", "b1"]]
        assert await handle.query(Collector.count, "a") == 2
        assert await handle.query(Collector.count, "b") == 1


@workflow.defn
class Racer:
    @workflow.run
    async def run(self, wait_seconds: float) -> dict[str, Any]:
        both = await asyncio.gather(
            workflow.execute_activity(shout, "a", start_to_close_timeout=timedelta(seconds=5)),
            workflow.execute_activity(shout, "b", start_to_close_timeout=timedelta(seconds=5)))
        handles = [workflow.start_activity(shout, t, start_to_close_timeout=timedelta(
            seconds=5)) for t in ("c", "d")]
        started = [await h for h in handles]
        try:
            await asyncio.wait_for(workflow.wait_condition(lambda: False), wait_seconds)
            waited = "condition"
        except TimeoutError:
            waited = "timeout"
        quick = await asyncio.wait_for(
            workflow.execute_activity(shout, "e", start_to_close_timeout=timedelta(seconds=5)),
            timeout=3600)
        return {"gathered": both, "started": started, "waited": waited, "quick": quick,
                "uuid_version": workflow.uuid4().version,
                "random_ok": 0 <= workflow.random().random() < 1}


async def test_asyncio_gather_wait_for_and_start_activity_are_durable() -> None:
    wf = durable_workflow(Racer)
    async with TestEnvironment(wf) as env:
        began = env.now
        out = await env.run(wf, 600.0)
        assert out == {"gathered": ["A", "B"], "started": ["C", "D"], "waited": "timeout",
                       "quick": "E", "uuid_version": 4, "random_ok": True}
        assert env.now - began == pytest.approx(600)


ATTEMPTS: Counter[str] = Counter()


@activity.defn
def flaky(kind: str) -> str:
    ATTEMPTS[kind] += 1
    if kind == "fatal":
        raise ApplicationError("card declined", type="CardDeclined", non_retryable=True)
    if ATTEMPTS[kind] < 3:
        raise ConnectionError(f"{kind}: attempt {ATTEMPTS[kind]} failed")
    return f"{kind} ok after {ATTEMPTS[kind]}"


@workflow.defn
class Retrying:
    @workflow.run
    async def run(self) -> dict[str, Any]:
        policy = RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=5)
        ok = await workflow.execute_activity(flaky, "transient", retry_policy=policy,
                                             start_to_close_timeout=timedelta(seconds=5))
        try:
            await workflow.execute_activity(flaky, "fatal", retry_policy=policy,
                                            start_to_close_timeout=timedelta(seconds=5))
        except ActivityError as e:
            assert isinstance(e.cause, ApplicationError)
            fatal = f"{e.cause.type}: {e.cause.message}"
        try:
            await workflow.execute_activity(
                flaky, "named", start_to_close_timeout=timedelta(seconds=5),
                retry_policy=RetryPolicy(non_retryable_error_types=["ConnectionError"]))
        except ActivityError as e:
            named = str(e.cause)
        return {"ok": ok, "fatal": fatal, "named": named}


async def test_retry_policy_is_honoured_and_failures_arrive_as_activity_errors() -> None:
    ATTEMPTS.clear()
    wf = durable_workflow(Retrying)
    async with TestEnvironment(wf) as env:
        began = env.now
        out = await env.run(wf)
        assert out == {"ok": "transient ok after 3", "fatal": "CardDeclined: card declined",
                       "named": "named: attempt 1 failed"}
        assert ATTEMPTS == {"transient": 3, "fatal": 1, "named": 1}
        assert env.now - began == pytest.approx(10 + 20)  # Temporal's backoff, no jitter


@workflow.defn
class Failing:
    @workflow.run
    async def run(self, how: str) -> str:
        if how == "application":
            raise ApplicationError("refused", type="Refused")
        if how == "bug":
            raise KeyError("oops")
        await workflow.wait_condition(lambda: False)
        return "unreachable"


async def test_failure_semantics_match_temporal() -> None:
    """ApplicationError fails the workflow; any other exception fails only the workflow task,
    which Temporal retries until fixed code is deployed: Durable parks the run, RUNNING."""
    wf = durable_workflow(Failing)
    async with TestEnvironment(wf) as env:
        client = Client(env.client)
        failed = await client.start_workflow(Failing.run, "application", id="f1",
                                             task_queue="q")
        await env.settle()
        with pytest.raises(WorkflowFailureError) as info:
            await failed.result()
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == "Refused"

        await client.start_workflow(Failing.run, "bug", id="f2", task_queue="q")
        await env.settle()
        run = env.get("f2")
        assert run.status is ExecutionStatus.RUNNING and run.parked is not None
        assert "KeyError" in run.parked.message

        waiting = await client.start_workflow(Failing.run, "wait", id="f3", task_queue="q")
        await env.settle()
        await waiting.cancel()
        await env.settle()
        assert (await waiting.describe()).status.name == "CANCELED"
        with pytest.raises(WorkflowAlreadyStartedError):
            await client.start_workflow(Failing.run, "wait", id="f3", task_queue="q",
                                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)


@workflow.defn
class CancelAware:
    def __init__(self) -> None:
        self.cleaned = False

    @workflow.run
    async def run(self) -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await workflow.execute_activity(shout, "cleanup",
                                            start_to_close_timeout=timedelta(seconds=5))
            return "cleaned up"
        return "slept"


async def test_cancellation_arrives_as_asyncio_cancelled_error() -> None:
    wf = durable_workflow(CancelAware)
    async with TestEnvironment(wf) as env:
        client = Client(env.client)
        handle = await client.start_workflow(CancelAware.run, id="ca", task_queue="q")
        await env.settle()
        await handle.cancel()
        await env.settle()
        assert await handle.result() == "cleaned up"


# -- refused at definition time --------------------------------------------------------------------

def test_unsupported_features_fail_when_the_class_is_defined() -> None:
    with pytest.raises(UnsupportedFeature, match=r"asyncio\.as_completed"):
        @workflow.defn
        class AsCompleted:
            @workflow.run
            async def run(self) -> None:
                for done in asyncio.as_completed([asyncio.sleep(1)]):
                    await done

    with pytest.raises(UnsupportedFeature, match=r"workflow\.set_dynamic_update_handler.*"
                       r"declare each update with @workflow\.update"):
        @workflow.defn
        class UpdatesSetAtRunTime:
            @workflow.run
            async def run(self) -> None:
                workflow.set_dynamic_update_handler(lambda name, args: None)  # type: ignore[attr-defined]

    with pytest.raises(UnsupportedFeature, match="dynamic update handlers"):
        @workflow.update(dynamic=True)
        def any_update(self: object, name: str, args: object) -> None: ...

    with pytest.raises(UnsupportedFeature, match="dynamic workflows"):
        workflow.defn(dynamic=True)
