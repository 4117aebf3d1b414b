"""Plain functions made durable: `@workflow(auto=True)` (each call leaving the project a step,
clock, randomness and sleeps recorded) and `@workflow(durable=False)` (the whole function one
step), sync and async, on both stores. The crash paths are in tests/test_crash_vanilla.py."""

from __future__ import annotations

import asyncio
import collections
import json
import random
import re
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
import pytest

import durable
from durable.errors import UsageError, WorkflowFailed
from durable.model import Operation, OperationStatus, OperationType
from durable.sdk import vanilla
from durable.testing import TestEnvironment
from tests.apps import vanilla_ext as ext
from tests.apps import vanilla_helpers
from tests.kit import wait_until_async

EXT = ["tests.apps.vanilla_ext"]


@pytest.fixture(autouse=True)
def calls() -> Iterator[list[str]]:
    ext.CALLS.clear()
    yield ext.CALLS


def receipt_line(charge_id: str) -> str:
    """The user's own code: runs inline, and its call to the service is a step too."""
    ext.notify(f"paid {charge_id}")
    return f"receipt for {charge_id}"


@durable.workflow(name="vanilla-sync-order", auto=True, external=EXT)
def sync_order(account: str, amounts: list[int]) -> list[str]:
    lines = []
    for amount in amounts:
        charge_id = ext.charge(account, amount)
        time.sleep(3600)  # durable: the run suspends, the thread is let go
        lines.append(receipt_line(charge_id))
    return lines


@durable.workflow(name="vanilla-async-order", auto=True, external=EXT)
async def async_order(key: str) -> dict[str, Any]:
    await asyncio.sleep(0)  # a yield to the loop, not a timer
    fetched = await ext.fetch(key)
    await asyncio.sleep(600)
    charge_id = ext.charge(key, len(fetched["value"]))
    return {"fetched": fetched, "receipt": receipt_line(charge_id)}


@durable.workflow(name="vanilla-nested", auto=True, external=EXT)
async def nested(accounts: list[str]) -> list[str]:
    def tell(account: str) -> None:
        ext.notify(account)

    charged = [ext.charge(a, 1) for a in accounts]
    for account in accounts:
        tell(account)
    loud = sorted(accounts, key=lambda a: a.upper())
    return charged + loud


def test_nested_functions_lambdas_and_comprehensions_of_a_workflow_are_routed(
        any_db: str, calls: list[str]) -> None:
    result, ops = _run(any_db, nested, ["b", "a"])
    assert result == ["ch-b-1", "ch-a-1", "a", "b"]
    assert calls == ["charge b 1", "charge a 1", "notify b", "notify a"]
    assert _steps(ops) == ["tests.apps.vanilla_ext.charge"] * 2 + [
        "tests.apps.vanilla_ext.notify"] * 2


def _run(db: str, wf: durable.Workflow[..., Any], *args: Any) -> tuple[Any, list[Operation]]:
    async def scenario() -> tuple[Any, list[Operation]]:
        async with TestEnvironment(wf, db=db) as env:
            handle = env.start(wf, *args)
            result = await env.result(handle)
            return result, env.operations(handle.run_id)
    return asyncio.run(scenario())


def _steps(ops: list[Operation]) -> list[str | None]:
    return [op.name for op in ops if op.type is OperationType.STEP]


def test_a_sync_plain_workflow_runs_each_external_call_once_across_durable_sleeps(
        any_db: str, calls: list[str]) -> None:
    result, ops = _run(any_db, sync_order, "alice", [5, 7])
    assert result == ["receipt for ch-alice-5", "receipt for ch-alice-7"]
    # Every sleep ended an invocation, and each replay answered the earlier calls from history.
    assert calls == ["charge alice 5", "notify paid ch-alice-5", "charge alice 7",
                     "notify paid ch-alice-7"]
    assert _steps(ops) == ["tests.apps.vanilla_ext.charge", "tests.apps.vanilla_ext.notify"] * 2
    assert [op.name for op in ops if op.type is OperationType.WAIT] == ["time.sleep"] * 2


def _threads_blocked_in_workflow_code() -> int:
    """Threads waiting inside a plain workflow for a durable call to end."""
    frames = sys._current_frames().values()
    waiting = vanilla._CallSite._block.__code__
    return sum(1 for top in frames for frame in _stack(top) if frame.f_code is waiting)


def _stack(frame: Any) -> Iterator[Any]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_a_sync_workflow_asleep_holds_no_thread(any_db: str, calls: list[str]) -> None:
    async def scenario() -> None:
        async with TestEnvironment(sync_order, db=any_db) as env:
            handle = env.start(sync_order, "carol", [1])
            await env.settle()  # runs until the sleep; the invocation ends there
            (wait,) = [op for op in env.operations(handle.run_id)
                       if op.type is OperationType.WAIT]
            assert wait.status is OperationStatus.STARTED
            assert env.get(handle.run_id).status.live
            assert _threads_blocked_in_workflow_code() == 0
            assert calls == ["charge carol 1"]
            assert await env.result(handle) == ["receipt for ch-carol-1"]
    asyncio.run(scenario())


def test_an_async_plain_workflow_awaits_external_coroutines_as_steps(
        any_db: str, calls: list[str]) -> None:
    result, ops = _run(any_db, async_order, "k")
    assert result == {"fetched": {"key": "k", "value": "K"}, "receipt": "receipt for ch-k-1"}
    assert calls == ["fetch k", "charge k 1", "notify paid ch-k-1"]
    assert _steps(ops) == ["tests.apps.vanilla_ext.fetch", "tests.apps.vanilla_ext.charge",
                           "tests.apps.vanilla_ext.notify"]
    assert [op.name for op in ops if op.type is OperationType.WAIT] == ["asyncio.sleep"]


@durable.workflow(name="vanilla-boundary", auto=True, external=EXT)
def boundary(text: str) -> dict[str, Any]:
    words = re.findall(r"\w+", text)
    top = collections.Counter(words).most_common(1)
    styled = click.style(json.dumps(top), bold=True)
    return {"top": top, "styled": styled, "loud": vanilla_helpers.announce(words[0])}


def test_only_calls_leaving_the_project_are_steps(any_db: str, calls: list[str]) -> None:
    result, ops = _run(any_db, boundary, "to be or not to be")
    assert result["top"] == [["to", 2]] and result["loud"] == "TO"
    assert click.unstyle(result["styled"]) == '[["to", 2]]'
    # re, collections, json and builtins inline; the installed package and the declared
    # external module are steps, the latter called from another module of the project. The
    # step is named as the package exposes the function (click.termui.style is click.style).
    assert _steps(ops) == ["click.style", "tests.apps.vanilla_ext.notify"]
    assert calls == ["notify TO"]


@durable.workflow(name="vanilla-values", auto=True)
def read_values() -> dict[str, Any]:
    seen = {"time": time.time(), "now": datetime.now(UTC).isoformat(),
            "dice": random.randint(1, 10**9), "id": str(uuid.uuid4())}
    time.sleep(60)  # what follows runs in a replay: the values must be the recorded ones
    return {"before": seen, "after": {"time": time.time(), "id": str(uuid.uuid4())}}


def test_time_random_and_uuid_are_recorded_and_replay_the_same(any_db: str) -> None:
    result, ops = _run(any_db, read_values)
    names = _steps(ops)
    assert names == ["time.time", "datetime.now", "random.randint", "uuid.uuid4", "time.time",
                     "uuid.uuid4"]
    recorded = {op.name: op.result for op in ops[:4]}
    before = result["before"]
    assert recorded["time.time"] == repr(before["time"])
    assert recorded["uuid.uuid4"] == f'"{before["id"]}"'
    assert recorded["random.randint"] == str(before["dice"])
    assert datetime.fromisoformat(before["now"]) == datetime.fromisoformat(
        recorded["datetime.now"].strip('"'))
    # The virtual clock moved on by the sleep; the second read is a new recorded value.
    assert result["after"]["time"] >= before["time"] + 60
    assert result["after"]["id"] != before["id"]


@durable.workflow(name="vanilla-unserializable", auto=True, external=EXT)
def keeps_a_connection() -> str:
    connection = ext.open_connection()
    return str(connection)


def test_an_unserializable_call_result_fails_the_run_naming_the_call_and_the_fix(
        any_db: str) -> None:
    with pytest.raises(WorkflowFailed) as failed:
        _run(any_db, keeps_a_connection)
    message = str(failed.value)
    assert "tests.apps.vanilla_ext.open_connection" in message
    assert "test_vanilla.py:" in message
    assert "@durable.step" in message and "serializer=" in message
    assert message.count("cannot be recorded") == 1


@durable.workflow(name="vanilla-generator", auto=True, external=EXT)
async def charges_in_a_generator(accounts: list[str]) -> int:
    return sum(len(ext.charge(a, 1)) for a in accounts)


def test_an_external_call_an_async_workflow_cannot_await_fails_naming_its_line(
        any_db: str, calls: list[str]) -> None:
    with pytest.raises(WorkflowFailed) as failed:
        _run(any_db, charges_in_a_generator, ["a"])
    line = charges_in_a_generator.fn.__code__.co_firstlineno + 2
    assert f"test_vanilla.py:{line}: a durable call inside a lambda, generator expression" in str(
        failed.value)
    assert calls == []


@durable.workflow(name="vanilla-fails", auto=True, external=EXT)
def fails_once(message: str) -> str:
    try:
        ext.fail(message)
    except durable.StepFailed as e:
        return f"caught {e.error_type}: {e.error_message}"
    return "not reached"


def test_an_external_call_that_raises_after_its_retries_raises_step_failed_into_the_code(
        any_db: str, calls: list[str]) -> None:
    result, _ = _run(any_db, fails_once, "no")
    assert result == "caught ValueError: no"
    assert calls == ["fail no"] * 3  # the default step retry policy: three attempts


@durable.step(name="double")
def double(n: int) -> int:
    ext.notify(f"doubling {n}")  # inside a step body: runs as written, no step of its own
    return 2 * n


@durable.workflow(name="vanilla-sync-steps", auto=True, external=EXT)
def sync_with_steps(n: int) -> int:
    context = durable.current_context()
    assert context is not None
    context.sleep(30)  # Durable's own calls work in a plain def: they block until done
    return double(n) + double(n + 1)


def test_durable_calls_in_a_sync_plain_workflow_are_awaited_for_it(
        any_db: str, calls: list[str]) -> None:
    result, ops = _run(any_db, sync_with_steps, 5)
    assert result == 22
    assert _steps(ops) == ["double", "double"]
    assert calls == ["notify doubling 5", "notify doubling 6"]


@durable.workflow(name="vanilla-whole", durable=False)
def whole(account: str) -> str:
    charge_id = ext.charge(account, 1)
    ext.notify(charge_id)
    return charge_id


@durable.workflow(name="vanilla-whole-async", durable=False)
async def whole_async(key: str) -> str:
    return (await ext.fetch(key))["value"]


def test_a_non_durable_workflow_is_one_step_named_after_it(any_db: str,
                                                          calls: list[str]) -> None:
    result, ops = _run(any_db, whole, "bob")
    assert result == "ch-bob-1"
    assert calls == ["charge bob 1", "notify ch-bob-1"]  # inside the step: no steps of its own
    assert _steps(ops) == ["vanilla-whole"]
    result, ops = _run(any_db, whole_async, "x")
    assert result == "X" and _steps(ops) == ["vanilla-whole-async"]


@durable.workflow(name="vanilla-whole-fails", durable=False)
def whole_fails() -> None:
    ext.fail("broken")


def test_a_non_durable_workflow_that_raises_fails_the_run_after_one_attempt(
        any_db: str, calls: list[str]) -> None:
    with pytest.raises(WorkflowFailed, match="ValueError: broken"):
        _run(any_db, whole_fails)
    assert calls == ["fail broken"]


def test_conflicting_modes_are_refused_at_decoration_with_what_to_do() -> None:
    with pytest.raises(UsageError, match="pick one"):
        durable.workflow(auto=True, durable=False)  # type: ignore[call-overload]
    with pytest.raises(UsageError, match="add auto=True"):
        durable.workflow(external=["x"])  # type: ignore[call-overload]
    with pytest.raises(UsageError, match=r"external=\['bank'\]"):
        durable.workflow(auto=True, external="bank")
    with pytest.raises(UsageError, match="auto=True"):
        @durable.workflow
        def plain(x: int) -> int:  # type: ignore[arg-type]
            return x


@durable.workflow(name="vanilla-on-order", durable=False, on_event="vanilla-orders",
                  filter="data.amount > 10")
def on_big_order(event: dict[str, Any]) -> str:
    return ext.charge(event["id"], event["data"]["amount"])


@durable.workflow(name="vanilla-on-order-auto", auto=True, external=EXT,
                  on_event="vanilla-orders")
def on_any_order(event: dict[str, Any]) -> str:
    ext.notify(event["id"])
    return event["id"]


def test_plain_workflows_are_started_by_the_events_their_triggers_match(
        any_db: str, calls: list[str]) -> None:
    client = durable.Client(any_db)
    names = ("vanilla-on-order", "vanilla-on-order-auto")

    def ended() -> list[durable.RunInfo]:
        return [r for name in names for r in client.list(workflow=name) if r.status.ended]

    async def scenario() -> None:
        worker = durable.Worker([on_big_order, on_any_order], client.store)
        serving = asyncio.create_task(worker.run_async())
        try:
            await wait_until_async(lambda: all(client.store.read(
                lambda tx, name=name: tx.trigger_since(name)) for name in names),
                "both triggers to be registered")
            await asyncio.to_thread(client.publish, "vanilla-orders", {"amount": 5}, id="small")
            await asyncio.to_thread(client.publish, "vanilla-orders", {"amount": 50}, id="big")
            await wait_until_async(lambda: len(ended()) == 3, "three runs to end")
        finally:
            worker.stop()
            await serving
    try:
        asyncio.run(scenario())
        assert sorted(client.result(r.run_id) for r in ended()) == ["big", "ch-big-50", "small"]
        assert sorted(calls) == ["charge big 50", "notify big", "notify small"]
    finally:
        client.close()
