"""What a step costs the drain path, counted rather than timed: Python calls and SQL statements
per step on the event loop and on the group-commit writer thread.

A shared machine's load moves every timing (docs/benchmarks.md, Drain), but not these counts, so
they are what an A/B of a change to the step path can be read from on such a machine:

    python benchmarks/drain_counts.py                       # concurrency 1 and 64
    PYTHONPATH=/path/to/other/src python benchmarks/drain_counts.py

Runs are enqueued by a Client (as in benchmarks/drain.py), then drained by a Worker in this
process under cProfile: the loop's profile covers the whole drain, the writer's every batch it
commits (on SQLite a lone write commits on the loop and counts there). A fresh SQLite file in
the temp directory (or --dir) per shape. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import tempfile
import threading
from pathlib import Path
from typing import Any

import drain

import durable
from durable.store import batch

SQL = "<method 'execute' of 'sqlite3.Connection' objects>"


def counts(profile: cProfile.Profile, steps: int) -> dict[str, float] | None:
    """Calls and SQL statements per step in `profile`; None if it saw nothing."""
    try:
        stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    except TypeError:  # no call profiled at all
        return None
    calls = sum(v[1] for v in stats.values())
    sql = sum(v[1] for k, v in stats.items() if k[2] == SQL)
    return {"calls_per_step": round(calls / steps, 1), "sql_per_step": round(sql / steps, 2)}


def measure(runs: int, steps: int, concurrency: int, where: str | None) -> dict[str, Any]:
    writer = cProfile.Profile()
    commit = batch.BatchWriter._commit

    def profiled(self: batch.BatchWriter, *args: Any) -> None:
        if threading.current_thread() is threading.main_thread():
            return commit(self, *args)
        writer.enable()
        try:
            return commit(self, *args)
        finally:
            writer.disable()

    with tempfile.TemporaryDirectory(prefix="durable-counts-", dir=where) as scratch:
        db = f"sqlite:///{Path(scratch) / 'counts.db'}"
        client = durable.Client(db)
        try:
            asyncio.run(drain._enqueue(client, runs, steps))
        finally:
            client.close()
        batch.BatchWriter._commit = profiled  # type: ignore[method-assign]
        loop = cProfile.Profile()
        try:
            worker = durable.Worker([drain.drain_bench], db=db, concurrency=concurrency)
            try:
                loop.enable()
                asyncio.run(worker.run_async(until=lambda: worker.stats.completed >= runs))
                loop.disable()
            finally:
                worker.store.close()
        finally:
            batch.BatchWriter._commit = commit  # type: ignore[method-assign]
    total = runs * steps
    return {"runs": runs, "steps": steps, "concurrency": concurrency,
            "loop": counts(loop, total), "writer": counts(writer, total)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dir", help="where the databases go (default: the temp directory)")
    args = parser.parse_args()
    shapes = [measure(runs, args.steps, concurrency, args.dir)
              for runs, concurrency in drain.SHAPES.values()]
    print(json.dumps({"benchmark": "drain_counts", "durable": durable.__file__,
                      "shapes": shapes}), flush=True)


if __name__ == "__main__":
    main()
