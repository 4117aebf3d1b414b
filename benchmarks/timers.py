"""Timers at scale: N runs sleeping until one shared instant T all resume, served by W workers.

Prints one JSON line. Each run of `sleeper` sleeps until T, then runs one step. What is measured:

- start: the client starting the N runs (`Client.start_async` for each, gathered: the writer
  group-commits whatever is queued, the only batching the Client offers), workers not running;
- park: from the workers being told "go" until the last run has suspended on its sleep (the
  latest `updated_at` its parking invocation left);
- drain, from T: until the last run resumed (its step body began: `drain_s`, and
  `resumes_per_s` = N / drain_s) and until the last run ended (`completed_s`); resume lateness
  (step body start - T) p50/p99/max; runs resumed per worker (the spread);
- the herd, during the drain: claim statements (`Tx.claim`, timed in the workers: with
  PostgreSQL's pipelining, a claim's time includes flushing the writes queued before it in its
  transaction), how many came back empty, `next_due` reads, and every SQL statement the engine
  issued through `Tx` (BEGIN/COMMIT not included); on PostgreSQL also the server's own account
  from pg_stat_database (commits, rows read, temporary files of sorts spilled to disk).

The SDK has no sleep-until: each run computes its remaining time from a recorded `ctx.now()` at
its first execution, so its due time is T plus the moment between that now() and its checkpoint
(`due_skew_max_ms` reports the largest). Lateness is measured against T, skew included.

    python benchmarks/timers.py --runs 5000 --workers 2                      # temp SQLite
    python benchmarks/timers.py --db postgresql://127.0.0.1/test --runs 100000 --workers 4

The database is fresh for every run (see steps.py's `fresh_database`) and removed after. T is
`--lead` seconds after the starts begin (default: enough for this machine to start and park N
runs, with the slack `park_slack_s` reports); the benchmark stops with an error if the runs are
not all parked by T.
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
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from steps import Target, fresh_database, percentile_ms

import durable
from durable import Context, workflow
from durable.store import Tx

STARTED: list[tuple[str, float]] = []
"""(run id, when its step body began) for the runs resumed in this process."""


async def resumed(run_id: str) -> int:
    """The step after the sleep: notes when it began; returns the pid of the worker that ran it."""
    STARTED.append((run_id, time.time()))
    return os.getpid()


@workflow
async def sleeper(ctx: Context, due: float) -> int:
    # No sleep-until in the SDK: the remaining time comes from a recorded now(), so a replay
    # computes the same duration and the WAIT is due at `due` (plus the time to checkpoint it).
    await ctx.sleep(max(due - ctx.now().timestamp(), 0.0))
    return await ctx.step(resumed, ctx.run_id)


# -- what the workers count ---------------------------------------------------------------------

class Probe:
    """Counts, in a worker process, the engine's SQL statements and claims before and after T.

    Installed by wrapping `Tx` methods (every dialect's Tx derives from it), so the engine runs
    unchanged: the wrappers add one clock read per statement.
    """

    def __init__(self, due: float) -> None:
        self.due = due
        self.statements = [0, 0]  # before T, from T
        self.claims: list[tuple[float, float, int]] = []  # (began, seconds, rows), from T
        self.next_due_reads = 0  # from T

    def install(self) -> None:
        probe = self
        init, claim, next_due = Tx.__init__, Tx.claim, Tx.next_due

        def counting_init(tx: Tx, execute: Callable[[str, Sequence[Any]], Any]) -> None:
            def counted(sql: str, params: Sequence[Any]) -> Any:
                probe.statements[time.time() >= probe.due] += 1
                return execute(sql, params)
            init(tx, counted)

        def timed_claim(tx: Tx, *args: Any, **kwargs: Any) -> list[tuple[Any, int]]:
            began, t0 = time.time(), time.perf_counter()
            rows = claim(tx, *args, **kwargs)
            if began >= probe.due:
                probe.claims.append((began, time.perf_counter() - t0, len(rows)))
            return rows

        def counted_next_due(tx: Tx, *args: Any, **kwargs: Any) -> float | None:
            probe.next_due_reads += time.time() >= probe.due
            return next_due(tx, *args, **kwargs)

        Tx.__init__ = counting_init  # type: ignore[method-assign, assignment]
        Tx.claim = timed_claim  # type: ignore[method-assign, assignment]
        Tx.next_due = counted_next_due  # type: ignore[method-assign, assignment]

    def report(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "started": STARTED, "claims": self.claims,
                "next_due_reads": self.next_due_reads, "statements": self.statements}


def serve(db: str, concurrency: int, due: float, report: Path) -> None:
    """Worker-process mode (--serve): wait for "go" on stdin, serve until SIGTERM, report."""
    probe = Probe(due)
    probe.install()
    worker = durable.Worker([sleeper], db=db, concurrency=concurrency)
    print("ready", flush=True)
    sys.stdin.readline()
    worker.run()
    report.write_text(json.dumps(probe.report()))


# -- looking at the database from outside -------------------------------------------------------

class Monitor:
    """Queries of the benchmark's own on the database (SQL with `?`), one connection."""

    def __init__(self, db: str) -> None:
        self.postgres = db.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            import psycopg

            self._pg = psycopg.connect(db, autocommit=True)
        else:
            self._lite = sqlite3.connect(db.removeprefix("sqlite:///"), isolation_level=None)

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.postgres:
            return self._pg.execute(sql.replace("?", "%s"), params).fetchall()
        return self._lite.execute(sql, params).fetchall()

    def scalar(self, sql: str, *params: Any) -> Any:
        return self.rows(sql, *params)[0][0]

    def close(self) -> None:
        (self._pg if self.postgres else self._lite).close()


PG_COUNTERS = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_updated",
               "temp_files", "temp_bytes")


def pg_counters(server: str, database: str) -> dict[str, int]:
    """The server's cumulative counters for `database`, read from another database so that
    reading them adds nothing to them."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        row = conn.execute(f"SELECT {', '.join(PG_COUNTERS)} FROM pg_stat_database"
                           " WHERE datname = %s", (database,)).fetchone()
    assert row is not None
    return dict(zip(PG_COUNTERS, map(int, row), strict=True))


# -- running ------------------------------------------------------------------------------------

async def start_all(db: str, runs: int, due: float) -> None:
    client = durable.Client(db)
    try:
        await asyncio.gather(*(client.start_async(sleeper, due, id=f"timer-{i}")
                               for i in range(runs)))
    finally:
        client.close()


def wait_for(what: str, done: Callable[[], bool], deadline: float, interval: float) -> None:
    """Poll `done` every `interval` seconds until it holds; fail once time.time() > deadline."""
    while not done():
        if time.time() > deadline:
            raise SystemExit(f"timers.py: {what}")
        time.sleep(interval)


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    with fresh_database(args.db, "durable_timers") as target:
        began = time.time()
        due = began + (args.lead if args.lead is not None else 30 + args.runs / 100)
        asyncio.run(start_all(target.db, args.runs, due))
        start_s = time.time() - began
        monitor = Monitor(target.db)
        try:
            return measure(args, target, monitor, due, start_s)
        finally:
            monitor.close()


def measure(args: argparse.Namespace, target: Target, monitor: Monitor, due: float,
            start_s: float) -> dict[str, Any]:
    reports = [target.scratch / f"worker-{i}.json" for i in range(args.workers)]
    procs = [subprocess.Popen(
        [sys.executable, __file__, "--serve", target.db, "--concurrency", str(args.concurrency),
         "--due", repr(due), "--report", str(report)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for report in reports]
    database = urlsplit(target.db).path.lstrip("/")
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("timers.py: a worker process failed to start")
        go = time.time()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

        parked_sql = ("SELECT count(*) FROM runs WHERE status = 'RUNNING'"
                      " AND lease_owner IS NULL AND ready_at > ?")
        wait_for(f"the runs were not all parked by T; give a larger --lead than {due - go:.0f}",
                 lambda: monitor.scalar(parked_sql, go) == args.runs, due, 1.0)
        parked_at = monitor.scalar("SELECT max(updated_at) FROM runs")
        # Left idle until T, the workers' sessions flush their statistics (PostgreSQL does
        # within seconds), so that the counters read here hold the parking and nothing after.
        time.sleep(max(due - time.time() - 0.5, 0.0))
        before = pg_counters(args.db, database) if monitor.postgres else {}
        # Cheap to ask (the first RUNNING row an index finds), so the polling hardly shows in
        # the drain's figures; when the drain ended comes from the runs' own timestamps.
        wait_for(f"runs still RUNNING {args.timeout:.0f}s after T",
                 lambda: not monitor.rows("SELECT 1 FROM runs WHERE status = 'RUNNING' LIMIT 1"),
                 due + args.timeout, 1.0)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
    after = pg_counters(args.db, database) if monitor.postgres else {}
    server = {k: after[k] - before[k] for k in after}
    return summarize(args, target, monitor, [json.loads(r.read_text()) for r in reports],
                     due, (start_s, parked_at - go, parked_at), server)


def summarize(args: argparse.Namespace, target: Target, monitor: Monitor,
              reports: list[dict[str, Any]], due: float, phases: tuple[float, float, float],
              server: dict[str, int]) -> dict[str, Any]:
    """`phases`: seconds to start the runs, seconds to park them, when the last one parked."""
    start_s, park_s, parked_at = phases
    started = [(run_id, at) for r in reports for run_id, at in r["started"]]
    executions = Counter(run_id for run_id, _ in started)
    results = dict(monitor.rows("SELECT result, count(*) FROM runs WHERE status = 'SUCCEEDED'"
                                " GROUP BY result"))
    pids = {str(r["pid"]) for r in reports}
    right = sum(n for result, n in results.items() if result in pids)
    if right != args.runs or len(executions) != args.runs:
        raise SystemExit(f"timers.py: {right} of {args.runs} runs succeeded with a worker's pid,"
                         f" {len(executions)} resumed")
    lateness = sorted(at - due for _, at in started)
    claims = sorted(seconds for r in reports for _, seconds, _ in r["claims"])
    last_end = monitor.scalar("SELECT max(ended_at) FROM runs")
    skew = monitor.scalar("SELECT max(due_at) FROM operations WHERE type = 'WAIT'") - due
    drain = lateness[-1]
    result: dict[str, Any] = {
        "benchmark": "timers",
        "db": target.db,
        "runs": args.runs,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "start_s": round(start_s, 3),
        "starts_per_s": round(args.runs / start_s, 1),
        "park_s": round(park_s, 3),
        "parks_per_s": round(args.runs / park_s, 1),
        "park_slack_s": round(due - parked_at, 1),
        "drain_s": round(drain, 3),
        "completed_s": round(last_end - due, 3),
        "resumes_per_s": round(args.runs / drain, 1),
        "lateness_p50_ms": percentile_ms(lateness, 0.50),
        "lateness_p99_ms": percentile_ms(lateness, 0.99),
        "lateness_max_ms": round(drain * 1000, 3),
        "due_skew_max_ms": round(skew * 1000, 3),
        "resumed_per_worker": sorted((len(r["started"]) for r in reports), reverse=True),
        "steps_run_twice": sum(1 for n in executions.values() if n > 1),
        "claims": len(claims),
        "claims_empty": sum(1 for r in reports for _, _, rows in r["claims"] if rows == 0),
        "claim_rows_median": statistics.median(
            [rows for r in reports for _, _, rows in r["claims"]] or [0]),
        "claim_p50_ms": percentile_ms(claims, 0.50),
        "claim_p99_ms": percentile_ms(claims, 0.99),
        "claim_max_ms": percentile_ms(claims, 1.0),
        "claim_total_s": round(sum(claims), 3),
        "next_due_reads": sum(r["next_due_reads"] for r in reports),
        "statements": sum(r["statements"][1] for r in reports),
        "statements_per_run": round(sum(r["statements"][1] for r in reports) / args.runs, 2),
        "statements_parking": sum(r["statements"][0] for r in reports),
    }
    if server:
        result["server"] = {**server, "rows_read_per_run": round(
            (server["tup_returned"] + server["tup_fetched"]) / args.runs, 1)}
    result.update(cpus=os.cpu_count(), python=platform.python_version())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000, metavar="N")
    parser.add_argument("--workers", type=int, default=2, metavar="W",
                        help="worker processes sharing the database")
    parser.add_argument("--concurrency", type=int, default=100, metavar="C",
                        help="runs in flight per worker process")
    parser.add_argument("--db", metavar="URL",
                        help="sqlite:///new/file.db or postgresql://... (default: temp SQLite)")
    parser.add_argument("--lead", type=float, metavar="SECONDS",
                        help="T is this long after the starts begin (default 30 + N/100)")
    parser.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                        help="give up when the runs have not all ended this long after T")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--due", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--report", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.concurrency, args.due, args.report)
        return
    if min(args.runs, args.workers, args.concurrency) < 1:
        parser.error("--runs, --workers and --concurrency must be at least 1")
    print(json.dumps(benchmark(args)), flush=True)


if __name__ == "__main__":
    main()
