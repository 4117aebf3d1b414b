"""The embedded default: one SQLite file, WAL, synchronous=FULL, one writer thread per process.

Writes are group-committed by a `BatchWriter`. Several processes may share the file; SQLite's lock
and the busy timeout serialize their writers, and run leases decide who runs what.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from durable.errors import StoreUnavailable, UsageError
from durable.store.base import Store
from durable.store.batch import BatchWriter
from durable.store.schema import apply_migrations
from durable.store.tx import Tx
from durable.store.wakeup import WakeChannel

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
SERIAL = "INTEGER PRIMARY KEY"  # SQLite's auto-incrementing key: an alias of the rowid


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL. SQLite may refuse the switch with "database is locked" without
    waiting out the busy timeout (processes opening a new file at once), so retry until then."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _passing(error: sqlite3.Error) -> bool:
    """Whether `error` may pass by itself: another process held the write lock past the busy
    timeout, or the disk is full."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL)


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self.url = self.where = f"sqlite:///{path}"
        self._open_file(path)
        self._local = threading.local()
        self._wake = WakeChannel(path)
        self.writer = BatchWriter(lambda: _connect(path), "BEGIN IMMEDIATE", "sqlite",
                                  after_notify=self._wake.broadcast)
        self._closed = threading.Event()

    def _open_file(self, path: str) -> None:
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create the directory for database {path!r}: {e}; "
                                 "set DURABLE_DB or --db to a writable location") from e
        try:
            conn = _connect(path)
            _enable_wal(conn)
            self._migrate(conn)
            conn.close()
        except sqlite3.Error as e:
            if _passing(e):
                raise StoreUnavailable(f"cannot open database {path!r} for now: {e}",
                                       self.where) from e
            raise UsageError(f"cannot open database {path!r}: {e}; "
                             "set DURABLE_DB or --db to a writable SQLite file") from e

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the file's write lock before reading which migrations are done:
        # of processes opening a new file at once, one migrates while the others wait out the
        # busy timeout, then find nothing left to do.
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply_migrations(conn.execute, SERIAL, time.time())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- reads ------------------------------------------------------------------------------
    def read(self, fn: Callable[[Tx], T]) -> T:
        tx: Tx | None = getattr(self._local, "tx", None)
        if tx is None:
            conn = _connect(self.path)
            tx = self._local.tx = Tx(conn.execute)
            self._local.conn = conn
        conn = self._local.conn
        conn.execute("BEGIN")
        try:
            return fn(tx)
        finally:
            conn.execute("COMMIT")

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._wake.subscribe(callback)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.writer.close()
        self._wake.close()


def default_path() -> str:
    return os.path.join(".durable", "durable.db")
