"""What every table of the store shares: the row formats, the SQL helpers, and `Table`, the
base of the per-table pieces that `Tx` is composed of (store/tx.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from durable.model import (
    ErrorObject,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
)

OP_COLUMNS = (
    "op_id, type, status, name, parent_id, sub_type, attempt, result, error, due_at, "
    "callback_id, child_run_id, started_at, ended_at"
)
OP_COLUMNS_WITH_INPUT = OP_COLUMNS + ", input"
"""OP_COLUMNS and the operation's input, which only reads for people load (`Operation.input`)."""
_RUN_COLUMNS = (
    "run_id", "workflow", "status", "input", "result", "error", "created_at", "updated_at",
    "ended_at", "compute_seconds", "parked", "cancel_requested", "ready_at", "parent_run_id",
    "queue_name", "admitted_at", "timeout_at", "invocation_failures", "parent_op_id",
    "invocation_error", "invocation_failing_since", "enqueued_on", "priority", "dedup_id",
)


def run_columns(alias: str = "", preview: int | None = None,
                input_if: str | None = None) -> str:
    """The columns `run_row` reads, each after `alias` (e.g. `r.`). With `preview`, input and
    result are cut to `preview + 1` characters: a listing then never loads a whole payload (one
    can be hundreds of MB) yet still tells a value of `preview` characters from a longer one.
    With `input_if`, input is read only where that condition holds (NULL elsewhere)."""
    def column(name: str) -> str:
        if preview is not None and name in ("input", "result"):
            return f"substr({alias}{name}, 1, {int(preview) + 1})"
        if input_if is not None and name == "input":
            return f"CASE WHEN {input_if} THEN {alias}input END"
        return alias + name
    return ", ".join(column(name) for name in _RUN_COLUMNS)


RUN_COLUMNS = run_columns()
SCHEDULE_COLUMNS = ("workflow, cron, timezone, since, last_tick, last_run_id, paused, tick_input,"
                    " source, missed")
WAITING = (OperationStatus.STARTED.value, OperationStatus.PENDING.value)
WAITING_SQL = "(" + ", ".join(f"'{status}'" for status in WAITING) + ")"
"""WAITING as an SQL list: the condition of the partial index operations_waiting."""
FIRST_TOKEN = 1
"""The fencing token of a run's first lease: what `insert_run` gives a run it creates leased."""


def dump_error(error: ErrorObject | None) -> str | None:
    return None if error is None else json.dumps(error.to_dict())


def load_error(text: str | None) -> ErrorObject | None:
    return None if text is None else ErrorObject.from_dict(json.loads(text))


def operation_row(row: Sequence[Any]) -> Operation:
    return Operation(
        id=row[0], type=OperationType(row[1]), status=OperationStatus(row[2]), name=row[3],
        parent_id=row[4], sub_type=row[5], attempt=row[6], result=row[7],
        error=load_error(row[8]), due_at=row[9], callback_id=row[10], child_run_id=row[11],
        started_at=row[12], ended_at=row[13], input=row[14] if len(row) > 14 else None,
    )


ENQUEUED_SQL = "status = 'RUNNING' AND queue_name IS NULL AND enqueued_on IS NOT NULL"
"""A run shown ENQUEUED: started on a queue (`enqueued_on`), which has not admitted it yet
(`queue_name`); stored RUNNING, as the engine sees it. The condition of index runs_enqueued."""


def status_clause(status: str) -> tuple[str, tuple[str, ...]]:
    """The condition on `runs` (and its parameters) of the runs `run_row` shows with
    `status`."""
    if status == ExecutionStatus.ENQUEUED:
        return f"({ENQUEUED_SQL})", ()
    if status == ExecutionStatus.RUNNING:
        return f"(status = 'RUNNING' AND NOT ({ENQUEUED_SQL}))", ()
    return "status = ?", (status,)


def run_row(row: Sequence[Any]) -> RunInfo:
    enqueued = row[2] == ExecutionStatus.RUNNING and row[14] is None and row[21] is not None
    return RunInfo(
        run_id=row[0], workflow=row[1],
        status=ExecutionStatus.ENQUEUED if enqueued else ExecutionStatus(row[2]), input=row[3],
        result=row[4], error=load_error(row[5]), created_at=row[6], updated_at=row[7],
        ended_at=row[8], compute_seconds=row[9], parked=load_error(row[10]),
        cancel_requested=bool(row[11]), ready_at=row[12], parent_run_id=row[13],
        queue=row[14] or row[21], admitted_at=row[15], timeout_at=row[16],
        invocation_failures=row[17], parent_op_id=row[18], invocation_error=load_error(row[19]),
        invocation_failing_since=row[20], priority=row[22], dedup_id=row[23],
    )



def contains(text: str) -> str:
    """A LIKE pattern (escape character `!`) matching any value containing `text`, any case."""
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"



def marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def workflow_filter(workflows: Sequence[str],
                     queued: Sequence[str] = ()) -> tuple[str, list[str]]:
    """SQL narrowing runs to `workflows` (none: every workflow); runs of those also in `queued`
    only once a queue admitted them."""
    if not workflows:
        return "", []
    waiting = set(queued)
    plain = [w for w in workflows if w not in waiting]
    held = [w for w in workflows if w in waiting]
    parts = []
    if plain:
        parts.append(f"workflow IN ({marks(plain)})")
    if held:
        parts.append(f"(queue_name IS NOT NULL AND workflow IN ({marks(held)}))")
    return f" AND ({' OR '.join(parts)})", [*plain, *held]




class Table:
    """Row-level primitives inside one transaction. SQL uses `?`; dialects translate if needed.

    The hooks below are where the dialects differ in SQL; the methods of each table are in
    the module named after it."""

    def __init__(self, execute: Callable[[str, Sequence[Any]], Any]) -> None:
        self._execute = execute
        self.notified = False

    # -- plumbing ---------------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(sql, params).fetchall())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._execute(sql, params).fetchone()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A statement whose outcome nobody reads: a network dialect may send it on without
        waiting for the server's answer (errors still fail the transaction)."""
        self._execute(sql, params)

    def notify(self) -> None:
        """Tell waiting workers and clients, in any process, that a run became ready or ended.
        Takes effect at commit; each dialect delivers it its own way."""
        self.notified = True

    # -- dialect hooks ----------------------------------------------------------------------
    row_lock_clause = ""  # SQLite: the write transaction already excludes every other writer

    claim_lock_clause = ""

    fence_lock_clause = ""
    """`row_lock_clause` for the runs (alias r) of `Runs.read_fences`' join."""

    session_gone_clause = ""
    """Of a `workers w` row: the session that registered it has ended (see `Runs.gone_workers`).
    SQLite registers none, having no sessions that outlive a process's pid."""

    run_id_in = "run_id IN ({})"
    """`run_id` is one of the ids a subquery selects. Where statistics say the table is small,
    PostgreSQL would rather hash the ids and read the whole table than look each one up."""
