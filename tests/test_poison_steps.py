"""A step cannot take down its worker. sys.exit(), KeyboardInterrupt or a CancelledError raised
by a step body (async, or sync in its thread) fails that attempt: the retry policy applies, and
after the last attempt the workflow sees StepFailed and the run fails with the error shown.
Raised by workflow code itself, they fail the run. Meanwhile the worker (`durable worker`, or
`durable server --worker`) keeps serving. Only a real shutdown stops it: SIGTERM drains the
step in flight, and a step cancelled because the drain ran out of time is not a failure.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import durable
from durable import ExecutionStatus
from durable.model import EventType
from tests.apps import poison_app as app
from tests.chaoskit import CliWorker
from tests.kit import wait_until, wait_until_async
from tests.serverkit import Server

TARGET = "tests/apps/poison_app.py"


def specs() -> dict[str, dict[str, Any]]:
    return {f"{kind}-{'sync' if sync else 'async'}-{failing}":
            {"kind": kind, "sync": sync, "failing": failing}
            for kind in app.KINDS for sync in (False, True) for failing in (1, 2)}


def attempts(directory: Path) -> dict[str, int]:
    log = directory / "attempts.log"
    counts: dict[str, int] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        run_id = line.split()[0]
        counts[run_id] = counts.get(run_id, 0) + 1
    return counts


def test_sys_exit_keyboard_interrupt_or_cancelled_error_in_code_fails_it_not_the_worker(
        db_url: str, tmp_path: Path) -> None:
    client = durable.Client(db_url)
    worker = CliWorker(TARGET, db_url, tmp_path, env={"POISON_DIR": str(tmp_path)})
    try:
        for run_id, spec in specs().items():
            client.start(app.poisoned_step, spec, id=run_id)
        for kind in app.KINDS:
            client.start(app.poisoned_body, kind, id=f"body-{kind}")
        ended = worker.wait_ended(client, [*specs(), *(f"body-{k}" for k in app.KINDS)])

        for run_id, spec in specs().items():
            run = ended[run_id]
            error_type = app.ERROR_TYPES[spec["kind"]]
            if spec["failing"] == 1:  # the retry ran it
                assert run.status is ExecutionStatus.SUCCEEDED, (run_id, run.error)
                assert client.result(run_id) == "done at attempt 2"
            else:  # both attempts raised: the step failed, and with it the run
                assert run.status is ExecutionStatus.FAILED, run_id
                assert run.error is not None and run.error.type == "StepFailed"
                assert f"step 'poison' failed: {error_type}" in run.error.message
            failures = [e for e in client.history(run_id) if e.type == EventType.STEP_FAILED]
            assert [e.details["error"]["type"] for e in failures] == [error_type] * spec[
                "failing"]
        assert attempts(tmp_path) == dict.fromkeys(specs(), 2)  # never once per lease forever
        for kind in app.KINDS:
            run = ended[f"body-{kind}"]
            assert run.status is ExecutionStatus.FAILED
            assert run.error is not None and run.error.type == app.ERROR_TYPES[kind]

        assert worker.stop() == 0, worker.output()
        assert "worker stopped" in worker.output()
        assert "Traceback" not in worker.output()
    finally:
        worker.kill()
        client.close()


def test_durable_server_with_a_worker_survives_a_step_calling_sys_exit(tmp_path: Path) -> None:
    spec = {"kind": "exit", "sync": False, "failing": 2}
    with Server(tmp_path, None, "--worker", TARGET, env={"POISON_DIR": str(tmp_path)}) as server:
        assert server.proc is not None
        with server.client() as api:
            for i in range(2):  # the second run is claimed by the same worker, after the first
                started = api.post("/api/runs", json={"workflow": "poison.step", "input": spec,
                                                      "id": f"exits-{i}"})
                assert started.status_code == 201, started.text

                def failed(run_id: str = f"exits-{i}") -> dict[str, Any] | None:
                    run: dict[str, Any] = api.get(f"/api/runs/{run_id}").json()["run"]
                    return run if run["status"] == "FAILED" else None
                run = wait_until(failed, "the poisoned run to fail")
                assert "SystemExit" in run["error"]["message"]
            assert server.proc.poll() is None, server.log.read_text()
            assert api.get("/api/workflows").status_code == 200


def test_sigterm_drains_the_step_in_flight_and_stops_the_worker_cleanly(
        db_url: str, tmp_path: Path) -> None:
    client = durable.Client(db_url)
    worker = CliWorker(TARGET, db_url, tmp_path, env={"POISON_DIR": str(tmp_path)})
    try:
        client.start(app.slow, 1.5, id="slow")
        wait_until(lambda: attempts(tmp_path).get("slow"), "the step to start", timeout=30)
        assert worker.stop() == 0, worker.output()
        assert "worker stopped" in worker.output()
        assert client.wait("slow", timeout=10).status is ExecutionStatus.SUCCEEDED
        assert attempts(tmp_path) == {"slow": 1}
    finally:
        worker.kill()
        client.close()


async def test_a_step_cancelled_by_a_shutdown_is_not_recorded_as_its_failure(
        db_url: str) -> None:
    """The drain runs out of time: the step in flight is cancelled, which is the worker
    stopping, not the step failing. The run is left to be resumed, its step to run again."""
    started = asyncio.Event()

    async def sleepy() -> str:
        started.set()
        await asyncio.sleep(60)
        return "woke"

    @durable.workflow(name="poison.cancelled_by_shutdown")
    async def sleeper(ctx: durable.Context) -> str:
        return str(await ctx.step(sleepy, name="sleepy"))

    client = durable.Client(db_url)
    worker = durable.Worker([sleeper], client.store, drain_seconds=0.2)
    try:
        await client.start_async(sleeper, id="cut-short")
        serving = asyncio.create_task(worker.run_async())
        await asyncio.wait_for(started.wait(), 10)
        worker.stop()
        await asyncio.wait_for(serving, 10)
        await wait_until_async(lambda: len(asyncio.all_tasks()) == 1,
                               "the cancelled invocation to wind down")
        assert client.get("cut-short").status is ExecutionStatus.RUNNING
        assert not [e for e in client.history("cut-short") if e.type == EventType.STEP_FAILED]
    finally:
        client.close()
