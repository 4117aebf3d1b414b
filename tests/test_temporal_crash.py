"""A Temporal-style greeting survives SIGKILL during one of its asyncio.sleep calls.

A real worker process (this file run as a script) serves the workflow on a SQLite file; the test
kills it with SIGKILL while the run sleeps, starts another, and checks that the sleep ended at its
original due time (not restarted from the kill) and that no greeting was composed twice.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from durable.temporal import activity, workflow

pytestmark = pytest.mark.crash

PAUSE = 3.0  # seconds of durable sleep between greetings: long enough to kill and restart in


@activity.defn
async def compose_greeting(name: str) -> str:
    """Records each composition in $EFFECTS (one line per call, with the pid) and returns it."""
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"{name} {os.getpid()}\n")
    return f"Hello, {name}!"


@workflow.defn
class CrashGreeting:
    @workflow.run
    async def run(self, name: str) -> list[str]:
        greetings = []
        for i in range(3):
            greetings.append(await workflow.execute_activity(
                compose_greeting, f"{name}-{i}", start_to_close_timeout=timedelta(seconds=10)))
            if i < 2:
                await asyncio.sleep(PAUSE)
        return greetings


def test_sigkill_during_a_sleep_resumes_at_the_original_due_time(tmp_path: Path) -> None:
    from durable.temporal import durable_workflow
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until  # here: this file is the worker script too

    db = f"sqlite:///{tmp_path / 'durable.db'}"
    effects, log = tmp_path / "effects.log", tmp_path / "workers.log"
    procs = Procs(tmp_path, grace=0)

    def spawn() -> Proc:  # a worker process: this file run as a script
        return procs.start(sys.executable, __file__, db, log=log,
                           env={**os.environ, "EFFECTS": str(effects)})

    client = Client(db)
    asyncio.run(client.start_workflow(CrashGreeting.run, "Ada", id="greet", task_queue="q"))
    durable = client.durable

    def sleep_started() -> bool:
        assert first.alive, f"the worker exited:\n{first.output()}"
        return any(e.type == "WaitStarted" for e in durable.history("greet"))

    first = spawn()
    try:
        wait_until(sleep_started, "the first sleep to start")
        first.kill()
        killed_at = time.time()
        [wait] = [op for op in durable.operations("greet") if op.type.value == "WAIT"]
        assert wait.status.value == "STARTED" and wait.due_at is not None
        time.sleep(0.5)  # down for a while: a restarted timer would end 0.5 s late or more
        second = spawn()
        run = durable.wait("greet", timeout=30)
        assert run.status.value == "SUCCEEDED", log.read_text()
        assert client.durable.result("greet") == ["Hello, Ada-0!", "Hello, Ada-1!",
                                                   "Hello, Ada-2!"]
        woke = next(e for e in durable.history("greet") if e.type == "WaitSucceeded")
        assert woke.timestamp >= wait.due_at
        assert woke.timestamp - wait.due_at < 0.75, "the sleep did not end at its due time"
        assert woke.timestamp < killed_at + 0.5 + PAUSE - 0.5
        lines = [line.split() for line in effects.read_text().splitlines()]
        assert [name for name, _ in lines] == ["Ada-0", "Ada-1", "Ada-2"]  # none composed twice
        assert [int(pid) for _, pid in lines] == [first.pid, second.pid, second.pid]
        assert durable_workflow(CrashGreeting).name == run.workflow
    finally:
        procs.close()
        durable.close()


if __name__ == "__main__":  # the worker process: serve CrashGreeting until killed
    import durable as _durable
    from durable.temporal import durable_workflow as _wf

    _durable.Worker([_wf(CrashGreeting)], db=sys.argv[1], lease_seconds=1.0).run()
