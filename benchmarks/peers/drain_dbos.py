"""DBOS's queue in the drain shape of benchmarks/drain.py: one process enqueues, another drains.

    python benchmarks/peers/drain_dbos.py --runs 300 --steps 10 --concurrency 1

Runs under the peers' virtualenv (benchmarks/.venv-peers, see compare.py). On a fresh SQLite system
database (DBOS's durability defaults, as in run_dbos.py): this process launches DBOS once to create
the schema, then enqueues the runs with a `DBOSClient` (as a web process would) onto the queue
`drain`; then one worker process of this script (`--serve`) launches DBOS with that queue
registered at `worker_concurrency` C and a 10 ms polling interval (the default, 1 s, would cap a
worker at C runs per second) and drains it. Workflows and steps are synchronous functions, which
DBOS runs on its thread pool: C workflows in flight are C threads.

Measured from the first workflow body beginning to the last one returning, as the worker process
records them (its workflow's first and last lines), over the runs' steps. Not from the store as
for Durable: DBOS on SQLite keeps whole seconds in its timestamps, and a process polling the file
would slow DBOS's writers (a rollback journal: readers block them). The last run's final status
write is not counted, in DBOS's favour. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dbos import DBOS, DBOSClient, DBOSConfig

QUEUE = "drain"
POLL_S = 0.01


@DBOS.step()
def noop(i: int) -> None:
    pass


STARTED: list[float] = []
ENDED: list[float] = []


@DBOS.workflow()
def drain_bench(steps: int) -> int:
    STARTED.append(time.time())  # instrumentation only (no workflow is replayed here)
    for i in range(steps):
        noop(i)
    ENDED.append(time.time())
    return steps


def configure(url: str) -> None:
    config: DBOSConfig = {"name": "drain", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)


def serve(url: str, concurrency: int, runs: int) -> None:
    """The worker process: drain the queue; once `runs` workflows have returned, print when the
    first began and the last returned."""
    configure(url)
    DBOS.launch()
    DBOS.register_queue(QUEUE, worker_concurrency=concurrency, polling_interval_sec=POLL_S)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    print("ready", flush=True)
    while len(ENDED) < runs:
        time.sleep(POLL_S)
    print(json.dumps([min(STARTED), max(ENDED)]), flush=True)
    time.sleep(3600)  # until killed


def drain(runs: int, steps: int, concurrency: int, where: str | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="dbos-drain-", dir=where) as scratch:
        path = Path(scratch) / "dbos.sqlite"
        url = f"sqlite:///{path}"
        configure(url)
        DBOS.launch()  # creates the system database's schema, which a client does not
        DBOS.destroy()
        client = DBOSClient(system_database_url=url)
        try:
            for i in range(runs):
                client.enqueue({"queue_name": QUEUE, "workflow_name": "drain_bench",
                                "workflow_id": f"d-{i}"}, steps)
        finally:
            client.destroy()
        worker = subprocess.Popen([sys.executable, __file__, "--serve", url,
                                   "--concurrency", str(concurrency), "--runs", str(runs)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                raise SystemExit("drain_dbos.py: the worker did not start")
            first, last = json.loads(worker.stdout.readline())
        finally:
            worker.kill()
            worker.wait()
    wall = last - first
    return {"system": "dbos-sqlite", "runs": runs, "steps": steps,
            "worker_concurrency": concurrency, "polling_interval_s": POLL_S,
            "wall_s": round(wall, 3), "steps_per_s": round(runs * steps / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--dir", help="where the database goes (default: the temp directory)")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.concurrency, args.runs)
        return
    print(json.dumps(drain(args.runs, args.steps, args.concurrency, args.dir)), flush=True)


if __name__ == "__main__":
    main()
