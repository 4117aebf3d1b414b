"""Pause, resume and edit a run in place, on both stores, with a real worker serving it.

A pause lets the step in flight finish and be checkpointed, then holds the run at its next new
operation; what falls due meanwhile waits for the resume. An edit replaces a step's recorded
outcome, and the replay after the resume sees the new value.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import durable
from durable import Context, ExecutionStatus, RetryPolicy, workflow
from durable.errors import RunNotFound, RunStateConflict, UsageError
from durable.model import Operation, OperationStatus
from tests.kit import wait_until


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    c = durable.Client(any_db)
    yield c
    c.close()


@contextmanager
def serving(db: str, *workflows: durable.Workflow[..., Any]) -> Iterator[None]:
    """A worker serving `workflows` on a loop of its own until the block ends."""
    worker = durable.Worker(list(workflows), db)
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        await worker.run_async()
    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        wait_until(lambda: loops, "the worker's loop to start")
        yield
    finally:
        for loop in loops:  # wakes it now, not at its next look
            loop.call_soon_threadsafe(worker.stop)
        thread.join(30)


class Gate:
    """A step body that says when it is running and waits to be let go."""

    def __init__(self, name: str, ran: list[str]) -> None:
        self.name, self.ran = name, ran
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self) -> str:
        self.entered.set()
        assert self.release.wait(30)
        self.ran.append(self.name)
        return self.name


def events(client: durable.Client, run_id: str) -> list[str]:
    return [e.type for e in client.history(run_id)]


def step_of(client: durable.Client, run_id: str, name: str) -> Operation | None:
    return next((op for op in client.operations(run_id) if op.name == name), None)


def held(client: durable.Client, run_id: str) -> bool:
    """Paused, and its invocation that was in flight has ended."""
    return (client.get(run_id).status is ExecutionStatus.PAUSED
            and events(client, run_id)[-1] in ("InvocationCompleted", "ExecutionPaused"))


def test_pause_lets_the_step_in_flight_checkpoint_then_holds_until_resumed(
        any_db: str, client: durable.Client) -> None:
    ran: list[str] = []
    slow = Gate("slow", ran)

    @workflow(name="pause_inflight")
    async def wf(ctx: Context) -> list[str]:
        await ctx.step(slow, name="slow")
        await ctx.step(lambda: ran.append("after"), name="after")
        return ran

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        assert slow.entered.wait(30)
        assert client.pause(run_id, by="tester").status is ExecutionStatus.PAUSED
        slow.release.set()
        wait_until(lambda: "InvocationCompleted" in events(client, run_id),
                   "the invocation in flight ended")
        recorded = step_of(client, run_id, "slow")
        assert recorded is not None and recorded.status is OperationStatus.SUCCEEDED
        assert step_of(client, run_id, "after") is None and ran == ["slow"]
        assert client.get(run_id).status is ExecutionStatus.PAUSED
        paused = next(e for e in client.history(run_id) if e.type == "ExecutionPaused")
        assert paused.details == {"by": "tester", "invocation_in_flight": True}
        client.resume(run_id, by="tester")
        assert client.wait(run_id, 30).status is ExecutionStatus.SUCCEEDED
        assert ran == ["slow", "after"]  # the slow body ran once
        assert "ExecutionResumed" in events(client, run_id)


def test_a_paused_gather_lets_every_branch_finish_its_step_before_it_holds(
        any_db: str, client: durable.Client) -> None:
    ran: list[str] = []
    x, y = Gate("x", ran), Gate("y", ran)

    async def branch(ctx: Context, gate: Gate) -> str:
        await ctx.step(gate, name=gate.name)
        return await ctx.step(lambda: f"{gate.name}2", name=f"{gate.name}2")

    @workflow(name="pause_gather")
    async def wf(ctx: Context) -> list[str]:
        return list(await ctx.gather(branch(ctx, x), branch(ctx, y)))

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        assert x.entered.wait(30) and y.entered.wait(30)
        client.pause(run_id)
        x.release.set()
        wait_until(lambda: (op := step_of(client, run_id, "x")) is not None
                   and op.status is OperationStatus.SUCCEEDED, "x checkpointed")
        y.release.set()  # x's branch holds; y, still in its body, is not cut short
        wait_until(lambda: held(client, run_id), "the run holds")
        assert {op.name: op.status for op in client.operations(run_id) if op.name in ("x", "y")} \
            == {"x": OperationStatus.SUCCEEDED, "y": OperationStatus.SUCCEEDED}
        assert step_of(client, run_id, "x2") is None and step_of(client, run_id, "y2") is None
        client.resume(run_id)
        assert client.result(run_id, 30) == ["x2", "y2"]
        assert sorted(ran) == ["x", "y"]  # neither body ran twice


def test_what_falls_due_while_paused_is_kept_and_takes_effect_on_resume(
        any_db: str, client: durable.Client) -> None:
    @workflow(name="pause_due")
    async def wf(ctx: Context) -> str:
        await ctx.sleep(0.3)
        return str(await ctx.wait_for_signal("go"))

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        wait_until(lambda: "InvocationCompleted" in events(client, run_id), "it sleeps")
        client.pause(run_id)
        sleep = next(op for op in client.operations(run_id) if op.due_at is not None)
        assert sleep is not None and sleep.due_at is not None
        due = sleep.due_at
        wait_until(lambda: time.time() > due + 0.2, "the sleep fell due")
        assert client.get(run_id).status is ExecutionStatus.PAUSED
        assert "WaitSucceeded" not in events(client, run_id)  # not taken up while paused
        client.signal(run_id, "go", "yes")  # kept while paused
        client.resume(run_id)
        assert client.result(run_id, 30) == "yes"


def test_an_edited_result_is_what_the_replay_after_resume_sees(
        any_db: str, client: durable.Client) -> None:
    @workflow(name="edit_result")
    async def wf(ctx: Context) -> int:
        price = await ctx.step(lambda: 10, name="price")
        await ctx.wait_for_signal("go")
        return int(price) * 2

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        wait_until(lambda: "InvocationCompleted" in events(client, run_id), "it waits")
        client.pause(run_id, by="tester")
        edited = client.edit_operation(run_id, "price", 21, by="tester")
        assert edited.status is OperationStatus.SUCCEEDED and edited.result == "21"
        event = next(e for e in client.history(run_id) if e.type == "OperationEdited")
        assert event.name == "price" and event.details["by"] == "tester"
        assert event.details["before"]["result"] == "10"
        assert event.details["after"] == {"status": "SUCCEEDED", "result": "21", "error": None}
        client.resume(run_id)
        client.signal(run_id, "go")
        assert client.result(run_id, 30) == 42


def test_a_step_waiting_to_retry_can_be_completed_or_failed_by_an_edit(
        any_db: str, client: durable.Client) -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        raise RuntimeError("down")

    retry = RetryPolicy(max_attempts=50, initial_interval=60.0)

    @workflow(name="edit_pending")
    async def wf(ctx: Context) -> str:
        try:
            first = await ctx.step(flaky, name="first", retry=retry)
        except durable.StepFailed as e:
            first = f"failed: {e.error.message}"
        second = await ctx.step(flaky, name="second", retry=retry)
        return f"{first} / {second}"

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        wait_until(lambda: (op := step_of(client, run_id, "first")) is not None
                   and op.status is OperationStatus.PENDING, "first waits to retry")
        client.pause(run_id)
        wait_until(lambda: held(client, run_id), "the run holds")
        client.edit_operation(run_id, "first", error="given up by hand")
        client.resume(run_id)
        wait_until(lambda: (op := step_of(client, run_id, "second")) is not None
                   and op.status is OperationStatus.PENDING, "second waits to retry")
        client.pause(run_id)
        wait_until(lambda: held(client, run_id), "the run holds")
        client.edit_operation(run_id, "second", "fixed")
        client.resume(run_id)
        assert client.result(run_id, 30) == "failed: given up by hand / fixed"
        assert len(attempts) == 2  # one attempt each, the retries were edited away


def test_wrong_state_and_unknown_names_are_refused_with_what_to_do(
        any_db: str, client: durable.Client) -> None:
    @workflow(name="edit_refusals")
    async def wf(ctx: Context) -> None:
        await ctx.step(lambda: 1, name="one")
        await ctx.wait_for_signal("go")

    with serving(any_db, wf):
        run_id = client.start(wf).run_id
        wait_until(lambda: "InvocationCompleted" in events(client, run_id), "it waits")
        with pytest.raises(RunNotFound):
            client.pause("nope")
        with pytest.raises(RunStateConflict, match="neither paused nor parked"):
            client.resume(run_id)
        with pytest.raises(RunStateConflict, match="pause it first"):
            client.edit_operation(run_id, "one", 2)
        client.pause(run_id)
        assert client.pause(run_id).status is ExecutionStatus.PAUSED  # again: no change
        with pytest.raises(UsageError, match=r"no step named 'two'.*one"):
            client.edit_operation(run_id, "two", 2)
        client.terminate(run_id)
        with pytest.raises(RunStateConflict, match="has ended"):
            client.pause(run_id)
        with pytest.raises(RunStateConflict, match="has ended"):
            client.edit_operation(run_id, "one", 2)
