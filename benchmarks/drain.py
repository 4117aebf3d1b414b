"""The queue-drain shape: one process enqueues runs, `durable worker` processes drain them.

Prints one JSON object: for each shape, the medians (and min-max) of the repetitions of

- drain: a `durable.Client` in this process enqueues N runs of M trivial steps (group-committed,
  before any worker exists); then W `durable worker` subprocesses with --concurrency C drain them.
  steps/s from the first claim to the last completion, both read from the store afterwards: the
  earliest step start (`operations.started_at`; a claim starts its run's first step at once) and
  the latest `runs.ended_at`. Interpreter start-up and enqueueing are outside that window.
- dbos: DBOS's queue in the same shape (benchmarks/peers/drain_dbos.py, under the peers'
  virtualenv that benchmarks/compare.py makes), at worker_concurrency C, or --dbos-threads for
  the concurrent shape;
- beside: benchmarks/steps.py with the same N, M and C (runs enqueued, then served by a worker in
  that process: the shape docs/benchmarks.md measures);
- sqlite_commits_per_s: raw single-row INSERT+COMMIT transactions, WAL and synchronous=FULL, in
  the same directory: the ceiling for one commit per step.

and the ratios asked of them (issue 19): drain over DBOS, drain over beside, beside and drain
over the raw commit rate. Each repetition runs every system once, in an order that rotates
between repetitions, so a shared machine's drifts hit all alike.

    python benchmarks/drain.py                    # both shapes, 1 repetition (~2 minutes)
    python benchmarks/drain.py --reps 3           # what docs/benchmarks.md reports
    python benchmarks/drain.py --shapes c1 --no-dbos
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import compare
import steps as steps_bench

import durable
from durable import Context, workflow

HERE = Path(__file__).resolve().parent

SHAPES = {"c1": (300, 1), "c64": (2000, 64)}
"""Shape name -> (runs, worker concurrency), each run of --steps steps."""


async def noop(i: int) -> None:
    """The trivial step."""


@workflow
async def drain_bench(ctx: Context, steps: int) -> int:
    for i in range(steps):
        await ctx.step(noop, i)
    return steps


async def _enqueue(client: durable.Client, runs: int, steps: int) -> None:
    await asyncio.gather(*(client.start_async(drain_bench, steps, id=f"d-{i}")
                           for i in range(runs)))


def durable_drain(runs: int, steps: int, concurrency: int, workers: int,
                  timeout: float, where: str | None) -> dict[str, Any]:
    """One drain on a fresh SQLite file: enqueue, start the workers, wait until no run is left
    RUNNING, stop them, read the window from the store."""
    with tempfile.TemporaryDirectory(prefix="durable-drain-", dir=where) as scratch:
        db = f"sqlite:///{Path(scratch) / 'drain.db'}"
        client = durable.Client(db)
        try:
            asyncio.run(_enqueue(client, runs, steps))
            procs = [subprocess.Popen(
                [str(Path(sys.executable).parent / "durable"), "worker",
                 f"{__file__}:drain_bench", "--db", db, "--concurrency", str(concurrency)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for _ in range(workers)]
            try:
                deadline = time.monotonic() + timeout
                while client.list(status="RUNNING", limit=1):
                    if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                        raise SystemExit("drain.py: the workers did not drain the runs")
                    time.sleep(0.02)
            finally:
                for p in procs:
                    p.send_signal(signal.SIGTERM)
                for p in procs:
                    _, err = p.communicate(timeout=60)
                    if p.returncode != 0:
                        sys.stderr.write(err)
        finally:
            client.close()
        conn = sqlite3.connect(db.removeprefix("sqlite:///"))
        try:
            first = conn.execute("SELECT min(started_at) FROM operations").fetchone()[0]
            last, succeeded = conn.execute(
                "SELECT max(ended_at), count(*) FROM runs WHERE status = 'SUCCEEDED'").fetchone()
        finally:
            conn.close()
    if succeeded != runs:
        raise SystemExit(f"drain.py: {succeeded} of {runs} runs succeeded")
    wall = last - first
    return {"wall_s": round(wall, 3), "steps_per_s": round(runs * steps / wall, 1)}


def dbos_drain(python: Path, runs: int, steps: int, concurrency: int,
               where: str | None) -> dict[str, Any]:
    out = subprocess.run([str(python), str(HERE / "peers" / "drain_dbos.py"), "--runs",
                          str(runs), "--steps", str(steps), "--concurrency", str(concurrency),
                          *(["--dir", where] if where else [])],
                         capture_output=True, text=True, check=True, timeout=1800)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def beside(runs: int, steps: int, concurrency: int, where: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="durable-drain-", dir=where) as scratch:
        out = subprocess.run([sys.executable, str(HERE / "steps.py"), "--workflows", str(runs),
                              "--steps", str(steps), "--concurrency", str(concurrency),
                              "--db", f"sqlite:///{Path(scratch) / 'steps.db'}"],
                             capture_output=True, text=True, check=True, timeout=1800)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall_s": result["wall_s"], "steps_per_s": result["steps_per_s"]}


def commit_rate(where: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="durable-drain-", dir=where) as scratch:
        return {"steps_per_s": round(steps_bench.sqlite_commit_baseline(Path(scratch)), 1)}


def _median(records: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["steps_per_s"] for r in records]
    return {"steps_per_s": round(statistics.median(values), 1),
            "min": min(values), "max": max(values), "reps": len(values)}


def _ratio(over: list[dict[str, Any]], under: list[dict[str, Any]]) -> float:
    """The median of per-repetition ratios (the two measured minutes apart at most)."""
    return round(statistics.median(a["steps_per_s"] / b["steps_per_s"]
                                   for a, b in zip(over, under, strict=True)), 3)


def run_shape(name: str, args: argparse.Namespace, peers: Path | None) -> dict[str, Any]:
    runs, concurrency = SHAPES[name]
    runs = args.runs or runs
    dbos_c = concurrency if concurrency == 1 else args.dbos_threads
    systems: dict[str, Any] = {
        "drain": lambda: durable_drain(runs, args.steps, concurrency, args.workers,
                                       args.timeout, args.dir),
        "beside": lambda: beside(runs, args.steps, concurrency, args.dir),
        "sqlite_commits": lambda: commit_rate(args.dir),
    }
    if peers is not None:
        systems["dbos"] = lambda: dbos_drain(peers, runs, args.steps, dbos_c, args.dir)
    records: dict[str, list[dict[str, Any]]] = {key: [] for key in systems}
    order = list(systems)
    for rep in range(args.reps):
        for key in order[rep % len(order):] + order[:rep % len(order)]:
            compare.log(f"drain.py: {name} rep {rep + 1}/{args.reps}: {key}")
            records[key].append(systems[key]())
    result: dict[str, Any] = {
        "runs": runs, "steps": args.steps, "concurrency": concurrency, "workers": args.workers,
        **{key: _median(rs) for key, rs in records.items()},
        "raw": records,
        "drain_over_beside": _ratio(records["drain"], records["beside"]),
        "drain_over_sqlite_commits": _ratio(records["drain"], records["sqlite_commits"]),
        "beside_over_sqlite_commits": _ratio(records["beside"], records["sqlite_commits"]),
    }
    if peers is not None:
        result["dbos"]["worker_concurrency"] = dbos_c
        result["drain_over_dbos"] = _ratio(records["drain"], records["dbos"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each system")
    parser.add_argument("--runs", type=int, help="runs per shape (default: 300 for c1, "
                        "2000 for c64)")
    parser.add_argument("--steps", type=int, default=10, help="steps per run")
    parser.add_argument("--workers", type=int, default=1, help="`durable worker` processes")
    parser.add_argument("--dbos-threads", type=int, default=16,
                        help="DBOS's worker_concurrency in the concurrent shape")
    parser.add_argument("--no-dbos", action="store_true", help="skip the peer")
    parser.add_argument("--dir", help="where the databases go (default: the temp directory); "
                        "on a tmpfs, where fsync costs nothing, what is left is the CPU's part")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS")
    args = parser.parse_args()
    if min(args.reps, args.steps, args.workers, args.runs or 1) < 1:
        parser.error("--reps, --runs, --steps and --workers must be at least 1")
    peers = None if args.no_dbos else compare.ensure_peers_venv(compare.DEFAULT_PEERS_VENV)[0]
    started = time.perf_counter()
    shapes = {name: run_shape(name, args, peers) for name in args.shapes}
    print(json.dumps({
        "benchmark": "drain", "shapes": shapes,
        "targets": {"c1_drain_over_dbos": 10, "c64_drain_over_dbos": 50,
                    "c1_beside_over_sqlite_commits": 0.5, "c64_beside_steps_per_s": 25_000},
        "dir": args.dir or tempfile.gettempdir(),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg(),
                    "python": platform.python_version(), "sqlite": sqlite3.sqlite_version},
        "seconds": round(time.perf_counter() - started, 1)}), flush=True)


if __name__ == "__main__":
    main()
