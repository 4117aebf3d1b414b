"""A worker SIGKILLed in the middle of a step, as the run's history tells it afterwards: the lost
worker, the step it was running, the attempt that died with it, the compute it spent (issue 17)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fastapi.testclient import TestClient

from durable.cli.main import cli
from durable.engine import machine
from durable.invoke.contract import execution_arn
from durable.model import (
    LOST,
    EventType,
    HistoryEvent,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
)
from durable.server.app import create_app
from durable.store import open_store
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import wait_until

LEASE = 1.0


def test_a_worker_lost_mid_step_is_in_the_history_and_its_step_ran_twice(
        tmp_path: Path, any_db: str) -> None:
    with CrashLab(tmp_path, any_db) as lab:
        run_id = lab.start(app.fence, id="fence")
        w1 = lab.worker(lease=LEASE)
        lab.wait_effect("slow")  # slow's body is running, held at its gate
        started = lab.wait_event(run_id, EventType.STEP_STARTED, "slow")
        # a lease renewal after the step began: the worker was seen alive inside it
        wait_until(lambda: (lab.lease_expires(run_id) or 0) - LEASE > started.timestamp,
                   "w1 to renew its lease during slow")
        w1.kill()
        lab.wait_crashed(w1)
        held = lab.lease_expires(run_id)  # w1's last renewal, which nothing renews again
        w2 = lab.worker(lease=LEASE)
        lab.wait_effect("slow", 2)  # w2 took over and re-ran slow
        lab.open_gate("slow")
        lab.open_gate("two")
        run = lab.finish(run_id)

        (lost,) = lab.history(run_id, EventType.WORKER_LOST)
        assert str(w1.pid) in lost.details["worker"]
        assert [s["name"] for s in lost.details["in_flight"]] == ["slow"]
        assert lost.details["in_flight"][0]["attempt"] == 1
        assert lost.details["compute_lost"] > 0
        assert lost.details["last_seen"] > lost.details["in_flight"][0]["started_at"]
        # w2, on this host, takes over at once: the loss is still told from w1's real lease
        assert (lost.details["lease_expired_at"], lost.details["last_seen"]) == (
            held, held - LEASE if held is not None else None)

        slow = next(op for op in lab.operations(run_id).values() if op.name == "slow")
        assert (slow.status, slow.attempt) == (OperationStatus.SUCCEEDED, 2)
        assert lab.result(run_id) == {"slow_finished_by": w2.pid}
        steps = [e for e in lab.history(run_id) if e.name == "slow" and e.type in (
            EventType.STEP_FAILED, EventType.STEP_SUCCEEDED)]
        assert [(e.type, e.details["attempt"]) for e in steps] == [
            (EventType.STEP_FAILED, 1), (EventType.STEP_SUCCEEDED, 2)]
        assert steps[0].details["error"]["type"] == LOST
        assert lab.effects()["slow"] == 2  # the body ran twice, completed once
        assert len(lab.history(run_id, EventType.STEP_SUCCEEDED)) == 3  # one, slow, two
        # the compute counts the lost invocation's time inside slow, besides w2's invocations
        finished = sum(e.details["duration"]
                       for e in lab.history(run_id, EventType.INVOCATION_COMPLETED))
        assert run.compute_seconds >= finished + lost.details["compute_lost"] - 1e-6
        assert run.compute_seconds > finished

        shown = CliRunner().invoke(cli, ["show", run_id, "--db", any_db])
        assert shown.exit_code == 0, shown.output
        assert "worker" in shown.output and "lost" in shown.output
        assert "attempt 1 lost" in shown.output
        assert_aws_history_tells(any_db, run_id, lost, str(w1.pid))


def aws_history(db: str, run_id: str) -> list[dict[str, Any]]:
    """The run's events from GetDurableExecutionHistory, over HTTP to the server's app."""
    arn = execution_arn(app.fence.name, run_id, run_id)
    with TestClient(create_app(db, serve=False), base_url="http://127.0.0.1") as client:
        answer = client.get(f"/2025-12-01/durable-executions/{arn}/history",
                            params={"IncludeExecutionData": "true"})
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["Events"]
    return events


def assert_aws_history_tells(db: str, run_id: str, lost: HistoryEvent, worker: str) -> None:
    """AWS's history has no WorkerLost: the lost invocation is an InvocationCompleted with an
    Error naming the worker, ending when it was last seen; the lost attempt a StepFailed."""
    events = aws_history(db, run_id)
    invocations = [e for e in events if e["EventType"] == "InvocationCompleted"]
    (died,) = [e for e in invocations
               if e["InvocationCompletedDetails"].get("Error", {}).get("Payload")]
    details = died["InvocationCompletedDetails"]
    error = details["Error"]["Payload"]
    assert error["ErrorType"] == LOST
    assert worker in error["ErrorMessage"] and "'slow' attempt 1" in error["ErrorMessage"]
    assert details["EndTimestamp"] == lost.details["last_seen"]
    assert details["StartTimestamp"] == lost.details["in_flight"][0]["started_at"]
    assert died["EventTimestamp"] == lost.timestamp
    failed = [e for e in events if e["EventType"] == "StepFailed" and e.get("Name") == "slow"]
    assert [(e["StepFailedDetails"]["Error"]["Payload"]["ErrorType"],
             e["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"]) for e in failed] == [
        (LOST, 1)]



def test_a_same_host_takeover_tells_when_the_dead_worker_was_really_last_seen(
        any_db: str) -> None:
    """A worker of this host whose process is gone loses its leases early (`take_over`), which
    ends them now: the loss must still be told from the lease it really held, renewed 9 s into
    the step, not from the lease cut short."""
    t0 = time.time()
    step = OperationUpdate("s1", OperationType.STEP, OperationAction.START, name="slow",
                           started_at=t0 + 1)
    store = open_store(any_db)
    try:
        store.write_sync(lambda tx: machine.start_run(tx, "gone", "lost.demo", None, t0))
        (first,) = store.write_sync(lambda tx: machine.claim(tx, "host:1", t0, 1, 30.0,
                                                             ["lost.demo"]))
        store.write_sync(lambda tx: machine.checkpoint(tx, "gone", first.token, [step], t0 + 1))
        store.write_sync(lambda tx: tx.extend_leases("host:1", ["gone"], t0 + 40))
        taken = store.write_sync(lambda tx: machine.take_over(tx, "host:1", t0 + 12, 30.0))
        assert [run.run_id for run in taken] == ["gone"]
        claimed = store.write_sync(lambda tx: machine.claim(tx, "host:2", t0 + 13, 1, 30.0,
                                                            ["lost.demo"]))
        assert [c.invocation.run_id for c in claimed] == ["gone"]
        history = store.read(lambda tx: tx.history("gone"))
        run = store.read(lambda tx: tx.get_run("gone"))
    finally:
        store.close()
    (lost,) = [e for e in history if e.type == EventType.WORKER_LOST]  # once, not per claim
    assert lost.details["worker"] == "host:1"
    assert lost.details["lease_expired_at"] == t0 + 40
    assert lost.details["last_seen"] == t0 + 10
    assert lost.details["compute_lost"] == 9.0
    assert run is not None and run.compute_seconds == 9.0
