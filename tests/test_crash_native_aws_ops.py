"""Crash tests of the deadlines AWS's operations brought to the native SDK: a callback's heartbeat
timeout and a workflow's execution timeout are rows in the store, not timers in a process, so a
worker SIGKILLed while the run waits loses neither: after the restart each fires at its stored
time, and a heartbeat sent while no worker ran still moves the heartbeat deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from durable import ExecutionStatus
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DEADLINE

pytestmark = pytest.mark.crash

LEASE = 1.0
LATE = 0.75  # how late after its due time a deadline may fire: well under the downtime
HEARTBEAT = 3.0


def test_a_heartbeat_timeout_survives_a_kill_and_a_heartbeat_sent_meanwhile_extends_it(
        tmp_path: Path, any_db: str) -> None:
    with CrashLab(tmp_path, any_db) as lab:
        run_id = lab.start(app.beating, HEARTBEAT, id="beating")
        w1 = lab.worker(lease=LEASE)
        started = lab.wait_event(run_id, "CallbackStarted")
        assert started.details["heartbeat_timeout"] == HEARTBEAT
        lab.wait_suspended(run_id)
        w1.kill()
        time.sleep(1.0)  # the downtime under test, not a guess at speed
        callback_id = started.details["callback_id"]
        before = time.time()
        lab.client.heartbeat_callback(callback_id)  # while no worker runs
        after = time.time()
        assert after < started.timestamp + HEARTBEAT - LATE, "the heartbeat came too late to test"
        lab.worker(lease=LEASE)
        assert lab.finish(run_id).status is ExecutionStatus.SUCCEEDED
        assert lab.result(run_id) == "no heartbeat"

        (timed_out,) = lab.history(run_id, "CallbackTimedOut")
        assert timed_out.details["error"]["type"] == "Callback.Heartbeat"
        # Not at the first deadline (started + HEARTBEAT): the heartbeat moved it out.
        assert before + HEARTBEAT <= timed_out.timestamp < after + HEARTBEAT + LATE
        assert len(lab.history(run_id, "CallbackHeartbeat")) == 1


def test_an_execution_timeout_ends_a_sleeping_run_on_time_after_a_kill(
        tmp_path: Path, any_db: str) -> None:
    with CrashLab(tmp_path, any_db) as lab:
        run_id = lab.start(app.deadline, id="deadline")
        run = lab.client.get(run_id)
        deadline = run.created_at + (app.deadline.execution_timeout or 0)
        assert run.timeout_at == deadline  # stored with the run from its start
        w1 = lab.worker(lease=LEASE)
        lab.wait_event(run_id, "WaitStarted", "long")
        lab.wait_suspended(run_id)
        w1.kill()
        time.sleep(1.0)  # the downtime under test, not a guess at speed
        lab.worker(lease=LEASE)
        assert time.time() < deadline - LATE, "the worker restarted too late to test it"
        ended = lab.client.wait(run_id, DEADLINE)

        assert ended.status is ExecutionStatus.TIMED_OUT
        assert ended.error is not None and ended.error.type == "Execution.TimedOut"
        (timed_out,) = lab.history(run_id, "ExecutionTimedOut")
        assert deadline <= timed_out.timestamp < deadline + LATE
        assert [e.name for e in lab.history(run_id, "WaitCancelled")] == ["long"]
        assert lab.effects()["deadline-step"] == 1  # the step before the wait ran once
