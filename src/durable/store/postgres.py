"""PostgreSQL: many workers on many machines sharing one database, which is the whole of the
distributed engine; Durable adds no consensus of its own.

Everything the SQLite store does is shared (the `Tx` SQL, the `BatchWriter`'s group commit, the
migrations). What differs is what a network server with many writers requires:

- locking: claims take rows with FOR UPDATE SKIP LOCKED, so workers claiming at once never wait
  for each other nor get the same run, and a checkpoint holds its run's row until it commits, so
  a lease cannot change hands under it (SQLite's single writer gives both for free);
- wake-ups: NOTIFY at commit and a LISTEN connection per process (SQLite uses local sockets);
- failures: a connection can drop and the server can abort a transaction to break a deadlock, so
  the writer runs a batch again when it certainly did not commit, and asks the server whether a
  COMMIT cut off in flight took effect (pg_xact_status) instead of guessing;
- connections: writes go through one autocommit connection that issues BEGIN/COMMIT itself (so a
  whole batch is one transaction, with synchronous_commit on: a step reported done is durable),
  reads through a small pool.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool

from durable.errors import StoreUnavailable, UsageError
from durable.store.base import Finding, Presence, Sighting, Store
from durable.store.batch import BatchWriter
from durable.store.runs import Fence
from durable.store.schema import applied, apply_migrations, pending, version_finding
from durable.store.tx import Tx

T = TypeVar("T")

SERIAL = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
MIGRATION_LOCK = 0x6475_7261_626C_6500  # "durable\0": the advisory lock migrators queue on
MIGRATIONS_EXIST = "SELECT 1 WHERE to_regclass('durable_migrations') IS NOT NULL"
QUEUE_LOCKS = 0x6475_7200  # with a schema's queue's hash, the advisory lock of that queue
PRESENCE_LOCKS = 0x6475_7201  # with a worker's lock_key, the advisory lock of its presence
PRESENCE_TCP: dict[str, int] = {
    # A presence session must end soon after its worker's host or network does, not when the
    # kernel's two-hour keepalive default gives up: these bound how long the server (and the
    # worker, for its own end) keeps a connection whose peer went silent, to about 5 s.
    "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 2,
    "tcp_user_timeout": 5000,
}
"""libpq's options for the presence connection."""
SERVER_TCP = {"tcp_keepalives_idle": 2, "tcp_keepalives_interval": 1, "tcp_keepalives_count": 2,
              "tcp_user_timeout": 5000}
"""The server's, for the same session: it is the server that must let the lock go."""
CONNECT_TIMEOUT = 10  # seconds, unless the URL says otherwise
LISTEN_POLL = 0.5  # how often the listener looks up from the socket to see if it should stop
READ_POOL_SIZE = 8
LOCK_TIMEOUT_MS = 200
WRITER_SETTINGS: dict[str, str | int] = {
    "synchronous_commit": "on",  # whatever the server's default
    # A job waiting this long for a row another transaction holds goes to the next batch
    # (`_Writer._transient`), rather than stall all of its batch, or deadlock with the other.
    "lock_timeout": LOCK_TIMEOUT_MS,
    # Claims and `next_due` walk runs_lease and runs_ready in order from their first entry and
    # stop after the rows they take. Lacking statistics (a table just filled, or autovacuum
    # off) the planner may prefer a bitmap scan and a sort instead, which reads every entry in
    # range, each one a claim or a release left dead until VACUUM included (an index scan marks
    # those dead the first time and skips them after): every claim would cost in proportion to
    # the runs claimed before it.
    "enable_bitmapscan": "off",
    # Likewise every statement the writer runs looks rows up by an index, but with the
    # statistics of a table that was small when last analyzed (or never was) the planner
    # would rather read the table: e.g. the operations of the 100 runs a claim took, from a
    # table of millions. Where no index serves, the table is still read.
    "enable_seqscan": "off",
    # psycopg prepares a statement on its fifth run, and the server may then keep one generic
    # plan for it for the connection's life, made from the table sizes of that moment; nothing
    # but an ANALYZE replaces it. A worker that starts on empty tables (a new deployment; with
    # autovacuum off, forever) would keep plans made for empty tables as they grow to millions
    # of rows: e.g. a checkpoint's fence reading every RUNNING run through runs_queue_held, and
    # every operation with the checkpoint's op_id. Planning each execution costs tens of
    # microseconds; a plan for the wrong table size costs a read of the table.
    "plan_cache_mode": "force_custom_plan",
}
"""The writer connection's session settings."""

Cursor = psycopg.Cursor[Any]
Connection = psycopg.Connection[Any]


@functools.lru_cache(maxsize=1024)
def _placeholders(query: str) -> str:
    """The shared SQL with psycopg's `%s` for `?` (it contains no literal ? or %), once."""
    return query.replace("?", "%s")


def _executor(conn: Connection) -> Callable[[str, Sequence[Any]], Cursor]:
    """`execute` for a Tx on `conn`: one cursor, reused, since a Tx reads each result before it
    runs the next statement."""
    cur = conn.cursor()

    def execute(query: str, params: Sequence[Any]) -> Cursor:
        return cur.execute(_placeholders(query), params)
    return execute


class PgTx(Tx):
    """The shared Tx, with the locks a server with many concurrent writers needs."""

    claim_lock_clause = " FOR UPDATE SKIP LOCKED"
    row_lock_clause = " FOR UPDATE"
    fence_lock_clause = " FOR UPDATE OF r"
    run_id_in = "run_id = ANY(ARRAY({}))"  # the ids first, then one primary-key lookup each

    session_gone_clause = (
        " AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND l.classid = {PRESENCE_LOCKS} AND l.objid = w.lock_key AND l.objsubid = 2)")
    """No session holds the row's presence lock. Locks are per database, shared by the schemas
    in it: two workers whose keys collide, in one deployment or two, only make a dead one look
    alive, which its leases running out then settle."""

    def lock_queue(self, queue: str) -> None:
        """An advisory lock per queue until commit: claims admitting runs to one queue take
        turns (a hash collision between two queues only makes them take turns too). Advisory
        locks are per database, so the key is of the schema's queue: deployments sharing the
        database, each in its schema, do not wait on one another's claims of a queue that only
        shares its name."""
        self._exec("SELECT pg_advisory_xact_lock(?, hashtext(current_schema() || '.' || ?))",
                   (QUEUE_LOCKS, queue))

    def fence_keys(self, fences: Sequence[Fence]) -> tuple[str, list[Any]]:
        # Three arrays: the statement's text is the same however many fences, so it is
        # prepared once, not once per batch size.
        return ("SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[])",
                [[f.run_id for f in fences], [f.token for f in fences],
                 [f.op_id for f in fences]])


def _make_tx(conn: Connection) -> Tx:
    return PgTx(_executor(conn))


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _conninfo(url: str) -> tuple[str, str]:
    """The connection string to use, with defaults, and how to name the server in messages
    (without the password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as e:
        raise UsageError(f"invalid PostgreSQL URL {url!r}: {_one_line(e)}; expected "
                         "postgresql://user[:password]@host[:port]/dbname") from e
    params.setdefault("application_name", "durable")  # finds our sessions in pg_stat_activity
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    where = (f"{params.get('user') or ''}{'@' if params.get('user') else ''}"
             f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"
             f"/{params.get('dbname') or ''}")
    return make_conninfo("", **params), where


def _connect(conninfo: str, where: str) -> Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as e:
        message = (f"cannot connect to PostgreSQL at {where}: {_one_line(e)}; "
                   "check DURABLE_DB (or --db)")
        raise UsageError(message) if _turned_away(e) else StoreUnavailable(message, where) from e


_PASSING_REFUSALS = ("starting up", "shutting down", "not yet accepting", "recovery mode",
                     "too many clients", "connection slots", "terminating connection")
"""Words of the refusals a server gives only for now: it is starting, stopping or full."""


def _turned_away(error: psycopg.OperationalError) -> bool:
    """Whether connecting failed because the server answered no for good (no such role or
    database, a wrong password, no pg_hba.conf entry): the URL must change, waiting will not
    help. Anything else (nothing listening, a connection dropped while it was made, a server
    starting up, shutting down or out of connection slots) may pass by itself. libpq gives
    only the text: the server's refusals are the FATAL ones."""
    text = str(error)
    return "FATAL:" in text and not any(words in text for words in _PASSING_REFUSALS)


def _migrate(conn: Connection, where: str) -> str:
    """Apply pending migrations, one process at a time; returns the schema the tables live in.
    Whether any are pending is read first, so opening a database that is up to date costs no
    transaction and needs no right to create tables."""
    execute = _executor(conn)
    try:
        if pending(applied(execute, MIGRATIONS_EXIST), where):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                apply_migrations(execute, SERIAL, time.time(), where)
        row = conn.execute("SELECT current_schema()").fetchone()
    except psycopg.Error as e:
        # Cut off (class 08), shut down or restarting (57P), out of resources (53): for now.
        message = f"cannot set up Durable's tables in PostgreSQL at {where}: {_one_line(e)}"
        if conn.broken or (e.sqlstate or "").startswith(("08", "53", "57P")):
            raise StoreUnavailable(message, where) from e
        raise UsageError(message) from e
    assert row is not None
    return str(row[0])


class _Xact:
    """The id of a batch's transaction: what to ask the server about if COMMIT is cut off."""

    def __init__(self, cur: Cursor) -> None:
        self._cur = cur
        self.xid: str | None = None

    def fetch(self) -> None:
        row = self._cur.fetchone()
        assert row is not None
        self.xid = row[0]


class _Writer(BatchWriter):
    """The shared group-commit writer, taught what a connection to a server needs.

    Round trips are what a batch costs here, so a batch first runs in pipeline mode without a
    savepoint per job: statements whose answer nobody reads (history, operation rows, ...) go
    out with the next one that is read. The one read a step's checkpoint or an invocation's
    outcome must make, its fence, is read with those of the batch's other writes in one
    statement (`read_fences_ahead`), so a batch of many checkpoints costs a round trip or two
    and its COMMIT, not one per write. If a job fails, the batch runs again the careful way
    (`optimistic`).
    """

    optimistic = True
    inline_lone_writes = False
    read_fences_ahead = True

    def __init__(self, conninfo: str, channel: str) -> None:
        self._conninfo = conninfo
        self._notify = f"NOTIFY {channel}"
        self._pipeline: psycopg.Pipeline | None = None
        self._xact: _Xact | None = None
        super().__init__(self._open, "BEGIN", "postgres", make_tx=_make_tx)

    def _open(self) -> Connection:
        conn = psycopg.connect(self._conninfo, autocommit=True)
        for name, value in WRITER_SETTINGS.items():
            conn.execute(f"SET {name} = {value}")
        return conn

    def _commit(self, conn: Connection, tx: Tx, batch: list[Any], isolate: bool) -> None:
        if isolate:
            super()._commit(conn, tx, batch, isolate)
            return
        try:
            with conn.pipeline() as self._pipeline:
                super()._commit(conn, tx, batch, isolate)
        finally:
            self._pipeline = None
            # `_rollback` left it for now: in a pipeline after an error, it would be skipped.
            if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                self._rollback(conn)

    # Statements of the writer's own (BEGIN, COMMIT, ...) are never prepared: psycopg's cache of
    # prepared statements can lose track of one prepared in a pipeline that an error aborted.

    def _start(self, conn: Connection) -> _Xact:
        if self._pipeline is None:
            cur = conn.execute("BEGIN; SELECT pg_current_xact_id()")  # one round trip
            cur.nextset()
            self._xact = _Xact(cur)
            self._xact.fetch()
        else:  # the id arrives with the first answer the batch waits for
            conn.execute("BEGIN", prepare=False)
            self._xact = _Xact(conn.execute("SELECT pg_current_xact_id()", prepare=False))
        return self._xact

    def _finish(self, conn: Connection, tx: Tx) -> None:
        # NOTIFY travels with COMMIT, once per batch however many of its writes notified; one
        # made in a savepoint later rolled back only costs a spurious wake-up.
        if self._pipeline is None:
            conn.execute(f"{self._notify}; COMMIT" if tx.notified else "COMMIT")
            return
        assert self._xact is not None
        self._xact.fetch()  # known before COMMIT goes out
        if tx.notified:
            conn.execute(self._notify, prepare=False)
        conn.execute("COMMIT", prepare=False)
        self._pipeline.sync()

    def _rollback(self, conn: Connection) -> None:
        if self._pipeline is None:  # else `_commit` does it once the pipeline has ended
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK", prepare=False)

    def _lost(self, conn: Connection | None, error: Exception) -> bool:
        return conn is None or conn.broken or conn.closed

    def _transient(self, error: Exception) -> bool:
        # SQLSTATE class 40: a deadlock's victim, a serialization failure; 55P03: lock_timeout
        code = error.sqlstate or "" if isinstance(error, psycopg.Error) else ""
        return code.startswith("40") or code == "55P03"

    def _committed(self, txn: _Xact | None) -> bool | None:
        if txn is None:
            return None
        if txn.xid is None:  # `_finish` learns the id before it sends COMMIT: none was sent
            return False
        return self.xid_committed(txn.xid)

    def xid_committed(self, xid: str) -> bool | None:
        """Whether transaction `xid` committed, asked on a new connection, waiting while it is
        still in progress; None if the server cannot say within `retry_seconds`."""
        deadline = time.monotonic() + self.retry_seconds
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    row = conn.execute("SELECT pg_xact_status(%s::xid8)",
                                       (xid,)).fetchone()
            except psycopg.OperationalError:
                row = None  # the server is not back yet
            status = row[0] if row else None
            if status in ("committed", "aborted"):
                return str(status) == "committed"
            time.sleep(0.05)  # "in progress": the old session is still winding down
        return None


class _Presence(Presence):
    """A worker's presence: a dedicated session holding a session-level advisory lock, whose
    key its row in `workers` names. Registered only once the lock is held, so a row whose lock
    nobody holds certainly outlived its session. Looking costs one query on that session,
    which also finds out that the session was lost (and joins again with a new one)."""

    def __init__(self, conninfo: str, where: str, owner: str) -> None:
        self._conninfo = make_conninfo(conninfo, **PRESENCE_TCP)
        self._where, self.owner = where, owner
        self._conn: Connection | None = None
        self._joined = False
        self._suspects: set[str] = set()

    def look(self) -> Sighting:
        rejoined = False
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._join()
                rejoined, self._joined = self._joined, True
                self._suspects = set()  # whoever lost the server with us may be joining too
            assert self._conn is not None
            absent = set(_make_tx(self._conn).gone_workers(self.owner))
        except psycopg.Error as e:
            self._drop()
            raise StoreUnavailable(f"PostgreSQL at {self._where}: worker presence: "
                                   f"{_one_line(e)}", self._where) from e
        gone, self._suspects = absent & self._suspects, absent
        return Sighting(sorted(gone), rejoined)

    def _join(self) -> None:
        """A new session, its lock, then the row naming it. The key is new each time: the
        session replaced may linger on the server (a half-open connection) holding the old."""
        self._drop()
        conn = psycopg.connect(self._conninfo, autocommit=True)
        self._conn = conn
        conn.execute("; ".join(f"SET {name} = {value}" for name, value in SERVER_TCP.items()))
        key = secrets.randbits(31)
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (PRESENCE_LOCKS, key))
        _make_tx(conn).register_worker(self.owner, key, time.time())

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def close(self, *, holding: bool) -> None:
        """Without leases left, the row goes too; with some, it stays for a peer to find gone."""
        if self._conn is not None and not holding:
            with contextlib.suppress(psycopg.Error):
                _make_tx(self._conn).forget_worker(self.owner, gone=False)
        self._drop()


class PostgresStore(Store):
    """`postgresql://user@host:port/dbname[?application_name=...&options=-csearch_path%3D...]`.

    Tables live in the connection's current schema (the first of search_path), so several
    independent Durable deployments can share one database, each in its own schema.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._conninfo, self.where = _conninfo(url)
        with _connect(self._conninfo, self.where) as conn:
            schema = _migrate(conn, self.where)
            # One channel per schema: deployments sharing a database do not wake each other.
            channel = sql.Identifier(f"durable.{schema}").as_string(conn)
        self._listen_sql = f"LISTEN {channel}"
        self._pool: ConnectionPool[Connection] = ConnectionPool(
            self._conninfo, min_size=1, max_size=READ_POOL_SIZE, kwargs={"autocommit": True},
            name="durable-read", open=True)
        self.writer = _Writer(self._conninfo, channel)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()
        self._closed = threading.Event()

    # -- reads ------------------------------------------------------------------------------
    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` on a pooled connection in autocommit: each statement sees the latest
        commits, and a read costs no BEGIN/COMMIT round trips."""
        with self._pool.connection() as conn:
            try:
                return fn(_make_tx(conn))
            except psycopg.OperationalError:
                if not conn.broken:
                    raise
        # The server dropped the connection (a restart, a failover, an administrator's kill);
        # likely the pool's other idle ones too. Replace the dead ones and read again, once:
        # a read has no effect to duplicate.
        self._pool.check()
        with self._pool.connection() as conn:
            return fn(_make_tx(conn))

    # -- wake-ups ---------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """LISTEN on this schema's channel in a thread of this store. Returns once listening,
        so a commit made after `subscribe` returns always wakes `callback`."""
        with self._lock:
            self._listeners.append(callback)
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, daemon=True,
                                                  name="durable-postgres-listen")
                self._listener.start()
        self._listening.wait(CONNECT_TIMEOUT)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return unsubscribe

    def _listen(self) -> None:
        pause = 0.05
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(self._listen_sql)
                    self._listening.set()
                    self._fire()  # whatever was committed while nobody listened
                    pause = 0.05
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=LISTEN_POLL):
                            self._fire()
            except psycopg.Error:
                # Dropped or not reachable: listen again. Waiters do not hang meanwhile: they
                # poll as a fallback, and are woken as soon as listening resumes.
                self._closed.wait(pause)
                pause = min(pause * 2, 2.0)

    def _fire(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def presence(self, owner: str) -> Presence:
        return _Presence(self._conninfo, self.where, owner)

    def close(self) -> None:
        """Stop writing and reading; the listener thread notices within LISTEN_POLL."""
        if self._closed.is_set():
            return
        self._closed.set()
        self.writer.close()
        self._pool.close()


def diagnose(url: str) -> list[Finding]:
    """`durable doctor` on PostgreSQL: the connection (server version, user, schema) and the
    schema version, read without migrating or locking anything. The server checks its own
    pages; the amcheck extension is the tool for that."""
    conninfo, where = _conninfo(url)
    findings = [Finding("database", f"postgresql://{where}")]
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT current_setting('server_version'), current_user, "
                               "current_schema()").fetchone()
            assert row is not None
            findings.append(Finding("connection", f"PostgreSQL {row[0]}, as {row[1]}, tables "
                                    f"in schema {row[2]}"))
            findings.append(version_finding(applied(_executor(conn), MIGRATIONS_EXIST)))
    except psycopg.Error as e:
        findings.append(Finding("connection", f"cannot connect or read: {_one_line(e)}",
                                ok=False))
    return findings
