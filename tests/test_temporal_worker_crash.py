"""A Temporal-style worker process, connected through envconfig and serving in `async with
Worker(...)` an activity class's bound method, is SIGKILLed in the middle of that activity; a
second one, started the same way, finishes the run with its own instance's method.

Both processes find the database only through TEMPORAL_ADDRESS (a Durable database URL, read by
`ClientConfig.load_client_connect_config()`), as a Temporal deployment finds its frontend. The
test checks that the activity that had returned is not run again, the one cut by the kill runs
again (at least once, as in Temporal) in the second process, and the run ends with the result.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable.temporal import activity, workflow
from durable.temporal.exceptions import ActivityError, ApplicationError

pytestmark = pytest.mark.crash


class Recorder:
    """An activity class, registered on the worker by its bound method, as Temporal's
    samples hold a client or a connection in the instance."""

    def __init__(self, effects: str, gate: str) -> None:
        self.effects, self.gate = effects, gate

    @activity.defn
    async def record(self, step: str) -> str:
        """Appends "<step> <pid>" to the effects file; `second` then waits for the gate file,
        so the test can kill the process while the activity is in flight."""
        with open(self.effects, "a") as out:
            out.write(f"{step} {os.getpid()}\n")
        if step == "second":
            while not Path(self.gate).exists():
                await asyncio.sleep(0.01)
        return f"{step} done"


    @activity.defn
    async def decline(self, card: str) -> str:
        raise ApplicationError("card declined", {"card": card, "code": 51}, type="CardDeclined",
                               non_retryable=True)


@workflow.defn
class DeclineThenWait:
    """Catches a non-retryable failure, then waits in an activity the test kills the worker
    in: the next worker's replay rebuilds the caught failure from the store."""

    @workflow.run
    async def run(self) -> list[Any]:
        try:
            await workflow.execute_activity_method(Recorder.decline, "4242",
                                                   start_to_close_timeout=timedelta(seconds=60))
        except ActivityError as e:
            cause = e.cause
            assert isinstance(cause, ApplicationError)
            caught = [cause.type, list(cause.details), cause.non_retryable]
        await workflow.execute_activity_method(Recorder.record, "second",
                                               start_to_close_timeout=timedelta(seconds=60))
        return caught


@workflow.defn
class TwoSteps:
    @workflow.run
    async def run(self) -> list[str]:
        first = await workflow.execute_activity_method(
            Recorder.record, "first", start_to_close_timeout=timedelta(seconds=60))
        second = await workflow.execute_activity_method(
            Recorder.record, "second", start_to_close_timeout=timedelta(seconds=60))
        return [first, second]


async def serve() -> None:
    """The worker process, as a Temporal sample writes one."""
    from durable.temporal.client import Client
    from durable.temporal.envconfig import ClientConfig
    from durable.temporal.worker import Worker

    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)
    recorder = Recorder(os.environ["EFFECTS"], os.environ["GATE"])
    async with Worker(client, task_queue="crash", workflows=[TwoSteps, DeclineThenWait],
                      activities=[recorder.record, recorder.decline]):
        await asyncio.Event().wait()


def kill_mid_second_step_and_restart(db: str, tmp_path: Path, workflow_run: Any,
                                     run_id: str) -> tuple[Any, list[list[str]], int, int]:
    """Start the run, serve it in a worker process until its `second` activity is in flight,
    SIGKILL that process, open the gate, serve it in a new one: the run's result, the effects
    lines, and the two pids."""
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until

    effects, gate, log = tmp_path / "effects.log", tmp_path / "gate", tmp_path / "workers.log"
    procs = Procs(tmp_path, grace=0)
    env = {**os.environ, "TEMPORAL_ADDRESS": db, "EFFECTS": str(effects),
           "GATE": str(gate), "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")}
    env.pop("DURABLE_DB", None)

    def spawn() -> Proc:
        return procs.start(sys.executable, __file__, log=log, env=env)

    def lines() -> list[list[str]]:
        return [line.split() for line in effects.read_text().splitlines()] if (
            effects.exists()) else []

    client = Client(db)
    handle = asyncio.run(client.start_workflow(workflow_run, id=run_id, task_queue="crash"))
    try:
        first = spawn()

        def second_step_started() -> bool:
            assert first.alive, f"the worker exited:\n{first.output()}"
            return any(step == "second" for step, _ in lines())
        wait_until(second_step_started, "the second activity to start")
        first.kill()
        gate.touch()
        second = spawn()
        result = asyncio.run(asyncio.wait_for(handle.result(), 120))
        return result, lines(), first.pid, second.pid
    finally:
        procs.close()
        client.durable.close()


def test_sigkill_mid_activity_of_an_envconfig_worker_resumes_in_the_next_one(
        any_db: str, tmp_path: Path) -> None:
    result, lines, first, second = kill_mid_second_step_and_restart(
        any_db, tmp_path, TwoSteps.run, "two-steps")
    assert result == ["first done", "second done"]
    assert lines == [["first", str(first)], ["second", str(first)], ["second", str(second)]]


def test_a_caught_failure_is_rebuilt_with_its_details_after_sigkill(
        any_db: str, tmp_path: Path) -> None:
    result, lines, first, second = kill_mid_second_step_and_restart(
        any_db, tmp_path, DeclineThenWait.run, "decline")
    assert result == ["CardDeclined", [{"card": "4242", "code": 51}], True]
    assert lines == [["second", str(first)], ["second", str(second)]]


if __name__ == "__main__":
    asyncio.run(serve())
