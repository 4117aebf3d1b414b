"""Step throughput and latency: N workflows x M trivial async steps at concurrency C.

Prints one JSON line: workflows/s, steps/s, p50/p99 step latency (ms), peak RSS (MB), the
parameters and the database URL, plus a baseline measured in the same process and run: raw SQLite
single-row INSERT+COMMIT transactions with WAL and synchronous=FULL on a scratch file in the same
directory. This machine is noisy (shared, 2 cores), so compare ratios to the baseline rather than
absolute figures across runs.

    python benchmarks/steps.py --workflows 200 --steps 10 --concurrency 1     # sequential
    python benchmarks/steps.py --workflows 1000 --steps 10 --concurrency 64
    python benchmarks/steps.py --workers 4 --db postgresql://postgres@127.0.0.1/test

What is measured:
- wall time: from the moment the workers may start claiming until every run has ended. Runs are
  enqueued before (one group commit) and worker processes are started and ready before, so
  neither enqueueing nor interpreter start-up counts.
- step latency: from the step body starting to the workflow resuming after the step's checkpoint
  is durable (the await returning), i.e. what a workflow waits per step, fsync included.
- peak RSS: of the process running the workflows (the largest one with --workers > 1).

The database is fresh for every run: by default a new SQLite file in a new temp directory (removed
after); a --db SQLite path must not exist yet; for --db postgresql://... a new database is created
on that server and dropped after. With --workers W > 1, W worker processes of this script serve
the same database, each with --concurrency C.
"""

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import durable
from durable import Context, workflow

LATENCIES: list[float] = []
"""Step latencies (seconds) observed by the workflows running in this process."""


async def noop(started: list[float]) -> None:
    """The trivial step. It notes when its body began, which costs one perf_counter call."""
    started[0] = time.perf_counter()


@workflow
async def bench(ctx: Context, steps: int) -> int:
    started = [0.0]
    for _ in range(steps):
        await ctx.step(noop, started)
        if started[0]:  # 0 when the step was replayed rather than run (not expected here)
            LATENCIES.append(time.perf_counter() - started[0])
            started[0] = 0.0
    return steps


# -- measuring ----------------------------------------------------------------------------------

def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def percentile_ms(sorted_samples: list[float], q: float) -> float | None:
    if not sorted_samples:
        return None
    return round(sorted_samples[min(len(sorted_samples) - 1, int(q * len(sorted_samples)))]
                 * 1000, 3)


def sqlite_commit_baseline(directory: Path, seconds: float = 1.0) -> float:
    """Single-row INSERT+COMMIT transactions per second, WAL and synchronous=FULL: the floor
    under any SQLite engine that makes each step durable before going on."""
    path = directory / f"baseline-{uuid.uuid4().hex[:8]}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT)")
        commits, start = 0, time.perf_counter()
        while commits % 50 or time.perf_counter() - start < seconds:
            conn.execute("BEGIN")
            conn.execute("INSERT INTO t (payload) VALUES (?)", ("x" * 64,))
            conn.execute("COMMIT")
            commits += 1
        return commits / (time.perf_counter() - start)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def postgres_commit_baseline(url: str, seconds: float = 1.0) -> float:
    """The same single-row commit loop on PostgreSQL (synchronous_commit on)."""
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("CREATE TEMP TABLE baseline (id SERIAL PRIMARY KEY, payload TEXT)")
        conn.commit()
        commits, start = 0, time.perf_counter()
        while commits % 50 or time.perf_counter() - start < seconds:
            conn.execute("INSERT INTO baseline (payload) VALUES (%s)", ("x" * 64,))
            conn.commit()
            commits += 1
        return commits / (time.perf_counter() - start)


# -- a fresh database per run -------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    db: str  # the URL the workers use
    scratch: Path  # where the baseline file and worker reports go


@contextlib.contextmanager
def fresh_database(url: str | None, prefix: str = "durable_bench") -> Iterator[Target]:
    """A new database for one run, removed after: SQLite in a temp directory by default; on a
    PostgreSQL server, a new database named `prefix` and a random suffix."""
    scratch = Path(tempfile.mkdtemp(prefix="durable-bench-"))
    try:
        if url is None:
            yield Target(f"sqlite:///{scratch / 'steps.db'}", scratch)
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            if path.exists():
                raise SystemExit(f"steps.py: {path} exists; the benchmark needs a fresh "
                                 "database: pass a new path, or omit --db for a temp file")
            path.parent.mkdir(parents=True, exist_ok=True)
            yield Target(url, path.parent)
        elif url.startswith(("postgresql://", "postgres://")):
            with _fresh_postgres(url, prefix) as fresh:
                yield Target(fresh, scratch)
        else:
            raise SystemExit(f"steps.py: unsupported --db {url!r}: use sqlite:///path or "
                             "postgresql://...")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _fresh_postgres(url: str, prefix: str) -> Iterator[str]:
    """Create a new database on the server `url` points at; drop it afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- running ------------------------------------------------------------------------------------

async def enqueue(db: str, workflows: int, steps: int) -> None:
    client = durable.Client(db)
    try:
        await asyncio.gather(*(client.start_async(bench, steps, id=f"bench-{i}")
                               for i in range(workflows)))
    finally:
        client.close()


async def run_in_process(db: str, workflows: int, concurrency: int, timeout: float) -> float:
    """One worker in this process; returns the wall time until it has completed every run."""
    worker = durable.Worker([bench], db=db, concurrency=concurrency)
    try:
        start = time.perf_counter()
        await asyncio.wait_for(
            worker.run_async(until=lambda: worker.stats.completed >= workflows), timeout)
        return time.perf_counter() - start
    finally:
        worker.store.close()


def run_in_processes(target: Target, workers: int, concurrency: int,
                     timeout: float) -> tuple[float, float]:
    """W worker processes on one database; returns (wall time, their largest peak RSS in MB).

    Each worker starts, opens the store and says "ready"; all are then told "go" at once and the
    clock starts. When no run is left RUNNING the clock stops and the workers are sent SIGTERM,
    drain, and write their step latencies to a report file.
    """
    reports = [target.scratch / f"worker-{i}.json" for i in range(workers)]
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--serve", target.db, "--concurrency", str(concurrency),
         "--report", str(report)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for report in reports]
    client = durable.Client(target.db)
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("steps.py: a worker process failed to start")
        start = time.perf_counter()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        while client.list(status="RUNNING", limit=1):
            if time.perf_counter() - start > timeout:
                raise TimeoutError(f"runs still RUNNING after {timeout}s")
            time.sleep(0.005)
        wall = time.perf_counter() - start
    finally:
        client.close()
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    rss = 0.0
    for report in reports:
        data = json.loads(report.read_text())
        LATENCIES.extend(data["latencies"])
        rss = max(rss, data["peak_rss_mb"])
    return wall, rss


def serve(db: str, concurrency: int, report: Path) -> None:
    """Worker-process mode (--serve): wait for "go" on stdin, serve until SIGTERM, report."""
    worker = durable.Worker([bench], db=db, concurrency=concurrency)
    print("ready", flush=True)
    sys.stdin.readline()
    worker.run()
    report.write_text(json.dumps({"latencies": LATENCIES, "peak_rss_mb": peak_rss_mb()}))


def benchmark(args: argparse.Namespace) -> dict[str, object]:
    with fresh_database(args.db) as target:
        baseline = sqlite_commit_baseline(target.scratch)
        asyncio.run(enqueue(target.db, args.workflows, args.steps))
        if args.workers == 1:
            wall = asyncio.run(run_in_process(target.db, args.workflows, args.concurrency,
                                              args.timeout))
            rss = peak_rss_mb()
        else:
            wall, rss = run_in_processes(target, args.workers, args.concurrency, args.timeout)
        client = durable.Client(target.db)
        try:
            succeeded = len(client.list(status="SUCCEEDED", limit=args.workflows + 1))
        finally:
            client.close()
        pg_baseline = (postgres_commit_baseline(target.db)
                       if target.db.startswith("postgres") else None)
    if succeeded != args.workflows:
        raise SystemExit(f"steps.py: only {succeeded} of {args.workflows} runs succeeded")
    total = args.workflows * args.steps
    latencies = sorted(LATENCIES)
    result: dict[str, object] = {
        "benchmark": "steps",
        "db": target.db,
        "workflows": args.workflows,
        "steps": args.steps,
        "concurrency": args.concurrency,
        "workers": args.workers,
        "total_steps": total,
        "wall_s": round(wall, 3),
        "workflows_per_s": round(args.workflows / wall, 1),
        "steps_per_s": round(total / wall, 1),
        "step_latency_p50_ms": percentile_ms(latencies, 0.50),
        "step_latency_p99_ms": percentile_ms(latencies, 0.99),
        "step_latency_mean_ms": (round(sum(latencies) / len(latencies) * 1000, 3)
                                 if latencies else None),
        "latency_samples": len(latencies),
        "peak_rss_mb": round(rss, 1),
        "baseline_sqlite_commits_per_s": round(baseline, 1),
        "steps_per_s_over_baseline": round(total / wall / baseline, 3),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
    }
    if pg_baseline is not None:
        result["baseline_postgres_commits_per_s"] = round(pg_baseline, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workflows", type=int, default=1000, metavar="N")
    parser.add_argument("--steps", type=int, default=10, metavar="M",
                        help="trivial async steps per workflow")
    parser.add_argument("--concurrency", type=int, default=64, metavar="C",
                        help="runs in flight per worker process (1 = sequential)")
    parser.add_argument("--workers", type=int, default=1, metavar="W",
                        help="worker processes sharing the database")
    parser.add_argument("--db", metavar="URL",
                        help="sqlite:///new/file.db or postgresql://... (default: temp SQLite)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="SECONDS",
                        help="give up when the runs have not all ended by then")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.concurrency, args.report)
        return
    if min(args.workflows, args.steps, args.concurrency, args.workers) < 1:
        parser.error("--workflows, --steps, --concurrency and --workers must be at least 1")
    print(json.dumps(benchmark(args)), flush=True)


if __name__ == "__main__":
    main()
