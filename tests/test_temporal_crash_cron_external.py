"""SIGKILL at the worst moments of a cron firing and of an external-workflow signal.

A real worker process (this file run as a script) serves the workflows on a SQLite file. The
test kills it with SIGKILL right after an external signal was recorded, and around cron firings
(right after a firing's activity was recorded, and while the chain waits for its next tick,
letting that tick pass while no worker runs), starts another, and checks from the effects each
activity appends that nothing was lost and nothing ran twice: the signal reached its target
once, and every firing ran exactly once, in order, none skipped.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from durable.model import OperationStatus, OperationType, SubType
from durable.temporal import activity, workflow

pytestmark = pytest.mark.crash

TIMEOUT = timedelta(seconds=10)
EVERY_TWO_SECONDS = "* * * * * */2"  # Durable's seconds field: keeps the test short


@activity.defn
async def record_firing(number: int) -> int:
    """Appends "<number> <pid>" to $EFFECTS: one line per execution of the activity."""
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"{number} {os.getpid()}\n")
    return number


@workflow.defn
class CrashCron:
    @workflow.run
    async def run(self) -> int:
        number = (workflow.get_last_completion_result(int) or 0) + 1
        await workflow.execute_activity(record_firing, number, start_to_close_timeout=TIMEOUT)
        await asyncio.sleep(1)  # the firing goes on after its activity: a window to kill in
        return number


@workflow.defn
class CrashInbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: "last" in self.messages)
        return self.messages

    @workflow.signal
    def deliver(self, message: str) -> None:
        self.messages.append(message)


@workflow.defn
class CrashSender:
    @workflow.run
    async def run(self, inbox_id: str) -> str:
        inbox = workflow.get_external_workflow_handle_for(CrashInbox.run, inbox_id)
        await inbox.signal(CrashInbox.deliver, "once")
        await asyncio.sleep(1)  # killed in here, the replay passes the recorded signal
        await inbox.signal(CrashInbox.deliver, "last")
        return "sent"


def test_sigkill_right_after_an_external_signal_was_recorded_delivers_it_once(
        tmp_path: Path) -> None:
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until

    db = f"sqlite:///{tmp_path / 'durable.db'}"
    procs = Procs(tmp_path, grace=0)

    def spawn() -> Proc:
        return procs.start(sys.executable, __file__, db, log=tmp_path / "workers.log",
                           env={**os.environ, "EFFECTS": str(tmp_path / "effects.log")})

    client = Client(db)
    durable = client.durable
    asyncio.run(client.start_workflow(CrashInbox.run, id="inbox", task_queue="q"))
    asyncio.run(client.start_workflow(CrashSender.run, "inbox", id="sender", task_queue="q"))

    def signal_recorded() -> bool:
        assert first.alive, f"the worker exited:\n{first.output()}"
        return any(op.sub_type == SubType.SIGNAL_RUN and op.status is OperationStatus.SUCCEEDED
                   for op in durable.operations("sender"))

    first = spawn()
    try:
        wait_until(signal_recorded, "the sender's first signal to be recorded")
        first.kill()
        spawn()
        assert durable.wait("sender", timeout=30).status.value == "SUCCEEDED"
        assert durable.wait("inbox", timeout=30).status.value == "SUCCEEDED"
        assert durable.result("inbox") == ["once", "last"]  # delivered once, nothing lost
    finally:
        procs.close()
        durable.close()


def test_sigkill_around_cron_firings_runs_each_firing_exactly_once(tmp_path: Path) -> None:
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until

    db = f"sqlite:///{tmp_path / 'durable.db'}"
    effects = tmp_path / "effects.log"
    procs = Procs(tmp_path, grace=0)

    def spawn() -> Proc:
        return procs.start(sys.executable, __file__, db, log=tmp_path / "workers.log",
                           env={**os.environ, "EFFECTS": str(effects)})

    client = Client(db)
    durable = client.durable
    handle = asyncio.run(client.start_workflow(CrashCron.run, id="cron", task_queue="q",
                                               cron_schedule=EVERY_TWO_SECONDS))

    def firing_recorded(worker: Proc) -> bool:
        assert worker.alive, f"the worker exited:\n{worker.output()}"
        return any(op.name == "record_firing" and op.status is OperationStatus.SUCCEEDED
                   for op in durable.operations("cron"))

    def waiting_for_a_tick(worker: Proc) -> float | None:
        """The due time of the chain's wait for its next tick, once no firing has begun."""
        assert worker.alive, f"the worker exited:\n{worker.output()}"
        current = durable.operations("cron")
        if any(op.name == "record_firing" for op in current):
            return None
        return next((op.due_at for op in current if op.type is OperationType.WAIT
                     and op.status is OperationStatus.STARTED), None)

    def lines() -> list[tuple[int, int]]:
        if not effects.exists():
            return []
        return [(int(n), int(pid)) for n, pid in
                (line.split() for line in effects.read_text().splitlines())]

    try:
        first = spawn()
        wait_until(lambda: firing_recorded(first), "a firing's activity to be recorded")
        first.kill()  # right after the activity was recorded, before the firing ended

        second = spawn()
        due = wait_until(lambda: waiting_for_a_tick(second), "the chain to wait for a tick")
        second.kill()  # waiting for its next tick; let that tick pass with no worker running
        wait_until(lambda: time.time() > due + 0.5, "the tick to pass while no worker runs")

        third = spawn()
        wait_until(lambda: len(lines()) >= 4, "two more firings")
        asyncio.run(handle.cancel())
        assert durable.wait("cron", timeout=30).status.value == "STOPPED"
        third.stop()
        numbers = [n for n, _ in lines()]
        assert numbers == list(range(1, len(numbers) + 1)), lines()  # once each, none skipped
        assert {pid for _, pid in lines()} <= {first.pid, second.pid, third.pid}
    finally:
        procs.close()
        durable.close()


if __name__ == "__main__":  # the worker process: serve the workflows until killed
    import durable as _durable
    from durable.temporal import durable_workflow as _wf

    _durable.Worker([_wf(CrashCron), _wf(CrashInbox), _wf(CrashSender)], db=sys.argv[1],
                    lease_seconds=1.0).run()
