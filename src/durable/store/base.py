"""The store's one interface, and the SQL both dialects share.

A `Store` runs functions of a `Tx` in transactions: `write` for state changes (group-committed by
one writer), `read` for queries. The engine's state machine is written against `Tx` only, so it
never knows which database it is on; the dialects differ in connection handling, locking and
wake-ups, and in nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from durable.model import (
    ErrorObject,
    ExecutionStatus,
    HistoryEvent,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
    ScheduleState,
)

T = TypeVar("T")

_OP_COLUMNS = (
    "op_id, type, status, name, parent_id, sub_type, attempt, result, error, due_at, "
    "callback_id, child_run_id, started_at, ended_at"
)
_RUN_COLUMNS = (
    "run_id, workflow, status, input, result, error, created_at, updated_at, ended_at, "
    "compute_seconds, parked, cancel_requested, ready_at, parent_run_id, queue_name, admitted_at,"
    " timeout_at, invocation_failures, parent_op_id"
)
_SCHEDULE_COLUMNS = "workflow, cron, timezone, since, last_tick, last_run_id"
_WAITING = (OperationStatus.STARTED.value, OperationStatus.PENDING.value)
FIRST_TOKEN = 1
"""The fencing token of a run's first lease: what `insert_run` gives a run it creates leased."""

# Columns of `runs` the engine may set through `update_run`; guards the f-string below.
_RUN_SETTABLE = frozenset(
    {"status", "result", "error", "updated_at", "ended_at", "ready_at", "lease_owner",
     "lease_expires", "cancel_requested", "parked", "compute_seconds", "timeout_at",
     "invocation_failures"}
)


def dump_error(error: ErrorObject | None) -> str | None:
    return None if error is None else json.dumps(error.to_dict())


def load_error(text: str | None) -> ErrorObject | None:
    return None if text is None else ErrorObject.from_dict(json.loads(text))


def _operation(row: Sequence[Any]) -> Operation:
    return Operation(
        id=row[0], type=OperationType(row[1]), status=OperationStatus(row[2]), name=row[3],
        parent_id=row[4], sub_type=row[5], attempt=row[6], result=row[7],
        error=load_error(row[8]), due_at=row[9], callback_id=row[10], child_run_id=row[11],
        started_at=row[12], ended_at=row[13],
    )


def _run(row: Sequence[Any]) -> RunInfo:
    return RunInfo(
        run_id=row[0], workflow=row[1], status=ExecutionStatus(row[2]), input=row[3],
        result=row[4], error=load_error(row[5]), created_at=row[6], updated_at=row[7],
        ended_at=row[8], compute_seconds=row[9], parked=load_error(row[10]),
        cancel_requested=bool(row[11]), ready_at=row[12], parent_run_id=row[13],
        queue=row[14], admitted_at=row[15], timeout_at=row[16], invocation_failures=row[17],
        parent_op_id=row[18],
    )


class Tx:
    """Row-level primitives inside one transaction. SQL uses `?`; dialects translate if needed."""

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

    # -- runs -------------------------------------------------------------------------------
    def insert_run(self, run_id: str, workflow: str, input: str | None, now: float,
                   parent: tuple[str, str] | None = None,
                   lease: tuple[str, float] | None = None) -> bool:
        """Create a RUNNING run ready now; False if the id exists already (start is idempotent).
        `parent` is the (run id, operation id) of the CHAINED_INVOKE that started it. With
        `lease` (owner, until), the run is created leased to that owner (`FIRST_TOKEN`), as if
        it had claimed it, instead of ready: nobody else needs to hear of it."""
        parent_run, parent_op = parent or (None, None)
        owner, until = lease or (None, None)
        created = self._one(
            "INSERT INTO runs (run_id, workflow, status, input, created_at, updated_at, ready_at,"
            " parent_run_id, parent_op_id, lease_owner, lease_expires, token)"
            " VALUES (?, ?, 'RUNNING', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
            (run_id, workflow, input, now, now, None if lease else now, parent_run, parent_op,
             owner, until, FIRST_TOKEN if lease else 0),
        ) is not None
        if created and lease is None:
            self.notify()
        return created

    def get_run(self, run_id: str, lock: bool = False) -> RunInfo | None:
        """With `lock`, hold the run's row until commit (`row_lock_clause`): what a change from
        outside (a signal, a cancel) does first, so that it and a checkpoint of the same run,
        which holds the row from its `fence`, each see all of the other or none of it."""
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?"
                        + (self.row_lock_clause if lock else ""), (run_id,))
        return None if row is None else _run(row)

    def update_run(self, run_id: str, **values: Any) -> None:
        assert values.keys() <= _RUN_SETTABLE, values.keys() - _RUN_SETTABLE
        sets = ", ".join(f"{k} = ?" for k in values)
        self._exec(f"UPDATE runs SET {sets} WHERE run_id = ?", (*values.values(), run_id))

    def wake(self, run_id: str, now: float) -> None:
        """Mark the run as having work now (a signal, callback or cancel arrived)."""
        self._exec(
            "UPDATE runs SET ready_at = ?, updated_at = ? WHERE run_id = ? AND status = 'RUNNING'",
            (now, now, run_id),
        )
        self.notify()

    def notify(self) -> None:
        """Tell waiting workers and clients, in any process, that a run became ready or ended.
        Takes effect at commit; each dialect delivers it its own way."""
        self.notified = True

    def fenced_run(self, run_id: str, token: int) -> RunInfo | None:
        """The run, if `token` is still its current one (None: stale). An invocation's
        outcome reads it first.

        `row_lock_clause` holds the run's row until commit where the dialect lets a lease
        change meanwhile.
        """
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ? AND token = ?"
                        " AND status = 'RUNNING'" + self.row_lock_clause, (run_id, token))
        return None if row is None else _run(row)

    row_lock_clause = ""  # SQLite: the write transaction already excludes every other writer

    def fence_and_get(self, run_id: str, token: int,
                      op_id: str) -> tuple[bool, Operation | None] | None:
        """None if `token` is stale, else whether a cancel was requested, and the operation
        `op_id` as it stands, in one statement: a step's checkpoint, the commonest write, then
        reads once (one round trip on a server). A read, not a write, to keep the step path to
        the rows it must write; the row lock as in `fenced_run`."""
        row = self._one(
            f"SELECT f.cancel_requested, {_OP_COLUMNS} FROM (SELECT run_id, cancel_requested"
            " FROM runs WHERE run_id = ? AND token = ? AND status = 'RUNNING'"
            f"{self.row_lock_clause}) f LEFT JOIN operations o"
            " ON o.run_id = f.run_id AND o.op_id = ?", (run_id, token, op_id))
        if row is None:
            return None
        return bool(row[0]), None if row[1] is None else _operation(row[1:])

    def lease(self, run_ids: Sequence[str], owner: str,
              until: float) -> list[tuple[RunInfo, int]]:
        """Take the lease on each run, bumping its fencing token; returns each run as it now
        stands with its new token, in the order of `run_ids`. One statement for them all: a
        claim when many runs fall due at once takes a worker's every free slot."""
        if not run_ids:
            return []
        leased = {run.run_id: (run, token) for run, token in self._take_leases(
            f"run_id IN ({_marks(run_ids)})", run_ids, owner, until)}
        return [leased[run_id] for run_id in run_ids]

    def _take_leases(self, where: str, params: Sequence[Any], owner: str,
                     until: float) -> list[tuple[RunInfo, int]]:
        """Lease the runs `where` selects to `owner`, bumping each one's fencing token; each
        run as it now stands, with its new token, in no particular order."""
        rows = self._rows(
            "UPDATE runs SET lease_owner = ?, lease_expires = ?, token = token + 1,"
            f" ready_at = NULL WHERE {where} RETURNING {_RUN_COLUMNS}, token",
            (owner, until, *params))
        return [(_run(row), int(row[-1])) for row in rows]

    def lease_owners(self, prefix: str) -> list[str]:
        """Owners, named starting with `prefix`, that hold leases on running runs."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT lease_owner FROM runs WHERE status = 'RUNNING'"
            " AND lease_owner LIKE ?", (prefix.replace("%", "") + "%",))]

    def expire_leases(self, owner: str, now: float) -> None:
        self._exec("UPDATE runs SET lease_expires = ? WHERE lease_owner = ? AND lease_expires > ?",
                   (now, owner, now))

    def extend_leases(self, owner: str, run_ids: Sequence[str], until: float) -> None:
        for run_id in run_ids:
            self._exec(
                "UPDATE runs SET lease_expires = ? WHERE run_id = ? AND lease_owner = ?",
                (until, run_id, owner),
            )

    def claim(self, now: float, limit: int, workflows: Sequence[str], queued: Sequence[str],
              owner: str, until: float) -> list[tuple[RunInfo, int]]:
        """Lease up to `limit` runs that have work due and no live lease, or whose lease holder
        stopped renewing it, as `lease` does; in one statement. Runs of the `queued` workflows
        count only once a queue admitted them (`admit`). Returned oldest run first.

        Runs orphaned by a dead worker are chosen first, the longest expired first; then runs
        that are due, the earliest first. Each kind is its own sub-select that walks its index
        in order (runs_lease, runs_ready) and stops after the rows it takes, where one query
        over both kinds with an OR has to collect and sort every due run on every claim, which
        makes claiming 100,000 runs that fell due at once quadratic. The kinds are disjoint: a
        lease sets lease_owner and lease_expires together and every release clears both.
        """
        if limit <= 0:
            return []
        where, params = _workflow_filter(workflows, queued)
        lock = self.claim_lock_clause
        leased = self._take_leases(self.run_id_in.format(
            "SELECT run_id FROM (SELECT run_id FROM runs WHERE lease_expires < ?"
            f" AND status = 'RUNNING'{where} ORDER BY lease_expires LIMIT ?{lock}) orphans"
            " UNION ALL SELECT run_id FROM (SELECT run_id FROM runs WHERE ready_at <= ?"
            f" AND lease_owner IS NULL AND status = 'RUNNING'{where} ORDER BY ready_at"
            f" LIMIT ?{lock}) due LIMIT ?"),
            (now, *params, limit, now, *params, limit, limit), owner, until)
        return sorted(leased, key=lambda claimed: (claimed[0].created_at, claimed[0].run_id))

    claim_lock_clause = ""

    run_id_in = "run_id IN ({})"
    """`run_id` is one of the ids a subquery selects. Where statistics say the table is small,
    PostgreSQL would rather hash the ids and read the whole table than look each one up."""

    def next_due(self, workflows: Sequence[str], queued: Sequence[str] = ()) -> float | None:
        """When the earliest of these runs has work; `queued` as in `claim`.

        The first row of each index `claim` walks, in one round trip. ORDER BY ... LIMIT 1
        rather than min(), which means the same but which PostgreSQL may compute by reading
        every due run while a table just filled has no statistics yet.
        """
        where, params = _workflow_filter(workflows, queued)
        row = self._one(
            "SELECT (SELECT ready_at FROM runs WHERE ready_at IS NOT NULL AND lease_owner IS NULL"
            f" AND status = 'RUNNING'{where} ORDER BY ready_at LIMIT 1),"
            " (SELECT lease_expires FROM runs WHERE lease_expires IS NOT NULL"
            f" AND status = 'RUNNING'{where} ORDER BY lease_expires LIMIT 1)", (*params, *params))
        return min((t for t in row if t is not None), default=None)

    def list_runs(self, status: str | None, workflow: str | None, limit: int,
                  offset: int = 0, search: str | None = None) -> list[RunInfo]:
        """Newest first. `search`: only runs whose id or workflow contains it, ignoring case."""
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if workflow:
            clauses.append("workflow = ?")
            params.append(workflow)
        if search:
            clauses.append("(lower(run_id) LIKE ? ESCAPE '!' OR lower(workflow) LIKE ? ESCAPE '!')")
            params += [_contains(search)] * 2
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, run_id"
            " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_run(r) for r in rows]

    def restart_run(self, run_id: str, input: str | None, now: float) -> int:
        """Clear the run's operations and history and start it over with `input`; buffered
        signals and published events stay. Returns the new generation number."""
        self._exec("DELETE FROM operations WHERE run_id = ?", (run_id,))
        # Keep the newest event (the invocation that continued) so history ids never go back.
        self._exec("DELETE FROM history WHERE run_id = ? AND id < (SELECT max(id) FROM history"
                   " WHERE run_id = ?)", (run_id, run_id))
        row = self._one(
            "UPDATE runs SET input = ?, ready_at = ?, updated_at = ?, generation = generation + 1"
            " WHERE run_id = ? RETURNING generation", (input, now, now, run_id))
        return int(row[0])

    def parent_of(self, run_id: str) -> tuple[str, str] | None:
        row = self._one("SELECT parent_run_id, parent_op_id FROM runs WHERE run_id = ?",
                        (run_id,))
        return None if row is None or row[0] is None else (row[0], row[1])

    def live_children(self, run_id: str) -> list[str]:
        return [r[0] for r in self._rows(
            "SELECT run_id FROM runs WHERE parent_run_id = ? AND status = 'RUNNING'", (run_id,))]

    def parked_runs(self, workflows: Sequence[str]) -> list[str]:
        where, params = _workflow_filter(workflows)
        return [r[0] for r in self._rows(
            f"SELECT run_id FROM runs WHERE status = 'RUNNING' AND parked IS NOT NULL{where}",
            params)]

    # -- queues: admission at claim time (the limits are enforced in engine/machine.py) --------
    def lock_queue(self, queue: str) -> None:
        """Keep other transactions from admitting runs to `queue` until this one ends, so that
        counting its slots and taking one is atomic across workers. SQLite: nothing to do, the
        write transaction already excludes every other writer. A dialect whose writers run
        concurrently overrides this (PostgreSQL: a transaction-scoped advisory lock per queue)."""

    def queue_held(self, queue: str) -> int:
        """Runs admitted to `queue` that have not ended: the slots in use."""
        return int(self._one("SELECT count(*) FROM runs WHERE queue_name = ?"
                             " AND status = 'RUNNING'", (queue,))[0])

    def queue_admitted(self, queue: str, since: float) -> int:
        """Runs admitted to `queue` after `since` (ended or not): the rate window's use."""
        return int(self._one("SELECT count(*) FROM runs WHERE queue_name = ? AND admitted_at > ?",
                             (queue, since))[0])

    def queue_admission(self, queue: str, since: float, nth: int) -> float | None:
        """When the `nth` (from 0) run admitted to `queue` after `since` was admitted."""
        row = self._one("SELECT admitted_at FROM runs WHERE queue_name = ? AND admitted_at > ?"
                        " ORDER BY admitted_at LIMIT 1 OFFSET ?", (queue, since, nth))
        return None if row is None else float(row[0])

    def queue_waiting(self, workflows: Sequence[str], now: float, limit: int) -> list[str]:
        """The oldest runs of `workflows` that no queue admitted yet and that are free to start,
        in creation order (ties by run id)."""
        rows = self._rows(
            "SELECT run_id FROM runs WHERE status = 'RUNNING' AND queue_name IS NULL"
            f" AND lease_owner IS NULL AND ready_at <= ? AND workflow IN ({_marks(workflows)})"
            " ORDER BY created_at, run_id LIMIT ?" + self.claim_lock_clause,
            (now, *workflows, limit))
        return [r[0] for r in rows]

    def queue_first_waiting(self, workflows: Sequence[str]) -> float | None:
        """When the earliest run of `workflows` that waits for admission became ready."""
        row = self._one(
            "SELECT min(ready_at) FROM runs WHERE status = 'RUNNING' AND queue_name IS NULL"
            f" AND lease_owner IS NULL AND workflow IN ({_marks(workflows)})", workflows)
        return None if row[0] is None else float(row[0])

    def admit(self, run_ids: Sequence[str], queue: str, now: float) -> None:
        """The runs take a slot of `queue` from now until they end."""
        if run_ids:
            self._exec(f"UPDATE runs SET queue_name = ?, admitted_at = ?"
                       f" WHERE run_id IN ({_marks(run_ids)})", (queue, now, *run_ids))

    # -- schedules --------------------------------------------------------------------------
    def get_schedule(self, workflow: str, lock: bool = False) -> ScheduleState | None:
        """The schedule's stored state; with `lock`, held until commit where the dialect lets
        another worker fire the same schedule meanwhile (`row_lock_clause`)."""
        row = self._one(f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE workflow = ?"
                        + (self.row_lock_clause if lock else ""), (workflow,))
        return None if row is None else ScheduleState(*row)

    def register_schedule(self, workflow: str, cron: str, timezone: str, now: float) -> None:
        """Create the schedule's state, counting ticks from `now`, unless it exists."""
        self._exec(
            f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}, updated_at)"
            " VALUES (?, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (workflow) DO NOTHING",
            (workflow, cron, timezone, now, now))

    def put_schedule(self, state: ScheduleState, now: float) -> None:
        self._exec(
            "UPDATE schedules SET cron = ?, timezone = ?, since = ?, last_tick = ?,"
            " last_run_id = ?, updated_at = ? WHERE workflow = ?",
            (state.cron, state.timezone, state.since, state.last_tick, state.last_run_id, now,
             state.workflow))

    # -- operations -------------------------------------------------------------------------
    def operations(self, run_id: str) -> list[Operation]:
        return self.operations_of([run_id])[run_id]

    def operations_of(self, run_ids: Sequence[str]) -> dict[str, list[Operation]]:
        """The operations of each run, in the order they were recorded, in one statement: what
        a claim hands its invocations.

        Put in order here, not by the query: ORDER BY seq would let PostgreSQL walk the primary
        key's index through every operation of every run, filtering, rather than look up these
        runs' operations in the (run_id, op_id) index and sort the few it found.
        """
        found: dict[str, list[Operation]] = {run_id: [] for run_id in run_ids}
        if run_ids:
            rows = self._rows(f"SELECT seq, run_id, {_OP_COLUMNS} FROM operations"
                              f" WHERE run_id IN ({_marks(run_ids)})", run_ids)
            for row in sorted(rows, key=lambda row: int(row[0])):
                found[row[1]].append(_operation(row[2:]))
        return found

    def get_operation(self, run_id: str, op_id: str) -> Operation | None:
        row = self._one(f"SELECT {_OP_COLUMNS} FROM operations WHERE run_id = ? AND op_id = ?",
                        (run_id, op_id))
        return None if row is None else _operation(row)

    def waiting_operations(self, run_id: str) -> list[Operation]:
        return [_operation(r) for r in self._rows(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE run_id = ? AND status IN (?, ?)"
            " ORDER BY seq", (run_id, *_WAITING))]

    def put_operation(self, run_id: str, op: Operation) -> None:
        self._exec(
            "INSERT INTO operations (run_id, op_id, type, status, name, parent_id, sub_type,"
            " attempt, result, error, due_at, callback_id, child_run_id, started_at, ended_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, op_id) DO UPDATE SET status = excluded.status,"
            " attempt = excluded.attempt, result = excluded.result, error = excluded.error,"
            " due_at = excluded.due_at, callback_id = excluded.callback_id,"
            " child_run_id = excluded.child_run_id,"
            " started_at = excluded.started_at, ended_at = excluded.ended_at",
            (run_id, op.id, op.type.value, op.status.value, op.name, op.parent_id, op.sub_type,
             op.attempt, op.result, dump_error(op.error), op.due_at, op.callback_id,
             op.child_run_id, op.started_at, op.ended_at),
        )

    def find_callback(self, callback_id: str) -> tuple[str, Operation] | None:
        """The callback's operation, its row held until commit: two resolutions of one callback
        cannot both find it still STARTED."""
        row = self._one(f"SELECT run_id, {_OP_COLUMNS} FROM operations WHERE callback_id = ?"
                        + self.row_lock_clause, (callback_id,))
        return None if row is None else (row[0], _operation(row[1:]))

    def signal_waiter(self, run_id: str, name: str) -> Operation | None:
        row = self._one(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE run_id = ? AND type = 'CALLBACK'"
            " AND sub_type = 'Signal' AND name = ? AND status = 'STARTED' ORDER BY seq LIMIT 1",
            (run_id, name))
        return None if row is None else _operation(row)

    # -- signals, published events, history -------------------------------------------------
    def push_signal(self, run_id: str, name: str, payload: str | None, now: float) -> None:
        self._exec("INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
                   (run_id, name, payload, now))

    def pop_signal(self, run_id: str, name: str) -> tuple[str | None] | None:
        """The oldest buffered signal of that name, removed; a 1-tuple so None payloads survive."""
        row = self._one("SELECT id, payload FROM signals WHERE run_id = ? AND name = ?"
                        " ORDER BY id LIMIT 1", (run_id, name))
        if row is None:
            return None
        self._exec("DELETE FROM signals WHERE id = ?", (row[0],))
        return (row[1],)

    def buffered_signals(self, run_id: str, name: str) -> list[str | None]:
        """The payloads of the signals of that name still buffered (not yet taken by a wait),
        oldest first, without taking them: for readers that must see what a run will receive."""
        rows = self._rows("SELECT payload FROM signals WHERE run_id = ? AND name = ? ORDER BY id",
                          (run_id, name))
        return [r[0] for r in rows]

    def set_published(self, run_id: str, key: str, value: str | None, now: float) -> None:
        self._exec(
            "INSERT INTO published (run_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at", (run_id, key, value, now))

    def get_published(self, run_id: str, key: str) -> tuple[str | None] | None:
        row = self._one("SELECT value FROM published WHERE run_id = ? AND key = ?",
                        (run_id, key))
        return None if row is None else (row[0],)

    def add_event(self, run_id: str, type: str, now: float, op_id: str | None = None,
                  name: str | None = None, details: dict[str, Any] | None = None) -> None:
        self._exec(
            "INSERT INTO history (run_id, type, ts, op_id, name, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, type, now, op_id, name, json.dumps(details) if details else None))

    def history(self, run_id: str, after: int = 0, limit: int = 10_000) -> list[HistoryEvent]:
        rows = self._rows(
            "SELECT id, run_id, type, ts, op_id, name, details FROM history"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", (run_id, after, limit))
        return [HistoryEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
                for r in rows]

    # -- functions and the AWS durable-execution contract (durable/invoke, server/aws.py) -----
    def put_function(self, name: str, url: str | None, handler: str | None,
                     execution_timeout: float | None, now: float) -> None:
        """Register a function (an HTTP endpoint or an in-process handler), or replace it."""
        self._exec(
            "INSERT INTO functions (name, url, handler, execution_timeout, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET url = excluded.url,"
            " handler = excluded.handler, execution_timeout = excluded.execution_timeout,"
            " updated_at = excluded.updated_at", (name, url, handler, execution_timeout, now))
        self.notify()  # servers reload their functions

    def functions(self) -> list[tuple[str, str | None, str | None, float | None]]:
        """Every registered function: (name, url, handler, execution timeout)."""
        return [(r[0], r[1], r[2], r[3]) for r in self._rows(
            "SELECT name, url, handler, execution_timeout FROM functions ORDER BY name")]

    def delete_function(self, name: str) -> bool:
        return self._one("DELETE FROM functions WHERE name = ? RETURNING name",
                         (name,)) is not None

    def insert_execution(self, run_id: str, function: str, name: str) -> bool:
        """Name a run of `function`; False if that function already has an execution so named."""
        return self._one(
            "INSERT INTO executions (run_id, function_name, name) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING run_id", (run_id, function, name)) is not None

    def execution_named(self, function: str, name: str) -> str | None:
        row = self._one("SELECT run_id FROM executions WHERE function_name = ? AND name = ?",
                        (function, name))
        return None if row is None else str(row[0])

    def execution_name(self, run_id: str) -> str | None:
        row = self._one("SELECT name FROM executions WHERE run_id = ?", (run_id,))
        return None if row is None else str(row[0])

    def list_executions(self, function: str, statuses: Sequence[str], name: str | None,
                        after: float | None, before: float | None, newest_first: bool,
                        limit: int, offset: int) -> list[tuple[RunInfo, str | None]]:
        """Runs of `function` (started by Invoke or otherwise) with their execution names."""
        clauses: list[str] = ["r.workflow = ?"]
        params: list[object] = [function]
        if statuses:
            clauses.append(f"r.status IN ({_marks(statuses)})")
            params.extend(statuses)
        if name is not None:
            clauses.append("coalesce(e.name, r.run_id) = ?")
            params.append(name)
        if after is not None:
            clauses.append("r.created_at > ?")
            params.append(after)
        if before is not None:
            clauses.append("r.created_at < ?")
            params.append(before)
        order = "DESC" if newest_first else "ASC"
        columns = ", ".join(f"r.{c.strip()}" for c in _RUN_COLUMNS.split(","))
        rows = self._rows(
            f"SELECT {columns}, e.name FROM runs r LEFT JOIN executions e ON e.run_id = r.run_id"
            f" WHERE {' AND '.join(clauses)} ORDER BY r.created_at {order}, r.run_id {order}"
            " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [(_run(r), r[-1]) for r in rows]

    def get_checkpoint_token(self, run_id: str) -> CheckpointTokenRow | None:
        row = self._one("SELECT run_id, fence, nonce, watermark, client_token, prior_nonce,"
                        " response FROM checkpoint_tokens WHERE run_id = ?", (run_id,))
        return None if row is None else CheckpointTokenRow(*row)

    def put_checkpoint_token(self, row: CheckpointTokenRow) -> None:
        self._exec(
            "INSERT INTO checkpoint_tokens (run_id, fence, nonce, watermark, client_token,"
            " prior_nonce, response) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE"
            " SET fence = excluded.fence, nonce = excluded.nonce,"
            " watermark = excluded.watermark, client_token = excluded.client_token,"
            " prior_nonce = excluded.prior_nonce, response = excluded.response",
            (row.run_id, row.fence, row.nonce, row.watermark, row.client_token,
             row.prior_nonce, row.response))

    def history_watermark(self, run_id: str) -> int:
        """The id of the run's newest history event (0: none): what a reader has seen."""
        return int(self._one("SELECT coalesce(max(id), 0) FROM history WHERE run_id = ?",
                             (run_id,))[0])

    def operations_changed_since(self, run_id: str, watermark: int) -> list[str]:
        """Ids of the operations a history event after `watermark` is about."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT op_id FROM history WHERE run_id = ? AND id > ?"
            " AND op_id IS NOT NULL", (run_id, watermark))]

    def put_heartbeat(self, callback_id: str, run_id: str, every: float,
                      deadline: float | None) -> None:
        self._exec("INSERT INTO callback_heartbeats (callback_id, run_id, every_seconds, deadline)"
                   " VALUES (?, ?, ?, ?)", (callback_id, run_id, every, deadline))

    def get_heartbeat(self, callback_id: str) -> tuple[float, float | None] | None:
        """(seconds allowed between heartbeats, the callback's own deadline) if it has one."""
        row = self._one("SELECT every_seconds, deadline FROM callback_heartbeats"
                        " WHERE callback_id = ?", (callback_id,))
        return None if row is None else (float(row[0]), row[1])

    def schema_version(self) -> int:
        """The latest migration applied to this database (see store/schema.py)."""
        return int(self._one("SELECT max(version) FROM durable_migrations")[0] or 0)


def _contains(text: str) -> str:
    """A LIKE pattern (escape character `!`) matching any value containing `text`, any case."""
    escaped = text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


@dataclass(frozen=True, slots=True)
class CheckpointTokenRow:
    """The checkpoint token of a run's invocation in flight, as an HTTP function knows it.

    `fence` is the run's lease token of that invocation; `nonce` rotates with every accepted
    checkpoint, so only the newest token is valid; `watermark` is the history id up to which the
    function has been told about changed operations. `client_token`, `prior_nonce` and
    `response` replay the last accepted checkpoint when the function retries it.
    """

    run_id: str
    fence: int
    nonce: str
    watermark: int
    client_token: str | None = None
    prior_nonce: str | None = None
    response: str | None = None


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _workflow_filter(workflows: Sequence[str],
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
        parts.append(f"workflow IN ({_marks(plain)})")
    if held:
        parts.append(f"(queue_name IS NOT NULL AND workflow IN ({_marks(held)}))")
    return f" AND ({' OR '.join(parts)})", [*plain, *held]


class BatchWriter:
    """Group commit: one thread, one connection, many writers.

    Every write is a function queued here. The thread drains the queue and runs everything it
    found in one transaction, each function in its own savepoint so one failure does not sink the
    batch, then commits once: one fsync serves every step that was waiting, and each caller
    resumes only after its own change is durable. Callers on an event loop get their results with
    one wake-up of that loop per batch, not one per write. Both dialects accept the same savepoint
    SQL; they differ only in how a write transaction begins and ends, in how a Tx is made, and in
    whether a failed batch may run again (the hooks at the end).

    Writes from an event loop are gathered until the end of the loop's current pass. If that
    pass produced just one and the thread is idle, the write commits right there on the loop
    (`inline_lone_writes`): nothing else is waiting to share its fsync, and handing it to the
    thread and the result back costs more than the write itself (a sequential workflow runs
    ~1.5x faster). Anything more goes to the thread as a batch, as before.
    """

    def __init__(self, connect: Callable[[], Any], begin: str, name: str,
                 make_tx: Callable[[Any], Tx] = lambda conn: Tx(conn.execute),
                 after_notify: Callable[[], None] | None = None) -> None:
        self._connect = connect
        self._begin = begin
        self._make_tx = make_tx
        self._after_notify = after_notify
        self._conn: Any = None  # connected by the writer thread, again after a drop
        self._tx: Tx | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writing = threading.Lock()  # held by whoever runs a batch: the thread or a loop
        self._gathered: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"durable-{name}-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Tx], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._queue.put(_Job(fn, fut, None))
        return fut

    def submit_async(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        gathered = self._gathered.setdefault(loop, [])
        if not gathered:
            loop.call_soon(self._flush, loop)
        gathered.append(_Job(fn, fut, loop))
        return fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """The end of a loop pass: commit its lone write here, or hand its writes to the
        thread."""
        jobs = self._gathered.pop(loop, [])
        if (len(jobs) == 1 and self.inline_lone_writes and self._queue.empty()
                and self._writing.acquire(blocking=False)):
            try:
                self._write(jobs)
            finally:
                self._writing.release()
            if not jobs[0].again:
                jobs[0].deliver()
                return
            jobs[0].again = False
        if self._closed:
            _fail(jobs, RuntimeError("the store was closed before this write could run"))
            _deliver_all(jobs)
            return
        for job in jobs:
            self._queue.put(job)

    def close(self) -> None:
        self._closed = True
        for loop in list(self._gathered):  # writes still gathering go first
            for job in self._gathered.pop(loop, []):
                self._queue.put(job)
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        later: list[_Job] = []  # put off by a conflict (`_transient`): first in the next batch
        closing = False
        while later or not closing:
            batch, later = later, []
            if not batch:
                job = self._queue.get()
                if job is None:
                    break
                batch.append(job)
            with contextlib.suppress(queue.Empty):
                while not closing:
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        closing = True
                    else:
                        batch.append(nxt)
            with self._writing:
                self._write(batch)
            later = [job for job in batch if job.again]
            self._deliver([job for job in batch if not job.again])
            for job in later:
                job.again = False
        if self._conn is not None:
            self._conn.close()

    def _write(self, batch: list[_Job]) -> None:
        """Commit `batch`, running all of it again while the dialect says it certainly did not
        commit and may succeed now; at the end every job has its result or its error."""
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.005
        isolate = len(batch) > 1 and not self.optimistic
        while True:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._tx = self._make_tx(self._conn)
                assert self._tx is not None
                self._commit(self._conn, self._tx, batch, isolate)
                return
            except _Aborted as a:
                error, committing, txn = a.error, a.committing, a.txn
            except Exception as e:  # could not connect
                error, committing, txn = e, False, None
            lost = self._lost(self._conn, error)
            if lost and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            if lost and committing:  # COMMIT was in flight: it may have happened
                outcome = self._committed(txn)
                if outcome is True:  # the jobs' outcomes stand
                    return
                if outcome is None:
                    _fail(batch, error)
                    return
            elif not lost:
                if not isolate and len(batch) > 1:  # one job failed the lot: which one?
                    isolate = True
                    continue
                if not self._transient(error):
                    _fail(batch, error)
                    return
            if time.monotonic() + pause > deadline:
                _fail(batch, error)
                return
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _commit(self, conn: Any, tx: Tx, batch: list[_Job], isolate: bool) -> None:
        """One attempt at the batch in one transaction, with a savepoint around each job if
        `isolate`. Sets each job's result or error once committed; raises `_Aborted` if the
        transaction as a whole did not commit, or might not have."""
        tx.notified = False
        txn: Any = None
        committing = False
        for job in batch:
            job.result, job.error, job.again = None, None, False
        try:
            txn = self._start(conn)
            if not isolate:
                for job in batch:
                    job.result = job.fn(tx)
            else:
                for job in batch:
                    conn.execute("SAVEPOINT one")
                    try:
                        job.result = job.fn(tx)
                    except Exception as e:
                        if self._lost(conn, e):
                            raise  # the transaction itself is gone
                        conn.execute("ROLLBACK TO one")
                        job.again = self._transient(e) and job.put_off(self.retry_seconds)
                        job.error = None if job.again else e
                    conn.execute("RELEASE one")
            committing = True
            self._finish(conn, tx)
        except Exception as e:
            self._rollback(conn)
            raise _Aborted(e, txn, committing) from e
        if tx.notified and self._after_notify is not None:
            self._after_notify()

    def _deliver(self, batch: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            if job.loop is None:
                job.deliver()
            else:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_deliver_all, jobs)

    # -- dialect hooks. A SQLite file neither drops its connection nor aborts a transaction to
    # break a deadlock, so by default nothing is retried: any failure goes to the callers. A
    # network database does both; its writer overrides these so a batch that certainly did not
    # commit runs again, on a new connection if need be, for up to `retry_seconds`, and a job
    # that conflicted with another transaction (a deadlock, a lock wait too long) goes to the
    # next batch, once this one has committed and so released the rows the other waited for.
    retry_seconds = 15.0

    inline_lone_writes = True
    """Whether a lone write may commit on its event loop (see the class docstring): not where
    a write may retry for `retry_seconds`, which would stall the loop that long."""

    optimistic = False
    """Run a batch without savepoints first, and again with one per job only if a job fails:
    for a database where each savepoint costs round trips. Outcomes are the same either way,
    as jobs only touch the database."""

    def _start(self, conn: Any) -> Any:
        """Begin the write transaction; returns what `_committed` needs to look it up later."""
        conn.execute(self._begin)
        return None

    def _finish(self, conn: Any, tx: Tx) -> None:
        """Commit the transaction `_start` began; errors mean it did not (or may not have)."""
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")

    def _lost(self, conn: Any, error: Exception) -> bool:
        """Whether the connection is gone, after `error` (`conn` is None: connecting failed)."""
        return False

    def _transient(self, error: Exception) -> bool:
        """Whether `error` was a conflict with another transaction, which running the job
        again later may not meet."""
        return False

    def _committed(self, txn: Any) -> bool | None:
        """The connection dropped while COMMIT was in flight: did transaction `txn` commit?
        None if that cannot be known; the callers then get the error."""
        return None


class _Aborted(Exception):
    """A batch's transaction failed as a whole. `committing`: it failed during COMMIT."""

    def __init__(self, error: Exception, txn: Any, committing: bool) -> None:
        super().__init__(str(error))
        self.error, self.txn, self.committing = error, txn, committing


def _fail(batch: list[_Job], error: BaseException) -> None:
    for job in batch:
        job.result, job.error, job.again = None, error, False


@dataclass(slots=True)
class _Job:
    fn: Callable[[Tx], Any]
    future: Future[Any] | asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop | None
    result: Any = None
    error: BaseException | None = None
    again: bool = False  # put off to the next batch
    put_off_since: float | None = None

    def put_off(self, limit: float) -> bool:
        """Whether the job may be put off once more: for `limit` seconds since the first time."""
        now = time.monotonic()
        self.put_off_since = self.put_off_since or now
        return now - self.put_off_since < limit

    def deliver(self) -> None:
        if self.future.done():  # an asyncio waiter that was cancelled meanwhile
            return
        if self.error is None:
            self.future.set_result(self.result)
        else:
            self.future.set_exception(self.error)


def _deliver_all(jobs: list[_Job]) -> None:
    for job in jobs:
        job.deliver()


class Store(ABC):
    """A database holding runs. Thread-safe; `awrite`/`aread` are the asyncio-friendly forms."""

    url: str

    writer: BatchWriter

    def write(self, fn: Callable[[Tx], T]) -> Future[T]:
        """Run `fn` in a write transaction, batched with others into one commit."""
        return self.writer.submit(fn)

    @abstractmethod
    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a read transaction on the calling thread."""

    @abstractmethod
    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from any thread) after a commit anywhere that called `Tx.notify`
        (a run was created, woken or ended); returns the unsubscribe function."""

    @abstractmethod
    def close(self) -> None: ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        return self.write(fn).result()

    def awrite(self, fn: Callable[[Tx], T]) -> asyncio.Future[T]:
        """`write` for callers on an event loop: await the result."""
        return self.writer.submit_async(fn)

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.to_thread(self.read, fn)
