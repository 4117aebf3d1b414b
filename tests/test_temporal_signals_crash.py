"""A Temporal-style worker is SIGKILLed while an async signal handler awaits an activity, with a
task (asyncio.create_task) of the workflow already through its own activity.

A real worker process (this file run as a script) serves the workflow on a SQLite file. The test
kills it while the handler's activity is in flight, starts another, and checks that the handler's
effect on the workflow happens once, the cut activity runs again (at least once, as in Temporal)
and completes once, and the task's activity, which had returned, is not run again.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from durable.temporal import activity, workflow

pytestmark = pytest.mark.crash


@activity.defn
async def effect(word: str) -> str:
    """Writes "begin <word> <pid>"; for anything but the prelude then waits for $GATE, so the
    test can kill the process in flight; writes "end <word> <pid>" as it returns."""
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"begin {word} {os.getpid()}\n")
    if word != "prelude":
        while not Path(os.environ["GATE"]).exists():
            await asyncio.sleep(0.01)
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"end {word} {os.getpid()}\n")
    return word.upper()


@workflow.defn
class CrashCollector:
    def __init__(self) -> None:
        self.words: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        prelude = asyncio.create_task(self.prelude())
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return [await prelude, *self.words]

    async def prelude(self) -> str:
        return await workflow.execute_activity(
            effect, "prelude", start_to_close_timeout=timedelta(seconds=30))

    @workflow.signal
    async def add(self, word: str) -> None:
        self.words.append(await workflow.execute_activity(
            effect, word, start_to_close_timeout=timedelta(seconds=30)))

    @workflow.signal
    def finish(self) -> None:
        self.done = True


def test_sigkill_while_an_async_handler_awaits_an_activity_applies_its_effect_once(
        tmp_path: Path) -> None:
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until  # here: this file is the worker script too

    db = f"sqlite:///{tmp_path / 'durable.db'}"
    effects, gate, log = tmp_path / "effects.log", tmp_path / "gate", tmp_path / "workers.log"
    effects.touch()
    procs = Procs(tmp_path, grace=0)

    def spawn() -> Proc:
        return procs.start(sys.executable, __file__, db, log=log,
                           env={**os.environ, "EFFECTS": str(effects), "GATE": str(gate)})

    client = Client(db)
    handle = asyncio.run(client.start_workflow(CrashCollector.run, id="collect",
                                               task_queue="q"))
    durable = client.durable

    def lines() -> list[list[str]]:
        return [line.split() for line in effects.read_text().splitlines()]

    first = spawn()
    try:
        asyncio.run(handle.signal(CrashCollector.add, "ada"))

        def in_flight() -> bool:
            assert first.alive, f"the worker exited:\n{first.output()}"
            # The prelude's activity has returned and its result is checkpointed (its "end"
            # line alone comes before that: killed in between, it would rightly run again).
            prelude_kept = any(op.status.value == "SUCCEEDED" and op.result == '"PRELUDE"'
                               for op in durable.operations("collect"))
            return ["begin", "ada", str(first.pid)] in lines() and prelude_kept

        wait_until(in_flight, "the handler's activity to be in flight")
        first.kill()
        gate.touch()
        second = spawn()
        asyncio.run(handle.signal(CrashCollector.finish))
        run = durable.wait("collect", timeout=60)
        assert run.status.value == "SUCCEEDED", log.read_text()
        assert durable.result("collect") == ["PRELUDE", "ADA"]  # the handler's effect: once
        # The handler's activity and the task's began in either order in the first worker.
        by_first = sorted(line for line in lines() if line[2] == str(first.pid))
        assert by_first == sorted([["begin", "prelude", str(first.pid)],
                                   ["end", "prelude", str(first.pid)],
                                   ["begin", "ada", str(first.pid)]])  # ada: cut by the kill
        assert [line for line in lines() if line[2] != str(first.pid)] == [
            ["begin", "ada", str(second.pid)], ["end", "ada", str(second.pid)]]
    finally:
        procs.close()
        durable.close()


if __name__ == "__main__":  # the worker process: serve CrashCollector until killed
    import durable as _durable
    from durable.temporal import durable_workflow as _wf

    _durable.Worker([_wf(CrashCollector)], db=sys.argv[1], lease_seconds=1.0).run()
