"""Crash paths of events and run-to-run messages: worker processes (tests/apps/events_app.py)
SIGKILLed at the worst moment, on both stores."""

from __future__ import annotations

import os
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.engine import events
from durable.model import ExecutionStatus
from durable.store import Tx
from tests.kit import DEADLINE, Proc, Procs, wait_until

APP = str(Path(__file__).parent / "apps" / "events_app.py")


def _worker(procs: Procs, db: str, dir: Path, **env: str) -> Proc:
    return procs.start(sys.executable, APP, "--db", db,
                       env={**os.environ, "EVENTS_DIR": str(dir), **env})


def _effects(dir: Path) -> Counter[str]:
    path = dir / "effects.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(line.rsplit(" ", 1)[0] for line in lines)


def _killed(proc: Proc) -> int:
    wait_until(lambda: not proc.alive, f"worker {proc.pid} to die")
    return proc.wait_exit()


def test_a_worker_killed_mid_dispatch_loses_no_event_and_no_run_starts_twice(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path) -> None:
    client = any_client
    dying = _worker(procs, any_db, tmp_path, CRASH_DISPATCH="7")
    wait_until(lambda: client.store.read(lambda tx: tx.trigger_since("big_order")),
               "the first worker to register the trigger")
    amounts = {f"ev-{i}": (i * 37) % 250 for i in range(120)}

    def publish_all(tx: Tx) -> None:  # one commit: the worker dispatches a full batch
        for event_id, amount in amounts.items():
            events.publish(tx, "orders", event_id, f'{{"amount": {amount}}}', client.clock())
    client.store.write_sync(publish_all)
    assert _killed(dying) == -9
    assert (tmp_path / f"dying-mid-dispatch-{dying.pid}").exists()
    assert client.list(workflow="big_order") == []  # its batch was rolled back whole

    for _ in range(2):  # two workers dispatch what is left, racing for it
        _worker(procs, any_db, tmp_path)
    matching = sorted(e for e, amount in amounts.items() if amount > 100)

    def all_done() -> bool:
        runs = client.list(workflow="big_order", limit=1000)
        return len(runs) >= len(matching) and all(
            r.status is ExecutionStatus.SUCCEEDED for r in runs)
    wait_until(all_done, lambda: f"{len(matching)} runs to succeed; effects: "
               f"{sum(_effects(tmp_path).values())}\n{procs.logs()}", timeout=120)
    runs = client.list(workflow="big_order", limit=1000)
    assert sorted(client.result(r.run_id) for r in runs) == matching
    effects = _effects(tmp_path)
    assert effects == Counter({f"order:{e}": 1 for e in matching})
    for event in client.list_events("orders", limit=1000):
        _, deliveries = client.event(event.seq)
        assert len(deliveries) == 1, (event.id, deliveries)
        assert (deliveries[0].run_id is not None) == (amounts[event.id] > 100)


def test_a_worker_killed_after_signal_run_and_start_by_name_repeats_neither(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path) -> None:
    client = any_client
    dying = _worker(procs, any_db, tmp_path, CRASH_AT="after_signal")
    handle = client.start_by_name("messenger", '"sink-1"')
    assert _killed(dying) == -9
    assert (tmp_path / "crashed-after_signal").exists()
    assert client.get("sink-1").status.live  # started by name, once, before the kill

    _worker(procs, any_db, tmp_path)
    run = client.wait(handle.run_id, timeout=60)
    assert run.status is ExecutionStatus.SUCCEEDED
    sink = client.wait("sink-1", timeout=60)
    assert client.result(sink.run_id) == "hello"
    history = client.history("sink-1")
    assert [e.type for e in history].count("SignalReceived") == 1
    assert [e.type for e in history].count("ExecutionStarted") == 1
    assert len(client.list(workflow="sink")) == 1
    assert _effects(tmp_path) == Counter({"sink-got:hello": 1, "messenger-done": 1})



@pytest.mark.parametrize("where", ["before_respond", "after_respond"])
def test_a_worker_killed_around_ctx_respond_leaves_the_request_one_answer_and_the_run_one_end(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path,
        where: str) -> None:
    from fastapi.testclient import TestClient

    from durable.server.app import create_app

    client = any_client
    dying = _worker(procs, any_db, tmp_path, CRASH_AT=where)
    wait_until(lambda: client.store.read(lambda tx: tx.trigger_since("answering")),
               "the worker to register the trigger")
    # The server runs no workflow itself: the answer can only come from a worker, via the store.
    app = create_app(client, wait_limit=DEADLINE)
    with TestClient(app, base_url="http://127.0.0.1") as http, ThreadPoolExecutor(1) as pool:
        def deliver() -> Any:
            return http.post("/hooks/events/answers", json={"pr": 7},
                             headers={"X-GitHub-Delivery": "delivery-1"})
        request = pool.submit(deliver)
        assert _killed(dying) == -9
        assert (tmp_path / f"crashed-{where}").exists()
        if where == "after_respond":  # recorded before the kill: answered with no worker alive
            assert request.result(timeout=DEADLINE).status_code == 201
        else:
            assert not request.done()  # nothing alive could have answered it
        _worker(procs, any_db, tmp_path)
        answer = request.result(timeout=DEADLINE)
        assert (answer.status_code, answer.json()) == (201, {"pr": 7})
        run_id = answer.headers["X-Run"]
        assert client.wait(run_id, timeout=60).status is ExecutionStatus.SUCCEEDED
        retried = deliver()  # the sender retrying the delivery reads the same answer
        assert (retried.status_code, retried.json(), retried.headers["X-Run"]) == (
            201, {"pr": 7}, run_id)
    responds = [e for e in client.history(run_id)
                if e.type == "StepSucceeded" and e.name == "respond"]
    assert len(responds) == 1
    assert [r.run_id for r in client.list(workflow="answering")] == [run_id]
    assert _effects(tmp_path) == Counter({"answered:delivery-1": 1})
