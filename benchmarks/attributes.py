"""Finding runs by attribute among many: `Client.runs` with a `--where` filter over N runs.

Prints one JSON line: for each store (a temp SQLite file; PostgreSQL at --pg unless
`--no-pg`), the median and max over --repeats of the first page (50 runs, newest first, with
their attributes and child counts, the path `durable ls --where` and `GET /api/runs` take) for
each filter below, and how many runs each filter matches in all.

The runs are bulk-loaded straight into the tables (executemany on SQLite, COPY on PostgreSQL),
not started through the Client: starting a million runs one transaction each would take most
of an hour here, and what is measured is the read. Each run has three attributes, spread
evenly: `customer` (text, N/1000 runs per value), `amount` (a number in [0, 100000)) and `due`
(a time over 10 days); every fifth run is a child of the run before it.

    python benchmarks/attributes.py --runs 1000000
    python benchmarks/attributes.py --runs 100000 --no-pg
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from steps import fresh_database

import durable
from durable.model.listing import run_filter

T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()
DAYS = 10 * 86400


def runs(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        parent = f"r{i - 1:07d}" if i % 5 == 4 else None
        yield (f"r{i:07d}", "bench", "SUCCEEDED", T0 + i * 0.01, T0 + i * 0.01, parent)


def attributes(n: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        run_id = f"r{i:07d}"
        yield (run_id, "customer", f"c{(i * 7919) % 1000}", None, None)
        yield (run_id, "amount", None, float((i * 104729) % 100_000), None)
        yield (run_id, "due", None, None, T0 + (i * 15485863) % DAYS)


def load(url: str, n: int) -> None:
    """Fill the store's tables with `n` runs and their attributes (see the module docstring)."""
    durable.Client(url).close()  # creates the schema
    run_sql = ("INSERT INTO runs (run_id, workflow, status, created_at, updated_at,"
               " parent_run_id) VALUES (?, ?, ?, ?, ?, ?)")
    attr_sql = ("INSERT INTO run_attributes (run_id, key, text_value, number_value,"
                " time_value) VALUES (?, ?, ?, ?, ?)")
    if url.startswith("sqlite:///"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        with db:
            db.executemany(run_sql, runs(n))
            db.executemany(attr_sql, attributes(n))
        db.execute("ANALYZE")
        db.close()
        return
    import psycopg

    with psycopg.connect(url) as pg:
        with pg.cursor().copy("COPY runs (run_id, workflow, status, created_at, updated_at,"
                              " parent_run_id) FROM STDIN") as copy:
            for row in runs(n):
                copy.write_row(row)
        with pg.cursor().copy("COPY run_attributes (run_id, key, text_value, number_value,"
                              " time_value) FROM STDIN") as copy:
            for row in attributes(n):
                copy.write_row(row)
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE runs")
        pg.execute("VACUUM ANALYZE run_attributes")


FILTERS = {
    "equality_text": 'customer = "c42"',
    "range_number_narrow": "amount >= 99900",
    "range_number_wide": "amount < 50000",
    "range_time": "due >= 2026-11-10T12:00:00Z",
    "equality_and_range": 'customer = "c42" AND amount < 50000',
    "number_equality": "amount = 4242",
}


def measure(url: str, n: int, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    load(url, n)
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 1), "filters": {}}
    client = durable.Client(url)
    try:
        for name, where in FILTERS.items():
            chosen = run_filter(where=where, roots=False, now=client.clock())
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                page = client.runs(chosen, limit=50, preview=0)
                times.append((time.perf_counter() - t) * 1000)
            matched = len(client.runs(chosen, limit=n).runs) if n <= 100_000 else None
            out["filters"][name] = {
                "where": where, "page": len(page.runs),
                "median_ms": round(statistics.median(times), 2),
                "max_ms": round(max(times), 2), **({"matched": matched} if matched else {})}
        roots = run_filter(where=FILTERS["equality_text"], roots=True, now=client.clock())
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            client.runs(roots, limit=50, preview=0)
            times.append((time.perf_counter() - t) * 1000)
        out["filters"]["equality_text_roots_only"] = {
            "median_ms": round(statistics.median(times), 2), "max_ms": round(max(times), 2)}
    finally:
        client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    report: dict[str, Any] = {"runs": args.runs, "attributes_per_run": 3,
                              "repeats": args.repeats, "page": 50, "stores": {}}
    targets = {"sqlite": None} | ({} if args.no_pg else {"postgres": args.pg})
    for store, url in targets.items():
        with fresh_database(url, "durable_bench_attrs") as target:
            report["stores"][store] = measure(target.db, args.runs, args.repeats)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
