"""Takeover across hosts on PostgreSQL: how long a dead worker's runs wait before another host's
worker has them, against the lease-only fallback, in one run. Prints one JSON line.

Each round starts three `durable worker` processes (this file's `held` workflow), each named
for a host of its own (DURABLE_WORKER_HOST: none may judge another dead by its pid), on a fresh
database; starts --runs runs of steps that keep them busy; once every run is leased, takes the
worker holding the most of them away, and times until every run it held is leased again (its
fencing token moved) or ended, polling every 10 ms:

- `presence`: SIGKILL. Its database session ends with it, and its peers take its runs over at
  once (they look every 0.25 s, and must see it gone twice);
- `lease_only`: SIGSTOP. A frozen process's session stays open, so only its leases running out
  (--lease) give its runs away: what a SIGKILLed worker cost before presence, and what a worker
  alive but cut off from the database costs still.

The figures are medians over --rounds, modes alternating; `ratio` is lease_only over presence.
The target is under 2 s for a dead process.

    python benchmarks/takeover.py
    python benchmarks/takeover.py --rounds 5 --lease 30 --db postgresql://postgres@127.0.0.1/test
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from steps import fresh_database

import durable
from durable import Context, workflow
from durable.engine.worker import HOST_ENV

HERE = Path(__file__).resolve()
DURABLE = str(Path(sys.executable).parent / "durable")
WORKERS = 3
TARGET_SECONDS = 2.0
STEP_SECONDS = 0.2


async def pause(i: int) -> int:
    await asyncio.sleep(STEP_SECONDS)
    return i


@workflow
async def held(ctx: Context, steps: int) -> int:
    """Runs that keep their worker busy: a worker taken away at any moment holds some."""
    for i in range(steps):
        await ctx.step(pause, i, name=f"p{i}")
    return steps


def leases(db: str) -> dict[str, tuple[str, int]]:
    """Runs RUNNING and leased: run id -> (lease owner, token)."""
    with psycopg.connect(db, autocommit=True) as conn:
        return {r: (o, t) for r, o, t in conn.execute(
            "SELECT run_id, lease_owner, token FROM runs WHERE status = 'RUNNING'"
            " AND lease_owner IS NOT NULL").fetchall()}


def wait(condition: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"takeover.py: timed out waiting for {what}")
        time.sleep(0.01)


def one_round(server: str, mode: str, runs: int, lease: float, scratch: Path) -> float:
    """Seconds from taking the busiest worker away to every run it held leased again."""
    with fresh_database(server, "durable_takeover") as target:
        db = target.db
        client = durable.Client(db)  # creates the tables before the workers race to
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for n in range(WORKERS):
                log = (scratch / f"{mode}-worker-{n}.out").open("ab")
                procs.append(subprocess.Popen(
                    [DURABLE, "worker", f"{HERE}:held", "--db", db, "--lease", str(lease),
                     "--concurrency", str(runs)], stdout=log, stderr=log,
                    env={**os.environ, HOST_ENV: f"bench-host-{n}"}))
            steps = int(4 * lease / STEP_SECONDS)  # outlasts the lease-only wait
            for i in range(runs):
                client.start(held, steps, id=f"t{i}")
            wait(lambda: len(leases(db)) == runs, "every run to be leased", 120)
            held_now = leases(db)
            owners = [owner for owner, _ in held_now.values()]
            victim_owner = max(set(owners), key=owners.count)
            pid = int(victim_owner.split(":")[1])
            victim = next(p for p in procs if p.pid == pid)
            orphans = {r: t for r, (o, t) in held_now.items() if o == victim_owner}
            os.kill(pid, signal.SIGKILL if mode == "presence" else signal.SIGSTOP)
            gone_at = time.monotonic()

            def resumed() -> bool:
                now = leases(db)
                return all(r not in now or now[r][1] > t for r, t in orphans.items())
            wait(resumed, f"{mode}: the runs of the worker taken away to resume", 4 * lease)
            took = time.monotonic() - gone_at
            victim.kill()
        finally:
            for p in procs:
                p.kill()
                p.wait()
            client.close()
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("DURABLE_TEST_POSTGRES")
                        or "postgresql://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server URL: each round makes a database there")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=12, help="runs per round")
    parser.add_argument("--lease", type=float, default=10.0,
                        help="seconds, every worker's (the lease-only rounds wait about this)")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"presence": [], "lease_only": []}
    with tempfile.TemporaryDirectory(prefix="durable-takeover-") as scratch:
        for _ in range(args.rounds):
            for mode in samples:
                samples[mode].append(one_round(args.db, mode, args.runs, args.lease,
                                               Path(scratch)))
    medians = {mode: statistics.median(s) for mode, s in samples.items()}
    print(json.dumps({
        "benchmark": "takeover", "workers": WORKERS, "runs": args.runs, "lease": args.lease,
        "rounds": args.rounds,
        **{mode: {"median_s": round(medians[mode], 3), "samples_s": [round(x, 3) for x in s]}
           for mode, s in samples.items()},
        "ratio": round(medians["lease_only"] / medians["presence"], 1),
        "target_s": TARGET_SECONDS, "met": medians["presence"] < TARGET_SECONDS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }))


if __name__ == "__main__":
    main()
