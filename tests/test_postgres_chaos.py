"""Chaos on PostgreSQL: worker processes die and lose their connections while 1,000 runs go on.

Four worker processes (tests/apps/pg_chaos_app.py, lease 2 s) serve 1,000 workflows of 10 steps
with pseudo-random durable sleeps and one signal each, sent by the test while they run. Every
2 seconds one worker is SIGKILLed and replaced; once, every PostgreSQL connection of a worker is
cut (pg_terminate_backend on its application_name) and it must carry on. At the end:

- every run SUCCEEDED with the result its input and signal imply;
- no completed step ran again: no execution of a step began after its recorded execution was
  checkpointed, and every execution that was not recorded belonged to a process that was
  killed or cut at the time (at-least-once: a step in flight at a kill may run twice);
- no operation was recorded twice: one StepSucceeded per step, one end per run;
- the recovery time, from a kill to the last orphaned run being leased again, is printed.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

import durable
from tests import pgkit
from tests.apps import pg_chaos_app as app
from tests.kit import Proc, Procs

pytestmark = pytest.mark.crash

RUNS = 1000
WORKERS = 4
LEASE = 2.0
KILL_EVERY = 2.0
CONCURRENCY = 50  # runs in flight per worker: what a kill interrupts
CUT_AT = 5.0  # seconds into the chaos: cut one worker's connections
SPARE_AFTER_CUT = 6.0  # the cut worker is not killed for this long, to see it carry on
DEADLINE = 120.0  # the whole chaos, start to last run ended (about 30 s on a quiet machine)
APP = Path(app.__file__)


@dataclass
class Kill:
    pid: int
    at: float
    orphans: dict[str, int]  # run id -> its token when the worker died
    resumed: dict[str, float] = field(default_factory=dict)  # run id -> when it was re-leased


class Fleet:
    """The worker processes: started, killed, cut and replaced, each with its own
    application_name so its PostgreSQL sessions can be found."""

    def __init__(self, db: str, server: str, effects: Path) -> None:
        self.db, self.server, self.effects = db, server, effects
        self.procs = Procs(effects, grace=30)
        self.live: dict[int, tuple[Proc, str]] = {}
        self.dead: set[int] = set()

    def spawn(self) -> None:
        name = f"durable-chaos-{len(self.procs) + 1}"
        proc = self.procs.start(
            sys.executable, str(APP), "--db", pgkit.with_params(self.db, application_name=name),
            "--effects", str(self.effects), "--lease", str(LEASE),
            "--concurrency", str(CONCURRENCY), name="worker")
        self.live[proc.pid] = (proc, name)

    def ready(self) -> list[int]:
        """Live workers that have opened the database (starting one can take seconds here)."""
        return [pid for pid in self.live if (self.effects / f"ready-{pid}").exists()]

    def kill(self, pid: int) -> None:
        proc, _ = self.live.pop(pid)
        proc.kill()
        self.dead.add(pid)

    def cut(self, pid: int) -> int:
        return pgkit.terminate(self.server, self.live[pid][1])

    def stop(self) -> None:
        self.procs.close()

    def crashed(self) -> list[str]:
        """Output of workers that exited on their own: there should be none."""
        return [p.output()[-3000:] for p in self.procs if "Traceback" in p.output()]


def test_chaos_kills_and_cuts_lose_nothing(pg_server: str, pg_url: str, tmp_path: Path) -> None:
    client = durable.Client(pg_url)
    monitor = psycopg.connect(pg_url, autocommit=True)
    fleet = Fleet(pg_url, pg_server, tmp_path)
    inputs = {f"c{n:04d}": n for n in range(RUNS)}
    kills: list[Kill] = []
    cut: tuple[int, float] | None = None
    try:
        async def start_all() -> None:
            await asyncio.gather(*(client.start_async(app.chaos, n, id=run_id)
                                   for run_id, n in inputs.items()))
        asyncio.run(start_all())
        for _ in range(WORKERS):
            fleet.spawn()
        began = time.monotonic()
        signal_errors: list[BaseException] = []
        signaller = threading.Thread(target=_signal_all, args=(client, inputs, signal_errors),
                                     daemon=True)
        signaller.start()

        next_kill, next_report = began + KILL_EVERY, began + 10
        while left := _running(monitor):
            now = time.monotonic()
            if now >= next_report:  # seen with pytest -s
                print(f"chaos: {now - began:.0f}s, {left} runs left", flush=True)
                next_report += 10
            assert not signal_errors, f"sending a signal failed: {signal_errors[0]!r}"
            assert now - began < DEADLINE, (
                f"{left} runs still RUNNING after {DEADLINE:.0f}s of chaos; "
                f"signals {'still being' if signaller.is_alive() else 'all'} sent; "
                f"{_stuck(monitor)}")
            _note_resumed(monitor, kills)
            if cut is None and now - began >= CUT_AT and fleet.ready():
                pid = random.choice(fleet.ready())
                if fleet.cut(pid):  # else it has not connected yet: another one, next time
                    cut = (pid, time.time())
            spared = {cut[0]} if cut and time.time() - cut[1] < SPARE_AFTER_CUT else set()
            victims = [pid for pid in fleet.ready() if pid not in spared]
            if now >= next_kill and victims:
                pid = random.choice(victims)
                kills.append(Kill(pid, time.time(), _leased_by(monitor, pid)))
                fleet.kill(pid)
                fleet.spawn()
                next_kill += KILL_EVERY
            time.sleep(0.05)  # the chaos loop's tick: not a wait for anything
        elapsed = time.monotonic() - began
        signaller.join(30)
        _note_resumed(monitor, kills)
    finally:
        fleet.stop()
        monitor.close()

    try:
        assert not fleet.crashed(), "a worker crashed:\n" + "\n---\n".join(fleet.crashed())
        assert cut is not None
        _check(client, pg_url, tmp_path, inputs, fleet, kills, cut, elapsed)
    finally:
        client.close()


def _signal_all(client: durable.Client, inputs: dict[str, int],
                errors: list[BaseException]) -> None:
    """Send each run its signal while the runs go on: some before they wait (buffered), some
    after, in random order, over a few seconds, 50 at a time (one transaction, most often)."""
    order = list(inputs)
    random.shuffle(order)
    try:
        for i in range(0, len(order), 50):
            futures = [client.store.write(_signal(run_id, app.signal_value(inputs[run_id])))
                       for run_id in order[i:i + 50]]
            for f in futures:
                f.result()
            time.sleep(0.1)  # the scenario: signals spread over the runs' lifetime
    except BaseException as e:
        errors.append(e)


def _signal(run_id: str, k: int) -> Any:
    from durable.engine import machine

    payload = json.dumps({"k": k})
    return lambda tx: machine.signal(tx, run_id, "bump", payload, time.time())


def _running(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM runs WHERE status = 'RUNNING'").fetchone()
    assert row is not None
    return int(row[0])


def _stuck(conn: psycopg.Connection[Any]) -> str:
    """What the runs still RUNNING wait for, to say why the chaos did not finish."""
    rows = conn.execute(
        "SELECT r.lease_owner IS NOT NULL, r.ready_at IS NOT NULL, o.type, o.name, o.status,"
        " count(*) FROM runs r LEFT JOIN operations o ON o.run_id = r.run_id"
        " AND o.status IN ('STARTED', 'PENDING', 'READY') WHERE r.status = 'RUNNING'"
        " GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC LIMIT 10").fetchall()
    return "(leased, ready, waiting on type, name, status, runs): " + repr(rows)


def _leased_by(conn: psycopg.Connection[Any], pid: int) -> dict[str, int]:
    """Runs whose lease the worker `pid` holds (its owner id is host:pid:random)."""
    rows = conn.execute(
        "SELECT run_id, token FROM runs WHERE status = 'RUNNING' AND lease_owner LIKE %s",
        (f"%:{pid}:%",)).fetchall()
    return {str(run_id): int(token) for run_id, token in rows}


def _note_resumed(conn: psycopg.Connection[Any], kills: list[Kill]) -> None:
    """Mark orphans that someone has leased again (their token moved) or that ended."""
    now = time.time()
    for kill in kills:
        waiting = [r for r in kill.orphans if r not in kill.resumed]
        if not waiting:
            continue
        rows = conn.execute("SELECT run_id, token, status FROM runs WHERE run_id = ANY(%s)",
                            (waiting,)).fetchall()
        for run_id, token, status in rows:
            if token > kill.orphans[run_id] or status != "RUNNING":
                kill.resumed[run_id] = now


def _check(client: durable.Client, db: str, effects: Path, inputs: dict[str, int], fleet: Fleet,
           kills: list[Kill], cut: tuple[int, float], elapsed: float) -> None:
    # 1. every run succeeded with the right result
    runs = {r.run_id: r for r in client.list(limit=RUNS + 1)}
    assert len(runs) == RUNS
    wrong = {run_id: (r.status, r.result) for run_id, r in runs.items()
             if r.status is not durable.ExecutionStatus.SUCCEEDED
             or json.loads(r.result or "null") != app.expected(inputs[run_id])}
    assert not wrong, f"{len(wrong)} runs wrong, e.g. {list(wrong.items())[:5]}"

    # 2. no operation recorded twice
    with psycopg.connect(db) as conn:
        twice = conn.execute(
            "SELECT run_id, op_id, type, count(*) FROM history"
            " WHERE type IN ('StepSucceeded', 'ExecutionSucceeded', 'CallbackSucceeded')"
            " GROUP BY run_id, op_id, type HAVING count(*) > 1").fetchall()
        recorded = {(run_id, name): (json.loads(result)["nonce"], ended) for run_id, name, result,
                    ended in conn.execute(
                        "SELECT run_id, name, result, ended_at FROM operations"
                        " WHERE type = 'STEP' AND status = 'SUCCEEDED' AND name LIKE 's%'")}
    assert not twice, f"operations recorded twice: {twice[:5]}"
    assert len(recorded) == RUNS * app.STEPS

    # 3. no completed step ran again; extra executions only of steps in flight
    executions: dict[tuple[str, str], list[tuple[int, str, float]]] = defaultdict(list)
    for log in effects.glob("effects-*.log"):
        for line in log.read_text().splitlines():
            run_id, i, pid_text, nonce, at_text = line.split()
            executions[(run_id, f"s{i}")].append((int(pid_text), nonce, float(at_text)))
    reran_after_done: list[tuple[tuple[str, str], int, float]] = []
    overtaken: list[tuple[tuple[str, str], int, str]] = []
    extra = 0
    interrupted = fleet.dead | {cut[0]}
    for key, (nonce, ended) in recorded.items():
        runs_of = executions[key]
        assert nonce in {n for _, n, _ in runs_of}, f"{key}: its recorded execution left no trace"
        for pid, n, at in runs_of:
            if n == nonce:
                continue
            extra += 1
            if at > ended:
                reran_after_done.append((key, pid, at - ended))
            elif pid not in interrupted:
                # A live worker whose lease ran out (a stall longer than the lease, as on a
                # loaded machine) races its successor; fencing keeps only one record.
                overtaken.append((key, pid, f"{at - ended:+.3f}s after it was recorded"))
    assert not reran_after_done, f"completed steps ran again: {reran_after_done[:5]}"

    # 4. the worker whose connections were cut carried on
    cut_pid, cut_at = cut
    after_cut = [at for runs_of in executions.values() for pid, _, at in runs_of
                 if pid == cut_pid and at > cut_at]
    assert after_cut, "the worker whose connections were cut ran no step afterwards"

    # 5. recovery times, reported
    recoveries = [max(k.resumed.values()) - k.at for k in kills
                  if k.orphans and len(k.resumed) == len(k.orphans)]
    assert all(len(k.resumed) == len(k.orphans) for k in kills), "orphaned runs never resumed"
    orphans = sum(len(k.orphans) for k in kills)
    print(f"\nchaos: {RUNS} runs x {app.STEPS} steps on {WORKERS} workers in {elapsed:.1f}s;"
          f" {len(kills)} SIGKILLs orphaning {orphans} runs; the connections of worker"
          f" {cut_pid} cut once, its first step after that {min(after_cut) - cut_at:.2f}s later;"
          f" {extra} step executions repeated (in flight at a kill or cut, or"
          f" {len(overtaken)} by a stalled worker whose lease was taken over)")
    if recoveries:
        print(f"chaos: recovery from a kill to its last orphan leased again (lease {LEASE}s):"
              f" median {statistics.median(recoveries):.2f}s, max {max(recoveries):.2f}s"
              f" over {len(recoveries)} kills with orphans")
