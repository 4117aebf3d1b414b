"""Pause and edit under SIGKILL, on both stores, with real worker processes
(tests/apps/crash_app.py): a pause racing a step's completion, whose worker dies before that
step is checkpointed, and an edit racing a resume, whose worker dies right after the claim."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from durable import ExecutionStatus
from durable.model import OperationStatus
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DURABLE, wait_until

pytestmark = pytest.mark.crash

LEASE = 1.0


def test_a_pause_racing_a_steps_completion_loses_nothing_when_the_worker_dies(
        tmp_path: Path, any_db: str) -> None:
    with CrashLab(tmp_path, any_db) as lab:
        run_id = lab.start(app.chain, 1, id="pause-race")
        w1 = lab.worker(lease=LEASE, crash_at=["b:after"])  # dies before b's SUCCEED
        lab.wait_effect("b")
        lab.client.pause(run_id, by="test")
        lab.open_gate("b")
        assert w1.wait_exit() != 0
        w2 = lab.worker(lease=LEASE)
        expires = lab.lease_expires(run_id)
        assert expires is not None
        wait_until(lambda: time.time() > expires + 2 * LEASE, "the dead worker's lease ran out")
        # Paused: w2 took nothing over, however long ago the lease ran out.
        assert lab.client.get(run_id).status is ExecutionStatus.PAUSED
        assert lab.history(run_id, "WorkerLost") == [] and lab.effects()["b"] == 1
        lab.client.resume(run_id, by="test")
        assert lab.result(run_id) == [2, 4, 7]
        effects = lab.effects()
        assert effects["a"] == 1 and effects["c"] == 1  # b alone ran again: it was in flight
        assert effects["b"] == 2 and effects.pids("b")[1] == w2.pid
        assert len(lab.history(run_id, "WorkerLost")) == 1


def test_an_edit_racing_a_resume_is_either_refused_or_seen_after_a_crash(
        tmp_path: Path, any_db: str) -> None:
    with CrashLab(tmp_path, any_db) as lab:
        run_id = lab.start(app.chain, 1, id="edit-race")
        lab.worker(lease=LEASE, crash_at=["c:before"])  # dies on c, right after the resume
        lab.wait_effect("b")
        lab.client.pause(run_id, by="test")
        lab.open_gate("b")
        lab.wait_suspended(run_id)
        assert lab.operations(run_id)["b"].status is OperationStatus.SUCCEEDED
        env = {**os.environ, "DURABLE_DB": any_db}
        edit, resume = [subprocess.Popen([DURABLE, *args], env=env, text=True,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                        for args in (["edit", run_id, "b", "--result", "99"],
                                     ["resume", run_id])]
        edit_err = edit.communicate(timeout=60)[1]
        assert resume.wait(60) == 0, resume.communicate()[1]
        wait_until(lambda: lab.effects().crashes() == [("c", "before")], "the worker died on c")
        lab.worker(lease=LEASE)
        result = lab.result(run_id)
        edited = lab.history(run_id, "OperationEdited")
        if edit.returncode == 0:  # the edit came first: the resumed run sees it, crash or not
            assert result == [2, 99, 102] and len(edited) == 1
            assert edited[0].details["by"] == "cli"
        else:  # the resume came first: the edit was refused, whole, and said why
            assert edit.returncode == 2 and "Traceback" not in edit_err, edit_err
            assert "pause it first" in edit_err or "pausing" in edit_err
            assert result == [2, 4, 7] and edited == []
        assert lab.effects()["c"] == 1 and lab.effects()["b"] == 1
