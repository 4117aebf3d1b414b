"""Push mode when the network is not kind: a server on any port tells its functions where it
is; a function that checkpoints to the wrong server says so; a function host that is killed
and comes back costs the run time, never its result, and no step runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable.invoke import dataplane
from durable.invoke.push import FunctionSpec, FunctionWorker
from durable.invoke.push import register as register_spec
from durable.model import ExecutionStatus, InvocationRetry, RunInfo
from durable.store import Store, open_store
from tests.apps import outage_functions
from tests.apps.serverless_kit import (
    DURABLE,
    register,
    start_function_host,
    start_server,
)
from tests.kit import ROOT, free_port, stopping, wait_until, wait_until_async

APP = "tests.apps.outage_functions:app"
NOWHERE = "http://127.0.0.1:1"  # the hosts' fallback backend: only the server's header works
OUTAGE = 15.0
"""How long the function host stays down: longer than several backoff steps (0.5 s doubling,
capped at 10 s), so the retries reach their cap, yet short enough for CI."""


def start_run(server_url: str, steps: int, pause: float) -> str:
    answer = httpx.post(f"{server_url}/api/runs",
                        json={"workflow": "chain", "input": [steps, pause]})
    assert answer.status_code == 201, answer.text
    run_id: str = answer.json()["run_id"]
    return run_id


def step_done(server_url: str, run_id: str, name: str) -> bool:
    answer = httpx.get(f"{server_url}/api/runs/{run_id}")
    return any(op["name"] == name and op["status"] == "SUCCEEDED"
               for op in answer.json()["operations"])


def run_doc(server_url: str, run_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server_url}/api/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    doc: dict[str, Any] = answer.json()["run"]
    return doc


def ended(server_url: str, run_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(lambda: (d := run_doc(server_url, run_id))["status"] != "RUNNING" and d,
                      f"run {run_id} to end", timeout=timeout, interval=0.1)


def effects(path: Path) -> Counter[str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.split(" ")[0] for line in lines)


def test_a_server_on_a_free_port_runs_a_push_run_started_with_the_api_to_completion(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/durable.db"
    fx = tmp_path / "effects.log"
    server = start_server(tmp_path, db)  # no DURABLE_PUBLIC_URL: its own address is the default
    host = start_function_host(tmp_path, APP, NOWHERE, OUTAGE_EFFECTS=str(fx))
    with stopping(server, host):
        assert server.url != "http://127.0.0.1:8777"
        register(db, "chain", f"{host.url}/chain")
        run_id = start_run(server.url, 3, 0.1)
        done = ended(server.url, run_id)
        assert done["status"] == "SUCCEEDED", done
        assert done["result"] == ["step0", "step1", "step2"]
        assert done["invocation_failure"] is None
        assert effects(fx) == {"step0": 1, "step1": 1, "step2": 1}


def test_a_function_checkpointing_to_another_server_fails_its_invocation_saying_so(
        tmp_path: Path) -> None:
    other = start_server(tmp_path, f"sqlite:///{tmp_path}/other.db")
    db = f"sqlite:///{tmp_path}/durable.db"
    server = start_server(tmp_path, db, "--public-url", other.url)
    host = start_function_host(tmp_path, APP, NOWHERE, OUTAGE_EFFECTS=str(tmp_path / "fx"))
    with stopping(other, server, host):
        register(db, "chain", f"{host.url}/chain")
        run_id = start_run(server.url, 1, 0.1)
        failing = wait_until(lambda: run_doc(server.url, run_id)["invocation_failure"],
                             "the invocation failure to show", interval=0.1)
        assert run_doc(server.url, run_id)["status"] == "RUNNING"
        message = failing["error"]["message"]
        assert f"the durable server at {other.url} does not know this run" in message
        assert run_id in message and "--public-url" in message
        assert failing["attempts"] >= 1 and failing["since"]


def test_a_function_host_killed_mid_run_and_back_after_an_outage_completes_the_run_once(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/durable.db"
    fx = tmp_path / "effects.log"
    server = start_server(tmp_path, db)
    port = free_port()
    host = start_function_host(tmp_path, APP, NOWHERE, port, OUTAGE_EFFECTS=str(fx))
    back = None
    try:
        register(db, "chain", f"{host.url}/chain")
        run_id = start_run(server.url, 6, 0.5)
        # Killed in the sleep after step2, once its result is checkpointed: a kill between its
        # body and its checkpoint would rightly run it again (at-least-once).
        wait_until(lambda: step_done(server.url, run_id, "step2"), "step2 to be checkpointed",
                   interval=0.05)
        os.kill(host.pid, signal.SIGKILL)
        host.wait_exit()
        killed = time.monotonic()

        def failing_long_enough() -> dict[str, Any] | None:
            doc = run_doc(server.url, run_id)
            assert doc["status"] == "RUNNING", doc  # never FAILED by the outage
            failure = doc["invocation_failure"]
            return failure if failure and time.monotonic() - killed >= OUTAGE else None
        failure = wait_until(failing_long_enough, "the outage to last", timeout=OUTAGE + 30,
                             interval=0.2)
        assert failure["attempts"] >= 4 and failure["error"]["type"] == "Function.Unreachable"
        shown = subprocess.run([DURABLE, "show", run_id, "--db", db], capture_output=True,
                               text=True, cwd=ROOT)
        assert "function unreachable" in shown.stdout and "attempt(s) in a row" in shown.stdout
        page = httpx.get(f"{server.url}/runs/{run_id}").text
        assert "Function unreachable: Function.Unreachable" in page
        assert "attempt(s) in a row" in page

        before = sum(effects(fx).values())
        back = start_function_host(tmp_path, APP, NOWHERE, port, OUTAGE_EFFECTS=str(fx))
        up = time.monotonic()
        wait_until(lambda: sum(effects(fx).values()) > before, "the run to resume",
                   timeout=30, interval=0.05)
        resumed = time.monotonic() - up
        done = ended(server.url, run_id)
        assert done["status"] == "SUCCEEDED", done
        assert done["invocation_failure"] is None
        assert effects(fx) == {f"step{i}": 1 for i in range(6)}  # every finished step ran once
        print(f"outage {OUTAGE:.0f} s; host back -> run resumed in {resumed:.2f} s")
        assert resumed < 13  # the backoff is capped at 10 s
    finally:
        with stopping(server, host, *([back] if back else [])):
            pass


# -- per-function policies, in process: the worker that invokes the functions ------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/fn.db")
    yield s
    s.close()


def start_runs(store: Store, function: str, inputs: list[str]) -> list[str]:
    now = time.time()
    return [store.write_sync(lambda tx, i=i: dataplane.start_execution(
        tx, function, f"e{i}", i, now))[0].run_id for i in inputs]


def statuses(store: Store, run_ids: list[str]) -> list[RunInfo]:
    runs = [store.read(lambda tx, r=r: tx.get_run(r)) for r in run_ids]
    return [r for r in runs if r is not None]


async def test_a_function_concurrency_limit_caps_its_invocations_in_flight(store: Store) -> None:
    register_spec(store, FunctionSpec("slow", handler="tests.apps.outage_functions:slow",
                                      concurrency=2))
    worker = FunctionWorker(store, "http://unused")
    task = asyncio.create_task(worker.run())
    try:
        run_ids = start_runs(store, "slow", [str(n) for n in range(6)])
        await wait_until_async(lambda: all(r.status is ExecutionStatus.SUCCEEDED
                                           for r in statuses(store, run_ids)),
                               "every run to succeed", interval=0.05)
    finally:
        worker.stop()
        await task
    assert outage_functions.IN_FLIGHT[1] == 2  # six runs ready at once, two invoked at a time


async def test_a_function_past_its_retry_deadline_parks_its_runs_running(store: Store) -> None:
    register_spec(store, FunctionSpec("gone", url=NOWHERE + "/", retry_deadline=0.5))
    worker = FunctionWorker(store, "http://unused",
                            invocation_retry=InvocationRetry(backoff=0.05, cap=0.1))
    task = asyncio.create_task(worker.run())
    try:
        (run_id,) = start_runs(store, "gone", ["1"])
        await wait_until_async(lambda: statuses(store, [run_id])[0].parked,
                               "the run to be parked", interval=0.05)
    finally:
        worker.stop()
        await task
    (run,) = statuses(store, [run_id])
    assert run.status is ExecutionStatus.RUNNING and run.parked is not None
    assert "retry deadline 0.5 s" in run.parked.message
    assert run.invocation_error is not None
    assert run.invocation_error.type == "Function.Unreachable"
