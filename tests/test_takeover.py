"""Takeover across hosts on PostgreSQL: a `durable worker` whose process dies loses its runs to
the workers of other hosts at once (its database session ends, and with it the presence lock its
peers look for), not when its 30 s leases run out; and one frozen past its lease, whose runs were
taken over meanwhile, writes nothing once thawed.

The workers are `durable worker tests/apps/chaos_app.py:held` processes, each named for a host
of its own (DURABLE_WORKER_HOST), so that none may judge another dead by its pid: only the
database tells them. The kill test's bound on kill-to-resume is generous (a third of the lease):
it fails only if the runs waited for their leases to run out.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import durable
from durable.engine.worker import HOST_ENV
from durable.store.postgres import PRESENCE_LOCKS
from tests.apps import chaos_app as app
from tests.chaoskit import CliWorker, Db, Kill
from tests.kit import wait_until

pytestmark = pytest.mark.crash

TARGET = f"{app.__file__}:held"
RUNS = 12
CONCURRENCY = 8  # per worker: room for a lost worker's runs beside a survivor's own
ZOMBIE_CONCURRENCY = 4  # the frozen worker's: a third of the runs
BOUND = 10.0  # seconds from SIGKILL to every orphaned run leased again; the lease is 30 s
SHORT_LEASE = 2.0  # the frozen worker's


@contextmanager
def fleet(db: str, effects: Path, *leases: float | None) -> Iterator[list[CliWorker]]:
    """A worker per lease given (None: the default lease), each of its own host; all stopped
    (SIGTERM, SIGKILL after a grace) at the end."""
    workers: list[CliWorker] = []
    try:
        for lease in leases:
            workers.append(start_worker(db, effects, len(workers), lease,
                                        ZOMBIE_CONCURRENCY if lease else CONCURRENCY))
        yield workers
    finally:
        for w in workers:
            w.stop()


def start_worker(db: str, effects: Path, number: int, lease: float | None,
                 concurrency: int = CONCURRENCY) -> CliWorker:
    args = ["--concurrency", str(concurrency), *(["--lease", str(lease)] if lease else [])]
    worker = CliWorker(TARGET, db, effects, env={HOST_ENV: f"host-{number}"}, args=args,
                       name=f"worker-{number}")
    worker.wait_line("worker serving")
    return worker


def start_runs(client: durable.Client) -> dict[str, int]:
    inputs = {f"t{n:02d}": n for n in range(RUNS)}
    for run_id, n in inputs.items():
        client.start(app.held, n, id=run_id)
    return inputs


def held_by(db: Db, worker: CliWorker, at_least: int) -> dict[str, int]:
    """Once `worker` holds leases on `at_least` runs: those runs, with their tokens."""
    return wait_until(lambda: (held if len(held := db.leased_by(worker.pid)) >= at_least
                               else None), f"worker {worker.pid} to hold {at_least} runs",
                      timeout=60, interval=0.02)


def busiest(db: Db, workers: list[CliWorker]) -> CliWorker:
    """Once every run is leased: the worker holding the most of them."""
    wait_until(lambda: sum(len(db.leased_by(w.pid)) for w in workers) == RUNS,
               "every run to be leased", timeout=60, interval=0.02)
    return max(workers, key=lambda w: len(db.leased_by(w.pid)))


def assert_all_succeeded_once(client: durable.Client, db: Db, inputs: dict[str, int],
                              workers: list[CliWorker]) -> None:
    runs = workers[-1].wait_ended(client, inputs, timeout=120)
    wrong = {r: (run.status, run.result) for r, run in runs.items()
             if run.status is not durable.ExecutionStatus.SUCCEEDED
             or json.loads(run.result or "null") != inputs[r]}
    assert not wrong, f"runs ended wrong: {wrong}"
    twice = db.rows("SELECT run_id, op_id, count(*) FROM history WHERE type = 'StepSucceeded'"
                    " GROUP BY run_id, op_id HAVING count(*) > 1")
    assert not twice, f"steps completed twice: {twice}"


def test_a_worker_killed_on_one_host_loses_its_runs_to_the_other_hosts_within_seconds(
        pg_url: str, tmp_path: Path) -> None:
    client, db = durable.Client(pg_url), Db(pg_url)
    try:
        with fleet(pg_url, tmp_path, None, None, None) as workers:
            inputs = start_runs(client)
            victim = busiest(db, workers)
            kill = Kill(victim.pid, time.time(), db.leased_by(victim.pid))
            victim.kill()
            wait_until(lambda: kill.note_resumed(db) or len(kill.resumed) == len(kill.orphans),
                       "the orphaned runs to be leased again", timeout=60, interval=0.02)
            took = max(kill.resumed.values()) - kill.at
            survivors = "\n".join(w.output() for w in workers if w is not victim)
            assert "its database session ended" in survivors, survivors
            assert took < BOUND, f"{took:.1f}s from the kill to every orphan resumed: the lease's"
            assert_all_succeeded_once(client, db, inputs,
                                      [w for w in workers if w is not victim])
    finally:
        client.close()
    print(f"\n{len(kill.orphans)} runs of a SIGKILLed worker resumed on other hosts "
          f"{took:.2f}s after the kill (lease 30 s)")


def test_a_worker_frozen_past_its_lease_writes_nothing_once_thawed(pg_url: str,
                                                                    tmp_path: Path) -> None:
    client, db = durable.Client(pg_url), Db(pg_url)
    try:
        with fleet(pg_url, tmp_path, SHORT_LEASE) as workers:
            inputs = start_runs(client)
            zombie = workers[0]
            frozen = held_by(db, zombie, at_least=ZOMBIE_CONCURRENCY)
            workers += [start_worker(pg_url, tmp_path, n, None) for n in (1, 2)]
            done_before = succeeded_steps(db, frozen)
            zombie.pause()
            paused_at = time.time()
            # Its runs go to the others once its leases run out (its session lives on: a
            # frozen process's connections stay open), and each completes the step the frozen
            # worker was in the middle of: what the zombie would record again, unfenced.
            wait_until(lambda: all(succeeded_steps(db, frozen)[r] > done_before[r]
                                   for r in frozen), "the frozen worker's runs to move on",
                       timeout=60, interval=0.05)
            thawed_at = time.time()  # before SIGCONT: the zombie writes nothing until then
            zombie.resume()
            assert_all_succeeded_once(client, db, inputs, workers)
            assert zombie.alive, zombie.output()
    finally:
        client.close()
    executions = {line.split()[3]: line.split() for log in tmp_path.glob("held-*.log")
                  for line in log.read_text().splitlines()}
    late = [e for e in executions.values()
            if int(e[2]) == zombie.pid and float(e[5]) >= thawed_at]
    assert late, "the frozen worker ran no step body to its end once thawed: nothing tested"
    recorded = {json.loads(result)["nonce"] for (result,) in db.rows(
        "SELECT result FROM operations WHERE type = 'STEP' AND status = 'SUCCEEDED'")}
    by_zombie = [executions[n] for n in recorded
                 if int(executions[n][2]) == zombie.pid and float(executions[n][5]) > paused_at]
    assert not by_zombie, f"the frozen worker recorded steps after it was frozen: {by_zombie}"
    print(f"\n{len(frozen)} runs taken from a worker frozen past its {SHORT_LEASE:g}s lease; "
          f"thawed, it finished {len(late)} step bodies, and recorded none")


def test_a_worker_whose_presence_session_is_cut_carries_on_and_nothing_completes_twice(
        pg_url: str, tmp_path: Path) -> None:
    client, db = durable.Client(pg_url), Db(pg_url)
    try:
        with fleet(pg_url, tmp_path, None, None) as workers:
            inputs = start_runs(client)
            cut = busiest(db, workers)
            # Its peers may see it gone and take its runs while it lives: it must stop
            # trusting its leases until it is back, and its late writes are fenced.
            (terminated,) = db.rows(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN workers w"
                " ON l.objid = w.lock_key WHERE l.locktype = 'advisory' AND l.classid = ?"
                " AND l.objsubid = 2 AND w.owner LIKE ?", PRESENCE_LOCKS, f"%:{cut.pid}:%")
            assert terminated == (True,)
            cut.wait_line("shows it is alive again")
            assert_all_succeeded_once(client, db, inputs, workers)
            assert cut.alive, cut.output()
    finally:
        client.close()


def succeeded_steps(db: Db, run_ids: dict[str, int]) -> dict[str, int]:
    ids = list(run_ids)
    counts = dict.fromkeys(ids, 0)
    counts.update({str(r): int(c) for r, c in db.rows(
        "SELECT run_id, count(*) FROM operations WHERE type = 'STEP' AND status = 'SUCCEEDED'"
        f" AND run_id IN ({', '.join('?' for _ in ids)}) GROUP BY run_id", *ids)})
    return counts
