"""How fast a bulk action walks its runs: N RUNNING runs (started through `Client.start_run`,
no worker), then a dry run counting them and a bulk terminate of all of them, each timed
end to end through `Client.bulk` (each run's terminate and the job's cursor: one transaction).
Prints one JSON line: runs, the dry run's and the terminate's seconds and runs/s.

    python benchmarks/bulk.py                                   # temp SQLite, 2,000 runs
    python benchmarks/bulk.py --db postgresql://127.0.0.1/test --runs 2000
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from steps import fresh_database

import durable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="a fresh SQLite path, or a PostgreSQL server URL")
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    with fresh_database(args.db, "durable_bulk_bench") as target:
        client = durable.Client(target.db)
        try:
            for _ in range(args.runs):
                client.start_run("bulk_bench", "1")
            began = time.perf_counter()
            counted = client.bulk("terminate", workflow="bulk_bench", dry_run=True)
            dry = time.perf_counter() - began
            began = time.perf_counter()
            done = client.bulk("terminate", workflow="bulk_bench")
            acting = time.perf_counter() - began
        finally:
            client.close()
    assert counted.acted == done.acted == args.runs, (counted, done)
    print(json.dumps({"benchmark": "bulk_terminate", "store": target.db.split(":")[0],
                      "runs": args.runs, "dry_run_s": round(dry, 3),
                      "terminate_s": round(acting, 3),
                      "terminate_runs_per_s": round(args.runs / acting),
                      "python": platform.python_version()}))


if __name__ == "__main__":
    main()
