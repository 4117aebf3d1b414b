"""Temporal-style activities survive SIGKILL: heartbeat details and async completions are durable.

A real worker process (this file run as a script) serves the workflows on a SQLite file. The
test kills it with SIGKILL at the worst moment, starts another, and checks the files the
activities leave behind: nothing lost, nothing done twice.

- A sync activity working through units heartbeats the next unit after each; it is killed
  while paused after a unit whose heartbeat is durable. The next attempt, in the new worker,
  reads `info().heartbeat_details` and resumes there: every unit is done exactly once.
- An activity that raised `raise_complete_async()` has handed its task token out; the worker
  is killed while the run waits for the completion, another starts, and the external
  completer completes it then: the workflow finishes once, the activity body ran once.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from durable.temporal import activity, workflow

if TYPE_CHECKING:  # imported where used: this file is the worker script too
    from tests.kit import Subprocess

pytestmark = pytest.mark.crash

UNITS, PAUSE_AT = 6, 3


@activity.defn
def process_units(total: int) -> int:
    """Does units from the last heartbeat's on, each recorded in $EFFECTS; waits before unit
    PAUSE_AT (heartbeating, so it is alive) until $GATE exists."""
    info = activity.info()
    start = info.heartbeat_details[0] if info.heartbeat_details else 0
    for unit in range(start, total):
        while unit == PAUSE_AT and not os.path.exists(os.environ["GATE"]):
            activity.heartbeat(unit)
            time.sleep(0.05)
        with open(os.environ["EFFECTS"], "a") as out:
            out.write(f"unit {unit} {os.getpid()} attempt {info.attempt} from {start}\n")
        activity.heartbeat(unit + 1)
    return total


@workflow.defn
class CrashUnits:
    @workflow.run
    async def run(self, total: int) -> int:
        return await workflow.execute_activity(
            process_units, total, start_to_close_timeout=timedelta(seconds=120),
            heartbeat_timeout=timedelta(seconds=2))


@activity.defn
async def hand_out_token() -> str:
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"handed out {os.getpid()}\n")
    with open(os.environ["TOKEN"], "wb") as token:
        token.write(activity.info().task_token)
    activity.raise_complete_async()


@activity.defn
async def record_result(result: str) -> str:
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"recorded {result} {os.getpid()}\n")
    return result


@workflow.defn
class CrashAsyncCompletion:
    @workflow.run
    async def run(self) -> str:
        result = await workflow.execute_activity(
            hand_out_token, start_to_close_timeout=timedelta(seconds=120))
        return await workflow.execute_activity(
            record_result, result, start_to_close_timeout=timedelta(seconds=10))


class Lab:
    """Worker processes (this file as a script) on one SQLite file, and what they leave."""

    def __init__(self, tmp_path: Path) -> None:
        from durable.temporal.client import Client
        from tests.kit import Procs

        self.db = f"sqlite:///{tmp_path / 'durable.db'}"
        self.effects, self.gate = tmp_path / "effects.log", tmp_path / "gate"
        self.token, self.log = tmp_path / "token", tmp_path / "workers.log"
        self.procs = Procs(tmp_path, grace=0)
        self.client = Client(self.db)

    def spawn(self) -> Subprocess:
        return self.procs.start(sys.executable, __file__, self.db, log=self.log, env={
            **os.environ, "EFFECTS": str(self.effects), "GATE": str(self.gate),
            "TOKEN": str(self.token)})

    def lines(self) -> list[str]:
        return self.effects.read_text().splitlines() if self.effects.exists() else []

    def close(self) -> None:
        self.procs.close()
        self.client.durable.close()


def test_sigkill_during_a_heartbeating_activity_resumes_from_its_last_durable_details(
        tmp_path: Path) -> None:
    from tests.kit import wait_until

    lab = Lab(tmp_path)
    durable = lab.client.durable
    try:
        asyncio.run(lab.client.start_workflow(CrashUnits.run, UNITS, id="units",
                                              task_queue="q"))
        first = lab.spawn()

        def paused_with_durable_details() -> bool:
            assert first.alive, f"the worker exited:\n{first.output()}"
            steps = durable.operations("units")
            return bool(steps) and steps[0].result == f"[{PAUSE_AT}]"
        wait_until(paused_with_durable_details, "the heartbeat before the pause to be durable")
        first.kill()
        lab.gate.touch()
        second = lab.spawn()
        run = durable.wait("units", timeout=60)
        assert run.status.value == "SUCCEEDED", lab.log.read_text()
        assert durable.result("units") == UNITS
        lines = [line.split() for line in lab.lines()]
        assert [int(words[1]) for words in lines] == list(range(UNITS))  # each unit once
        pids = {int(words[1]): int(words[2]) for words in lines}
        assert {pids[u] for u in range(PAUSE_AT)} == {first.pid}
        assert {pids[u] for u in range(PAUSE_AT, UNITS)} == {second.pid}
        resumed = lines[PAUSE_AT]
        assert resumed[3:] == ["attempt", "2", "from", str(PAUSE_AT)]  # the lost one was 1
    finally:
        lab.close()


def test_sigkill_while_waiting_for_an_async_completion_loses_nothing(tmp_path: Path) -> None:
    from durable.model import OperationStatus, OperationType
    from tests.kit import wait_until

    lab = Lab(tmp_path)
    durable = lab.client.durable
    try:
        asyncio.run(lab.client.start_workflow(CrashAsyncCompletion.run, id="async",
                                              task_queue="q"))
        first = lab.spawn()

        def waiting_for_the_completion() -> bool:
            assert first.alive, f"the worker exited:\n{first.output()}"
            return any(op.type is OperationType.CALLBACK and op.status is OperationStatus.STARTED
                       for op in durable.operations("async"))
        wait_until(waiting_for_the_completion, "the run to wait for its completion")
        first.kill()
        second = lab.spawn()
        handle = lab.client.get_async_activity_handle(task_token=lab.token.read_bytes())
        asyncio.run(handle.complete("paid"))
        run = durable.wait("async", timeout=60)
        assert run.status.value == "SUCCEEDED", lab.log.read_text()
        assert durable.result("async") == "paid"
        assert lab.lines() == [f"handed out {first.pid}",
                               f"recorded paid {second.pid}"]
    finally:
        lab.close()


if __name__ == "__main__":  # a worker process: serve both workflows until killed
    import durable as _durable
    from durable.temporal import durable_workflow as _wf

    _durable.Worker([_wf(CrashUnits), _wf(CrashAsyncCompletion)], db=sys.argv[1],
                    lease_seconds=1.0).run()
