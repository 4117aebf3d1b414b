"""Terminate: a run ends STOPPED at once, none of its handlers or compensations run, the
invocation in flight is fenced out, and its running children go as the policy says.

Driven through real `durable worker` processes (tests/apps/ending_app.py) on both stores; the
crash tests SIGKILL the worker right after the terminate and race terminates against a stream
of checkpoints."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from durable.model import ChildPolicy, EventType, ExecutionStatus, OperationStatus, RunInfo
from tests.kit import DURABLE, Procs, Subprocess, wait_until

APP = "tests/apps/ending_app.py"


class Lab:
    """Worker processes on one database, the marker files their steps leave, a client."""

    def __init__(self, db: str, dir: Path, procs: Procs) -> None:
        self.db, self.dir, self.procs = db, dir, procs
        self.env = {**os.environ, "ENDING_DIR": str(dir), "DURABLE_DB": db}
        self.client = durable.Client(db)

    def worker(self) -> Subprocess:
        proc = self.procs.start(DURABLE, "worker", APP, "--concurrency", "50", env=self.env,
                                name="worker")
        return proc

    def start(self, workflow: str, value: object, run_id: str) -> str:
        return self.client.start_by_name(workflow, json.dumps(value), run_id).run_id

    def started(self, tag: str) -> int:
        """How many times `hold(tag)` began."""
        path = self.dir / f"{tag}.started"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def release(self, tag: str) -> None:
        (self.dir / f"{tag}.release").touch()

    def marked(self, tag: str, what: str) -> bool:
        return (self.dir / f"{tag}.{what}").exists()

    def status(self, run_id: str) -> ExecutionStatus:
        return self.client.get(run_id).status

    def ended(self, run_id: str) -> RunInfo:
        return self.client.wait(run_id, 30)


@pytest.fixture
def lab(any_db: str, tmp_path: Path) -> Iterator[Lab]:
    with Procs(tmp_path, grace=5) as procs:
        lab = Lab(any_db, tmp_path, procs)
        yield lab
        lab.client.close()


def _events_after_stop(client: durable.Client, run_id: str) -> list[str]:
    history = client.history(run_id)
    stop = next(i for i, e in enumerate(history) if e.type == EventType.EXECUTION_STOPPED)
    return [str(e.type) for e in history[stop + 1:]]


def test_terminate_fences_out_the_step_in_flight_and_runs_no_compensation(lab: Lab) -> None:
    worker = lab.worker()
    run_id = lab.start("saga", "t1", "t1")
    wait_until(lambda: lab.started("t1") == 1, "the step to be in flight")

    lab.client.terminate(run_id, reason="operator said so")
    run = lab.client.get(run_id)
    assert run.status is ExecutionStatus.STOPPED
    assert run.error is not None and "operator said so" in run.error.message
    (stopped,) = [e for e in lab.client.history(run_id) if e.type == EventType.EXECUTION_STOPPED]
    assert stopped.details["terminated"] is True and stopped.details["children"] == "terminate"

    lab.release("t1")  # the step body finishes: its SUCCEED checkpoint comes too late
    wait_until(lambda: "INFO durable.worker: run t1 terminated while in flight"
               in worker.output(),
               lambda: f"the worker to be fenced out:\n{worker.output()[-2000:]}")
    # Fenced by the terminate, not by a lost lease (the banner names the lease length, so
    # look for the lease-loss lines themselves).
    assert "lease lost" not in worker.output() and "went unrenewed" not in worker.output()
    assert "WARNING" not in worker.output()
    assert lab.marked("t1", "done")
    assert not lab.marked("t1", "compensated"), "terminate ran the workflow's finally"
    assert not [op for op in lab.client.operations(run_id)
                if op.name == "hold" and op.status is OperationStatus.SUCCEEDED], \
        "the late SUCCEED was accepted"
    assert _events_after_stop(lab.client, run_id) == []
    # The worker is not hurt by it: it serves the next run.
    assert lab.ended(lab.start("quick", 1, "after")).status is ExecutionStatus.SUCCEEDED


def hold_started(lab: Lab, run_id: str) -> None:
    """Wait until the run's `hold` step is recorded STARTED (an at-least-once step's START is
    checkpointed once its body has run a while)."""
    wait_until(lambda: [op for op in lab.client.operations(run_id)
                        if op.name == "hold" and op.status is OperationStatus.STARTED],
               f"{run_id}'s hold step to be recorded in flight")


def assert_cancelled_by_the_terminate(lab: Lab, run_id: str) -> None:
    """The step in flight at the terminate is recorded CANCELLED, saying why, in its operation
    and its history, before the stop; never left STARTED."""
    (hold,) = [op for op in lab.client.operations(run_id) if op.name == "hold"]
    assert hold.status is OperationStatus.CANCELLED and hold.ended_at is not None
    assert hold.error is not None and hold.error.type == "Execution.Terminated"
    assert "terminated while step 'hold' was in flight" in hold.error.message
    history = lab.client.history(run_id)
    (cancelled,) = [e for e in history if e.type == EventType.STEP_CANCELLED]
    assert cancelled.name == "hold" and cancelled.details["reason"] == "terminated"
    assert history.index(cancelled) < [e.type for e in history].index(
        EventType.EXECUTION_STOPPED)


def test_a_step_in_flight_at_the_terminate_is_recorded_cancelled_not_left_started(
        lab: Lab) -> None:
    lab.worker()
    run_id = lab.start("saga", "s1", "s1")
    hold_started(lab, run_id)
    lab.client.terminate(run_id)
    assert_cancelled_by_the_terminate(lab, run_id)
    lab.release("s1")  # its late SUCCEED is refused: the record stays as the terminate left it
    wait_until(lambda: lab.marked("s1", "done"), "the step body to end")
    assert lab.ended(lab.start("quick", 1, "s-after")).status is ExecutionStatus.SUCCEEDED
    assert_cancelled_by_the_terminate(lab, run_id)


def test_cancel_by_contrast_runs_the_compensation(lab: Lab) -> None:
    lab.worker()
    run_id = lab.start("saga", "c1", "c1")
    wait_until(lambda: lab.started("c1") == 1, "the step to be in flight")
    lab.client.cancel(run_id)
    lab.release("c1")
    assert lab.ended(run_id).status is ExecutionStatus.STOPPED
    assert lab.marked("c1", "compensated")


def test_terminating_an_ended_run_changes_nothing(lab: Lab) -> None:
    lab.worker()
    run_id = lab.start("quick", 1, "q1")
    ended = lab.ended(run_id)
    assert lab.client.terminate(run_id) == ended.ended_at
    assert lab.client.get(run_id).status is ExecutionStatus.SUCCEEDED


@pytest.mark.parametrize("policy", list(ChildPolicy))
def test_children_follow_the_policy(lab: Lab, policy: ChildPolicy) -> None:
    lab.worker()
    lab.start("family", "f", "f")
    for child in ("f-detached", "f-awaited"):
        wait_until(lambda child=child: lab.started(child) == 1, f"{child} to hold")
    lab.client.terminate("f", children=policy)
    assert lab.status("f") is ExecutionStatus.STOPPED
    for child in ("f-detached", "f-awaited"):
        lab.release(child)
    for child in ("f-detached", "f-awaited"):
        if policy is ChildPolicy.ABANDON:
            # They run on by themselves: past the held step, on to their hour-long sleep.
            wait_until(lambda child=child: any(
                op.name == "hold" and op.status is OperationStatus.SUCCEEDED
                for op in lab.client.operations(child)), f"{child} to go on")
            assert lab.status(child) is ExecutionStatus.RUNNING
            assert not lab.marked(child, "compensated")
        elif policy is ChildPolicy.CANCEL:
            assert lab.ended(child).status is ExecutionStatus.STOPPED
            assert lab.marked(child, "compensated")
        else:
            assert lab.status(child) is ExecutionStatus.STOPPED
            wait_until(lambda child=child: lab.marked(child, "done"), f"{child}'s step")
            assert not lab.marked(child, "compensated")
            assert _events_after_stop(lab.client, child) == []


def test_worker_killed_right_after_a_terminate_leaves_the_run_stopped(lab: Lab) -> None:
    """The crash path: the worker holding the in-flight invocation is SIGKILLed right after
    the terminate commits; a new worker must neither resume the run nor run its handlers."""
    first = lab.worker()
    run_id = lab.start("saga", "k1", "k1")
    hold_started(lab, run_id)
    lab.client.terminate(run_id)
    first.kill()
    lab.release("k1")
    lab.worker()
    # Once the new worker has served a run, it has claimed whatever it would claim.
    assert lab.ended(lab.start("quick", 1, "k-after")).status is ExecutionStatus.SUCCEEDED
    assert lab.status(run_id) is ExecutionStatus.STOPPED
    assert lab.started("k1") == 1, "the terminated run was invoked again"
    assert not lab.marked("k1", "compensated")
    assert _events_after_stop(lab.client, run_id) == []
    assert_cancelled_by_the_terminate(lab, run_id)


def test_terminate_racing_checkpoints_keeps_nothing_after_the_stop(lab: Lab) -> None:
    """Terminates land at arbitrary points of runs checkpointing as fast as they can: each
    run's history ends at its ExecutionStopped, whichever of the two committed first, and
    its operations are those the history recorded before it."""
    lab.worker()
    runs = [lab.start("counter", 400, f"race-{i}") for i in range(12)]
    for run_id in runs:
        wait_until(lambda run_id=run_id: len(lab.client.operations(run_id)) > 3,
                   f"{run_id} to checkpoint")
        lab.client.terminate(run_id)
    for run_id in runs:
        run = lab.client.get(run_id)
        assert run.status in (ExecutionStatus.STOPPED, ExecutionStatus.SUCCEEDED)
        if run.status is ExecutionStatus.STOPPED:
            assert _events_after_stop(lab.client, run_id) == []
    stopped = [r for r in runs if lab.status(r) is ExecutionStatus.STOPPED]
    assert stopped, "every run ended before its terminate: the race was never run"
    # Nothing written after the stop: the operations stay as they were at the stop.
    frozen = {r: lab.client.operations(r) for r in stopped}
    assert lab.ended(lab.start("quick", 1, "race-after")).status is ExecutionStatus.SUCCEEDED
    assert {r: lab.client.operations(r) for r in stopped} == frozen
