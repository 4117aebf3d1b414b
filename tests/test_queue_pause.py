"""Pause and resume on a queue: a paused run keeps its slot only while an invocation of it is
in flight, then gives it back; on resume it waits ENQUEUED (in its place: priority, then age)
until its queue admits it again, so resuming never runs a queue over its limit. On both stores,
in process and with real worker processes (tests/apps/sched_app.py) SIGKILLed around the
resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from durable import ExecutionStatus
from durable.model import EventType
from durable.testing import TestEnvironment
from tests.apps import sched_app
from tests.crashkit import CrashLab
from tests.kit import wait_until
from tests.schedkit import spawn
from tests.test_queues import T0, fresh_queue, napper

pytestmark = pytest.mark.usefixtures("registry_restored")


async def test_a_paused_run_frees_its_slot_and_on_resume_waits_enqueued_for_one(
        any_db: str) -> None:
    queue = fresh_queue(limit=1)
    started: list[str] = []
    wf = napper(queue, started)
    async with TestEnvironment(wf, db=any_db, start=T0) as env:
        env.client.start(wf, "a", id="a")
        await env.settle()  # a holds the slot, asleep: no invocation of it in flight
        env.clock.advance(0.001)
        env.client.start(wf, "b", id="b")
        assert env.get("b").status is ExecutionStatus.ENQUEUED

        env.client.pause("a", by="test")
        await env.settle()  # the slot a gave back admits b
        assert env.get("b").status is ExecutionStatus.RUNNING and started == ["a", "b"]

        resumed = env.client.resume("a", by="test")
        a = env.get("a")
        assert (resumed.status, a.status, a.queue, a.position) == (
            ExecutionStatus.ENQUEUED, ExecutionStatus.ENQUEUED, queue.name, 1)
        await env.skip(30)  # a's sleep fell due, but b holds the one slot
        assert env.get("a").status is ExecutionStatus.ENQUEUED
        assert [r.run_id for r in env.client.list(status="RUNNING")] == ["b"]
        await env.skip(60)  # b ends; a is admitted and finishes, its step not run again
        assert env.get("b").status is ExecutionStatus.SUCCEEDED
        assert env.get("a").status is ExecutionStatus.SUCCEEDED and started == ["a", "b"]


async def test_resuming_when_the_queue_has_room_runs_the_run_at_once(any_db: str) -> None:
    queue = fresh_queue(limit=2)
    wf = napper(queue)
    async with TestEnvironment(wf, db=any_db, start=T0) as env:
        env.client.start(wf, "a", id="a")
        await env.settle()
        env.client.pause("a", by="test")
        await env.skip(120)  # its sleep falls due while it is paused: kept for the resume
        assert env.get("a").status is ExecutionStatus.PAUSED
        env.client.resume("a", by="test")
        await env.settle()
        a = env.get("a")
        assert a.status is ExecutionStatus.SUCCEEDED and a.queue == queue.name


def stamps(lab: CrashLab) -> dict[tuple[str, int], list[float]]:
    """When each `begin`/`end` step body of sched_app's held jobs ran, by (kind, job)."""
    out: dict[tuple[str, int], list[float]] = {}
    for event, _ in lab.effects().lines:
        kind, job, at = event.split(":")
        out.setdefault((kind, int(job)), []).append(float(at))
    return out


@pytest.mark.crash
@pytest.mark.parametrize("dies", ["before", "after"])
def test_a_resume_with_the_worker_killed_around_it_never_exceeds_the_limit(
        tmp_path: Path, any_db: str, dies: str) -> None:
    """`sched.held_job`, on a queue of one slot: run 1 is paused with its step in flight (it
    keeps the slot until that invocation ends, then run 2 takes it), is resumed while run 2
    holds the slot, and the worker is SIGKILLed just before or just after the resume. Run 1
    waits ENQUEUED until run 2 ends: its last step runs after run 2's, every step once."""
    with CrashLab(tmp_path, any_db) as lab:
        job = sched_app.held_job.name
        lab.open_gate("begin-2")
        first = spawn(lab, "--serve", "held")
        lab.client.start_by_name(job, json.dumps(1), id="one")
        wait_until(lambda: ("begin", 1) in stamps(lab), "run 1's step to be in flight")
        lab.client.pause("one", by="test")
        lab.client.start_by_name(job, json.dumps(2), id="two")
        two = lab.client.get("two")
        assert (two.status, two.position) == (ExecutionStatus.ENQUEUED, 1)  # one's slot is held
        lab.open_gate("begin-1")
        wait_until(lambda: ("begin", 2) in stamps(lab), "run 2 to take the slot run 1 freed")
        # Its step checkpointed, waiting for its signal: the kills below cut no step short,
        # so each runs once (the stamp above comes before the step's checkpoint).
        lab.wait_suspended("two")
        paused = lab.history("one", EventType.EXECUTION_PAUSED)
        assert paused[0].details["invocation_in_flight"] is True
        lab.client.signal("one", "go")  # falls due while paused: kept for the resume

        if dies == "before":
            first.kill()
        assert lab.client.resume("one", by="test").status is ExecutionStatus.ENQUEUED
        if dies == "after":
            first.kill()
        spawn(lab, "--serve", "held")
        one = lab.client.get("one")
        assert (one.status, one.queue, one.position) == (
            ExecutionStatus.ENQUEUED, sched_app.HELD.name, 1)
        assert ("end", 1) not in stamps(lab)

        lab.client.signal("two", "go")
        assert lab.finish("two").status is ExecutionStatus.SUCCEEDED
        assert lab.finish("one").status is ExecutionStatus.SUCCEEDED
        ran = stamps(lab)
        assert {key: len(at) for key, at in ran.items()} == {
            ("begin", 1): 1, ("begin", 2): 1, ("end", 1): 1, ("end", 2): 1}  # each once
        assert ran["end", 1][0] > ran["end", 2][0]  # one ran on only once two had ended
        assert len(lab.history("one", EventType.EXECUTION_RESUMED)) == 1
