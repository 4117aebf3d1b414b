"""What the delete, purge and retention tests share: counting the rows a run owns, finding
rows left by a half-done delete, and making many ended runs at once."""

from __future__ import annotations

from durable.store import Store, Tx
from durable.store.retention import RUN_TABLES


def owned(store: Store, run_id: str) -> dict[str, int]:
    """How many rows `run_id` has in `runs` and in each table it owns."""
    def count(tx: Tx) -> dict[str, int]:
        return {table: int(tx._one(f"SELECT count(*) FROM {table} WHERE run_id = ?",
                                   (run_id,))[0]) for table in ("runs", *RUN_TABLES)}
    return store.read(count)


def orphans(store: Store) -> dict[str, int]:
    """Rows of owned tables whose run is gone: what a half-done delete would leave."""
    def count(tx: Tx) -> dict[str, int]:
        return {table: int(tx._one(
            f"SELECT count(*) FROM {table} t WHERE NOT EXISTS"
            " (SELECT 1 FROM runs r WHERE r.run_id = t.run_id)")[0]) for table in RUN_TABLES}
    return {table: n for table, n in store.read(count).items() if n}


def bulk_ended_runs(store: Store, prefix: str, count: int, ended_at: float) -> None:
    """`count` ended runs, each with two operations, three history events and a published
    value, by bulk INSERT ... SELECT: only the runs to purge are made this way (the engine
    would take minutes to make 100,000), never the runs the test checks stay untouched."""
    numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    run_id = f"'{prefix}-' || i"

    def insert(tx: Tx) -> None:
        tx._exec(numbers + "INSERT INTO runs (run_id, workflow, status, input, result,"
                 " created_at, updated_at, ended_at)"
                 f" SELECT {run_id}, 'bulk', 'SUCCEEDED', '1', '2', ?, ?, ? FROM n",
                 (count, ended_at - 1, ended_at, ended_at))
        for op_id in ("a", "b"):
            tx._exec(numbers + "INSERT INTO operations (run_id, op_id, type, status, name,"
                     " result, started_at, ended_at)"
                     f" SELECT {run_id}, '{op_id}', 'STEP', 'SUCCEEDED', 'step', '1', ?, ?"
                     " FROM n", (count, ended_at - 1, ended_at))
        for event in ("ExecutionStarted", "StepSucceeded", "ExecutionSucceeded"):
            tx._exec(numbers + "INSERT INTO history (run_id, type, ts)"
                     f" SELECT {run_id}, '{event}', ? FROM n", (count, ended_at))
        tx._exec(numbers + "INSERT INTO published (run_id, key, value, updated_at)"
                 f" SELECT {run_id}, 'stage', '\"done\"', ? FROM n", (count, ended_at))
    store.write_sync(insert)
