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
)

T = TypeVar("T")

_OP_COLUMNS = (
    "op_id, type, status, name, parent_id, sub_type, attempt, result, error, due_at, "
    "callback_id, child_run_id, started_at, ended_at"
)
_RUN_COLUMNS = (
    "run_id, workflow, status, input, result, error, created_at, updated_at, ended_at, "
    "compute_seconds, parked, cancel_requested, ready_at, parent_run_id"
)
_WAITING = (OperationStatus.STARTED.value, OperationStatus.PENDING.value)

# Columns of `runs` the engine may set through `update_run`; guards the f-string below.
_RUN_SETTABLE = frozenset(
    {"status", "result", "error", "updated_at", "ended_at", "ready_at", "lease_owner",
     "lease_expires", "cancel_requested", "parked", "compute_seconds"}
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

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._execute(sql, params).rowcount)

    # -- runs -------------------------------------------------------------------------------
    def insert_run(self, run_id: str, workflow: str, input: str | None, now: float,
                   parent: tuple[str, str] | None = None) -> bool:
        """Create a RUNNING run ready now; False if the id exists already (start is idempotent).
        `parent` is the (run id, operation id) of the CHAINED_INVOKE that started it."""
        parent_run, parent_op = parent or (None, None)
        created = self._exec(
            "INSERT INTO runs (run_id, workflow, status, input, created_at, updated_at, ready_at,"
            " parent_run_id, parent_op_id) VALUES (?, ?, 'RUNNING', ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id) DO NOTHING",
            (run_id, workflow, input, now, now, now, parent_run, parent_op),
        ) == 1
        if created:
            self.notify()
        return created

    def get_run(self, run_id: str) -> RunInfo | None:
        row = self._one(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
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

    def fence(self, run_id: str, token: int, now: float) -> bool | None:
        """None if `token` is stale, else whether a cancel was requested.

        A read, not a write, to keep the step path to the rows it must write; `row_lock_clause`
        holds the run's row until commit where the dialect lets a lease change meanwhile.
        """
        row = self._one(
            "SELECT cancel_requested FROM runs WHERE run_id = ? AND token = ?"
            " AND status = 'RUNNING'" + self.row_lock_clause, (run_id, token))
        return None if row is None else bool(row[0])

    row_lock_clause = ""  # SQLite: the write transaction already excludes every other writer

    def lease(self, run_ids: Sequence[str], owner: str, until: float) -> list[tuple[str, int]]:
        """Take the lease on each run, bumping its fencing token; returns (run_id, new token)."""
        out = []
        for run_id in run_ids:
            row = self._one(
                "UPDATE runs SET lease_owner = ?, lease_expires = ?, token = token + 1,"
                " ready_at = NULL WHERE run_id = ? RETURNING token",
                (owner, until, run_id),
            )
            out.append((run_id, row[0]))
        return out

    def extend_leases(self, owner: str, run_ids: Sequence[str], until: float) -> None:
        for run_id in run_ids:
            self._exec(
                "UPDATE runs SET lease_expires = ? WHERE run_id = ? AND lease_owner = ?",
                (until, run_id, owner),
            )

    def claimable(self, now: float, limit: int, workflows: Sequence[str]) -> list[str]:
        """Runs with work due and no live lease, or whose lease holder stopped renewing it."""
        where, params = _workflow_filter(workflows)
        rows = self._rows(
            "SELECT run_id FROM runs WHERE status = 'RUNNING' AND "
            "((ready_at <= ? AND lease_owner IS NULL) OR lease_expires < ?)"
            f"{where} ORDER BY ready_at LIMIT ?" + self.claim_lock_clause,
            (now, now, *params, limit),
        )
        return [r[0] for r in rows]

    claim_lock_clause = ""

    def next_due(self, workflows: Sequence[str]) -> float | None:
        where, params = _workflow_filter(workflows)
        a = self._one(
            "SELECT min(ready_at) FROM runs WHERE status = 'RUNNING' AND lease_owner IS NULL"
            f"{where}", params)[0]
        b = self._one(
            f"SELECT min(lease_expires) FROM runs WHERE status = 'RUNNING'{where}", params)[0]
        return min((t for t in (a, b) if t is not None), default=None)

    def list_runs(self, status: str | None, workflow: str | None, limit: int,
                  offset: int = 0) -> list[RunInfo]:
        clauses, params = [], []
        if status:
            clauses.append("status = ?")
            params.append(status)
        if workflow:
            clauses.append("workflow = ?")
            params.append(workflow)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(
            f"SELECT {_RUN_COLUMNS} FROM runs{where} ORDER BY created_at DESC, run_id"
            " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [_run(r) for r in rows]

    def restart_run(self, run_id: str, input: str | None, now: float) -> int:
        """Clear the run's operations and history and start it over with `input`; buffered
        signals and published events stay. Returns the new generation number."""
        self._exec("DELETE FROM operations WHERE run_id = ?", (run_id,))
        self._exec("DELETE FROM history WHERE run_id = ?", (run_id,))
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

    # -- operations -------------------------------------------------------------------------
    def operations(self, run_id: str) -> list[Operation]:
        return [_operation(r) for r in self._rows(
            f"SELECT {_OP_COLUMNS} FROM operations WHERE run_id = ? ORDER BY seq", (run_id,))]

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
        row = self._one(f"SELECT run_id, {_OP_COLUMNS} FROM operations WHERE callback_id = ?",
                        (callback_id,))
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


def _workflow_filter(workflows: Sequence[str]) -> tuple[str, list[str]]:
    if not workflows:
        return "", []
    return f" AND workflow IN ({', '.join('?' * len(workflows))})", list(workflows)


class BatchWriter:
    """Group commit: one thread, one connection, many writers.

    Every write is a function queued here. The thread drains the queue and runs everything it
    found in one transaction, each function in its own savepoint so one failure does not sink the
    batch, then commits once: one fsync serves every step that was waiting, and each caller
    resumes only after its own change is durable. Callers on an event loop get their results with
    one wake-up of that loop per batch, not one per write. Both dialects accept the same savepoint
    SQL; they differ only in how a write transaction begins and ends, in how a Tx is made, and in
    whether a failed batch may run again (the hooks at the end).
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
        self._queue.put(_Job(fn, fut, loop))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                break
            batch = [job]
            with contextlib.suppress(queue.Empty):
                while True:
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
            self._write(batch)
            self._deliver(batch)
        if self._conn is not None:
            self._conn.close()

    def _write(self, batch: list[_Job]) -> None:
        """Commit `batch`, running all of it again while the dialect says it certainly did not
        commit and may succeed now; at the end every job has its result or its error."""
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.005
        while True:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._tx = self._make_tx(self._conn)
                assert self._tx is not None
                self._commit(self._conn, self._tx, batch)
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
            elif not (lost or self._transient(error)):
                _fail(batch, error)
                return
            if time.monotonic() + pause > deadline:
                _fail(batch, error)
                return
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _commit(self, conn: Any, tx: Tx, batch: list[_Job]) -> None:
        """One attempt at the batch in one transaction. Sets each job's result or error once
        committed; raises `_Aborted` if the transaction as a whole did not commit, or might not
        have."""
        tx.notified = False
        txn: Any = None
        committing = False
        try:
            txn = self._start(conn)
            if len(batch) == 1:
                batch[0].result, batch[0].error = batch[0].fn(tx), None
            else:
                for job in batch:
                    job.result = job.error = None
                    conn.execute("SAVEPOINT one")
                    try:
                        job.result = job.fn(tx)
                    except Exception as e:
                        if self._lost(conn, e) or self._transient(e):
                            raise  # the transaction itself is gone
                        conn.execute("ROLLBACK TO one")
                        job.error = e
                    conn.execute("RELEASE one")
            committing = True
            conn.execute(self._commit_sql(tx))
        except Exception as e:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
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
    # commit runs again, on a new connection if need be, for up to `retry_seconds`.
    retry_seconds = 15.0

    def _start(self, conn: Any) -> Any:
        """Begin the write transaction; returns what `_committed` needs to look it up later."""
        conn.execute(self._begin)
        return None

    def _commit_sql(self, tx: Tx) -> str:
        return "COMMIT"

    def _lost(self, conn: Any, error: Exception) -> bool:
        """Whether `error` means the connection is gone (`conn` is None: connecting failed)."""
        return False

    def _transient(self, error: Exception) -> bool:
        """Whether the database aborted the transaction and running it again may succeed."""
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
        job.result, job.error = None, error


@dataclass(slots=True)
class _Job:
    fn: Callable[[Tx], Any]
    future: Future[Any] | asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop | None
    result: Any = None
    error: BaseException | None = None

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
