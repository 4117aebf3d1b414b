"""The key-value store under concurrent runs on four `durable worker` processes, on both
stores: a shared counter ends exact, and stays exact when workers are SIGKILLed while they
increment it, at the worst moment too (inside the transaction that writes it)."""

from __future__ import annotations

import os

import durable
from tests.apps import kv_app
from tests.kit import DURABLE, Proc, Procs, wait_until

APP = "tests/apps/kv_app.py"
FINISH = 300.0  # seconds for every run to end: 10,000 checkpoints on a loaded 2-core machine


def worker(procs: Procs, db: str, **env: str) -> Proc:
    return procs.start(DURABLE, "worker", APP, "--db", db, "--concurrency", "25",
                       "--lease", "1", name="worker", env={**os.environ, **env})


def start_runs(client: durable.Client, runs: int, times: int) -> list[str]:
    return [client.start(kv_app.bump, times, id=f"bump-{i}").run_id for i in range(runs)]


def finish_all(client: durable.Client, run_ids: list[str], procs: Procs) -> list[list[int]]:
    def ended() -> bool:
        return all(client.get(r).status.ended for r in run_ids)
    wait_until(ended, lambda: f"every run to end:\n{procs.logs()[-4000:]}", timeout=FINISH,
               interval=0.5)
    results = []
    for run_id in run_ids:
        run = client.get(run_id)
        assert run.status is durable.ExecutionStatus.SUCCEEDED, (run, procs.logs()[-4000:])
        results.append(client.result(run_id))
    return results


def assert_exact(client: durable.Client, results: list[list[int]], total: int) -> None:
    """The counter holds `total`, and the adds answered each of 1..total exactly once: none
    was applied twice, none lost, whichever worker and invocation made it."""
    assert client.kv.get(kv_app.COUNTER) == total
    assert sorted(v for seen in results for v in seen) == list(range(1, total + 1))


def test_four_workers_count_to_exactly_ten_thousand(any_db: str, procs: Procs) -> None:
    client = durable.Client(any_db)
    try:
        run_ids = start_runs(client, runs=100, times=100)
        for _ in range(4):
            worker(procs, any_db)
        assert_exact(client, finish_all(client, run_ids, procs), 10_000)
    finally:
        client.close()


def test_workers_killed_while_counting_leave_the_count_exact(any_db: str,
                                                             procs: Procs) -> None:
    """One worker kills itself inside its 100th add's transaction (it has claimed runs
    before the others start, so it gets that far); once the counter is past half way,
    another is SIGKILLed from outside, wherever it is. The survivors take their runs over
    and finish them."""
    client = durable.Client(any_db)
    try:
        run_ids = start_runs(client, runs=40, times=50)
        dying = worker(procs, any_db, KV_DIE_AT="100")
        wait_until(lambda: client.kv.get(kv_app.COUNTER, 0) > 0, "the first adds",
                   timeout=FINISH)
        killed = worker(procs, any_db)
        worker(procs, any_db)
        worker(procs, any_db)
        assert dying.wait_exit(FINISH) == -9
        wait_until(lambda: client.kv.get(kv_app.COUNTER, 0) >= 1000, "half the adds",
                   timeout=FINISH)
        assert killed.kill() == -9
        assert_exact(client, finish_all(client, run_ids, procs), 2000)
    finally:
        client.close()
