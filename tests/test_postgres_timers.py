"""Timers at scale on PostgreSQL: 2,000 runs sleep until one shared instant, and two worker
processes (tests/apps/timer_app.py) resume them all; in one test a worker is SIGKILLed while they
do, and a replacement started (which expires the dead worker's leases at once, as on a restart).
Every run must resume and complete exactly once, with the result its input implies, and a step
body may run a second time only if it was in flight in the killed worker.

The claims at that instant must not make the database sort every due run: the claim queries
walk an index in order and stop after the batch they take, which the plan of each pins.
(benchmarks/timers.py measures the same at 100,000 runs.)
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durable
from durable.store.postgres import WRITER_SETTINGS, PgTx
from tests.apps import timer_app as app
from tests.kit import Proc, Procs, wait_until

RUNS = 2000
LEAD = 5.0  # from starting the runs to their shared due time: room to park them all first
DEADLINE = 60.0  # seconds from the due time until every run must have ended


class Workers:
    """Worker processes of tests/apps/timer_app.py on one database; all stopped on close."""

    def __init__(self, db: str, effects: Path) -> None:
        self.db, self.effects = db, effects
        self.procs = Procs(effects, grace=30)
        self.by_pid: dict[int, Proc] = {}

    def spawn(self, count: int) -> list[int]:
        """Start `count` workers; returns their pids once each has opened the database."""
        started = [self.procs.start(sys.executable, app.__file__, "--db", self.db, "--effects",
                                    str(self.effects), name="worker") for _ in range(count)]
        self.by_pid.update((proc.pid, proc) for proc in started)
        for proc in started:
            wait_until(functools.partial(self.started, proc.pid), f"worker {proc.pid} to start")
        return [proc.pid for proc in started]

    def started(self, pid: int) -> bool:
        """Whether the worker has opened the database; fails if it exited instead."""
        assert self.by_pid[pid].alive, self.output()
        return (self.effects / f"ready-{pid}").exists()

    def kill(self, pid: int) -> None:
        self.by_pid[pid].kill()

    def close(self) -> None:
        self.procs.close()

    def output(self) -> str:
        return "\n".join(p.output()[-3000:] for p in self.procs)


@pytest.fixture
def workers(pg_url: str, tmp_path: Path) -> Iterator[Workers]:
    fleet = Workers(pg_url, tmp_path)
    try:
        yield fleet
    finally:
        fleet.close()


def start_sleepers(db: str) -> tuple[dict[str, int], float]:
    """Start RUNS runs sleeping until one instant, LEAD seconds from now; returns their inputs
    by run id, and the instant."""
    due = time.time() + LEAD
    inputs = {f"t{n:04d}": n for n in range(RUNS)}
    client = durable.Client(db)

    async def start_all() -> None:
        await asyncio.gather(*(client.start_async(app.sleeper, due, n, id=run_id)
                               for run_id, n in inputs.items()))
    try:
        asyncio.run(start_all())
    finally:
        client.close()
    return inputs, due


def executions(effects: Path) -> dict[str, list[tuple[int, str]]]:
    """The step bodies that ran, by run id: (pid, nonce) each, as the effects logs hold them."""
    out: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for log in effects.glob("effects-*.log"):
        for line in log.read_text().splitlines():
            run_id, pid, nonce = line.split()
            out[run_id].append((int(pid), nonce))
    return out


def running(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()
    assert row is not None
    return int(row[0])


def wait_all_ended(conn: psycopg.Connection[Any], due: float, workers: Workers) -> None:
    try:
        wait_until(lambda: running(conn) == 0, f"all {RUNS} runs to end",
                   timeout=due + DEADLINE - time.time(), interval=0.05)
    except AssertionError as e:
        raise AssertionError(f"{e}; {running(conn)} still RUNNING\n{workers.output()}") from None


def recorded_nonces(conn: psycopg.Connection[Any], inputs: dict[str, int]) -> dict[str, str]:
    """Each run's checkpointed step nonce, after checking that every run succeeded with the
    value its input implies, and that each resumed, ran its step and ended exactly once."""
    rows = conn.execute("SELECT run_id, status, result FROM runs").fetchall()
    results = {run_id: json.loads(result or "null") for run_id, status, result in rows
               if status == "SUCCEEDED"}
    assert len(rows) == RUNS
    wrong = {run_id: results.get(run_id) for run_id, n in inputs.items()
             if (results.get(run_id) or {}).get("v") != 2 * n}
    assert not wrong, f"{len(wrong)} runs failed or ended wrong, e.g. {list(wrong.items())[:5]}"
    counts = conn.execute(  # the steps: the recorded now() and the one after the sleep
        "SELECT type, name, count(*), count(DISTINCT run_id) FROM history WHERE type IN"
        " ('WaitSucceeded', 'StepSucceeded', 'ExecutionSucceeded') GROUP BY type, name"
        " ORDER BY type, name").fetchall()
    assert [(kind, name) for kind, name, _, _ in counts] == [
        ("ExecutionSucceeded", None), ("StepSucceeded", "now"), ("StepSucceeded", "resumed"),
        ("WaitSucceeded", None)]
    assert all(n == runs == RUNS for _, _, n, runs in counts), counts
    return {run_id: result["nonce"] for run_id, result in results.items()}


def test_runs_sleeping_until_one_instant_each_resume_once_on_both_workers(
        pg_url: str, workers: Workers) -> None:
    pids = workers.spawn(2)
    inputs, due = start_sleepers(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        wait_all_ended(conn, due, workers)
        nonces = recorded_nonces(conn, inputs)

    ran = executions(workers.effects)
    twice = {run_id: runs for run_id, runs in ran.items() if len(runs) != 1}
    assert not twice, f"step bodies ran more than once: {list(twice.items())[:5]}"
    assert all(ran[run_id][0][1] == nonce for run_id, nonce in nonces.items())
    resumed_by = {pid: sum(1 for runs in ran.values() if runs[0][0] == pid) for pid in pids}
    assert all(resumed_by.values()), f"a worker resumed no run: {resumed_by}"
    assert sum(resumed_by.values()) == RUNS


@pytest.mark.crash
def test_a_worker_killed_mid_drain_loses_no_timer_and_completes_none_twice(
        pg_url: str, workers: Workers) -> None:
    victim, _ = workers.spawn(2)
    inputs, due = start_sleepers(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        wait_until(lambda: sum(map(len, executions(workers.effects).values())) >= RUNS // 4,
                   "a quarter of the runs to resume", timeout=due + DEADLINE - time.time(),
                   interval=0.005)
        workers.kill(victim)
        orphans = {run_id for (run_id,) in conn.execute(
            "SELECT run_id FROM runs WHERE status = 'RUNNING' AND lease_owner LIKE %s",
            (f"%:{victim}:%",))}
        assert orphans, "the killed worker held no run: it was not killed mid-drain"
        workers.spawn(1)
        wait_all_ended(conn, due, workers)
        nonces = recorded_nonces(conn, inputs)

    ran = executions(workers.effects)
    assert all(nonce in {n for _, n in ran[run_id]} for run_id, nonce in nonces.items())
    # At least once: a step body may have run twice only if the killed worker had it in flight.
    unrecorded = [(run_id, pid) for run_id, runs in ran.items() for pid, nonce in runs
                  if nonce != nonces[run_id]]
    assert all(pid == victim and run_id in orphans for run_id, pid in unrecorded), unrecorded


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-statistics", "analyzed"])
def test_claims_and_their_reads_use_an_index_instead_of_reading_every_run_or_operation(
        pg_url: str, analyzed: bool) -> None:
    """The plans of the claim, of `next_due` and of the claimed runs' operations on the
    writer's connection, with 20,000 runs due and 40,000 operations, whether or not the tables
    have statistics yet (autovacuum may be off, or not have come round)."""
    durable.Client(pg_url).close()  # creates the tables
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name, value in WRITER_SETTINGS.items():
            conn.execute(f"SET {name} = {value}")
        conn.execute(
            "INSERT INTO runs (run_id, workflow, status, created_at, updated_at, ready_at)"
            " SELECT 'r' || g, 'sleeper', 'RUNNING', 0, 0, 1000 + g % 7"
            " FROM generate_series(1, 20000) AS g")
        conn.execute(
            "INSERT INTO operations (run_id, op_id, type, status)"
            " SELECT 'r' || g, 'op' || k, 'STEP', 'SUCCEEDED'"
            " FROM generate_series(1, 20000) AS g, generate_series(1, 2) AS k")
        if analyzed:
            conn.execute("ANALYZE runs")
            conn.execute("ANALYZE operations")
        plans: list[str] = []

        def explainer(answer: str) -> Callable[[str, Sequence[Any]], Any]:
            """An executor for a Tx that records the plan of each query, then answers `answer`."""
            def explain(sql: str, params: Sequence[Any]) -> Any:
                rows = conn.execute("EXPLAIN " + sql.replace("?", "%s"), params).fetchall()
                plans.append("\n".join(line for (line,) in rows))
                return conn.execute(answer)
            return explain

        PgTx(explainer("SELECT 'r1' WHERE false")).claim(2000.0, 100, ["sleeper"], [], "w",
                                                          2030.0)
        PgTx(explainer("SELECT NULL, NULL")).next_due(["sleeper"])
        PgTx(explainer("SELECT 1 WHERE false")).operations_of([f"r{i}" for i in range(100)])
    claim, next_due, operations = plans
    for plan in plans:
        assert not any(node in plan for node in ("Seq Scan", "Bitmap")), plan
        # The claim may sort the (at most `limit`) ids it took, to join them; never the runs
        # by their due time, which would mean reading every due run first.
        assert not re.search(r"Sort Key: .*(ready_at|lease_expires)", plan), plan
    assert "runs_lease" in claim and "runs_ready" in claim, claim
    assert "runs_lease" in next_due and "runs_ready" in next_due, next_due
    # Looked up by run, not found by walking every operation in `seq` order.
    assert "operations_run_id_op_id_key" in operations, operations
