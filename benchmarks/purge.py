"""How long one purge batch holds the write lock: what running work may wait behind a purge.

Makes N ended runs through the engine (each: started, leased, one step and one published value
checkpointed, ended SUCCEEDED; 1,000 runs per transaction), then purges them all with
`Client.purge`'s transaction, one batch of B runs at a time, for each B of --batches, timing
each batch's write transaction (on SQLite the write lock is held from its BEGIN IMMEDIATE to its
COMMIT, so this is how long any other writer may wait behind it). Prints one JSON line per
batch size: batches, runs/s, and the batch time p50/p99/max in ms.

    python benchmarks/purge.py                                   # temp SQLite, 20,000 runs
    python benchmarks/purge.py --db postgresql://127.0.0.1/test --runs 50000
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from steps import fresh_database, percentile_ms

from durable.engine import machine
from durable.model import (
    InvocationOutput,
    InvocationStatus,
    OperationAction,
    OperationType,
    OperationUpdate,
    SubType,
)
from durable.store import Tx, open_store

WORKFLOW = "purge_bench"
MADE_PER_TX = 1000


def make_ended_runs(tx: Tx, first: int, count: int, now: float) -> None:
    for i in range(first, first + count):
        run_id = f"r{i}"
        machine.start_run(tx, run_id, WORKFLOW, '"in"', now)
    for c in machine.claim(tx, "bench", now, count, 30, [WORKFLOW]):
        run_id = c.invocation.run_id
        machine.checkpoint(tx, run_id, c.token, [
            OperationUpdate("s1", OperationType.STEP, OperationAction.SUCCEED, name="stage",
                            sub_type=SubType.SET_EVENT, payload='"done"')], now)
        machine.finish_invocation(tx, run_id, c.token,
                                  InvocationOutput(InvocationStatus.SUCCEEDED, result="1"),
                                  now, 0.001)


def measure(url: str, runs: int, batch: int) -> dict[str, object]:
    """Make `runs` ended runs in the database at `url`, then purge them `batch` at a time."""
    store = open_store(url)
    try:
        ended = time.time() - 3600
        for first in range(0, runs, MADE_PER_TX):
            count = min(MADE_PER_TX, runs - first)
            store.write_sync(lambda tx, f=first, n=count: make_ended_runs(tx, f, n, ended))
        times: list[float] = []
        deleted = 0
        began = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            done = store.write_sync(lambda tx: machine.purge(tx, ended + 1, batch))
            times.append(time.perf_counter() - t0)
            deleted += done
            if done < batch:
                break
        total = time.perf_counter() - began
    finally:
        store.close()
    times.sort()
    return {"benchmark": "purge", "store": url.split(":")[0], "runs": deleted, "batch": batch,
            "batches": len(times), "runs_per_s": round(deleted / total),
            "batch_ms_p50": percentile_ms(times, 0.5), "batch_ms_p99": percentile_ms(times, 0.99),
            "batch_ms_max": round(times[-1] * 1000, 3), "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="sqlite:///path or postgresql://... (default: temp SQLite)")
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--batches", default="100,500,2000", help="batch sizes to measure")
    args = parser.parse_args()
    for batch in (int(b) for b in args.batches.split(",")):
        with fresh_database(args.db, "durable_purge_bench") as target:
            print(json.dumps(measure(target.db, args.runs, batch)), flush=True)


if __name__ == "__main__":
    main()
