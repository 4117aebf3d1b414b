"""The embedded default: one SQLite file, WAL, synchronous=FULL, one writer thread per process.

Group commit: every write is a function queued to the writer thread, which drains the queue and
runs everything it found in one transaction (each function in its own savepoint, so one failure
does not sink the batch), then commits once. One fsync serves every step that was waiting, and each
caller resumes only after its own change is on disk. Several processes may share the file; SQLite's
lock and the busy timeout serialize their writers, and run leases decide who runs what.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from durable.errors import UsageError
from durable.store.base import Store, Tx
from durable.store.schema import MIGRATIONS, statements

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
WATCH_INTERVAL = 0.002  # how often the change watcher reads PRAGMA data_version


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._open_file(path)
        self._local = threading.local()
        self._queue: queue.SimpleQueue[tuple[Callable[[Tx], Any], Future[Any]] | None] = (
            queue.SimpleQueue())
        self._writer = threading.Thread(target=self._write_loop, name="durable-sqlite-writer",
                                        daemon=True)
        self._writer.start()
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()
        self._watcher: threading.Thread | None = None
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
            conn.execute("PRAGMA journal_mode = WAL")
            self._migrate(conn)
            conn.close()
        except sqlite3.Error as e:
            raise UsageError(f"cannot open database {path!r}: {e}; "
                             "set DURABLE_DB or --db to a writable SQLite file") from e

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS durable_migrations "
                         "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
            done = {r[0] for r in conn.execute("SELECT version FROM durable_migrations")}
            for version, sql in MIGRATIONS:
                if version not in done:
                    for stmt in statements(sql, "INTEGER PRIMARY KEY"):
                        conn.execute(stmt)
                    conn.execute("INSERT INTO durable_migrations VALUES (?, ?)",
                                 (version, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writes -----------------------------------------------------------------------------
    def write(self, fn: Callable[[Tx], T]) -> Future[T]:
        fut: Future[T] = Future()
        self._queue.put((fn, fut))
        return fut

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        tx = Tx(conn.execute)
        while True:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            with contextlib.suppress(queue.Empty):
                while True:
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        self._queue.put(None)
                        break
                    batch.append(nxt)
            self._commit_batch(conn, tx, batch)
        conn.close()

    @staticmethod
    def _commit_batch(conn: sqlite3.Connection, tx: Tx,
                      batch: list[tuple[Callable[[Tx], Any], Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            single = len(batch) == 1
            for fn, fut in batch:
                if single:
                    outcomes.append((fut, fn(tx), None))
                    continue
                conn.execute("SAVEPOINT one")
                try:
                    outcomes.append((fut, fn(tx), None))
                    conn.execute("RELEASE one")
                except Exception as e:
                    conn.execute("ROLLBACK TO one")
                    conn.execute("RELEASE one")
                    outcomes.append((fut, None, e))
            conn.execute("COMMIT")
        except Exception as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, fut in batch:
                fut.set_exception(e)
            return
        for fut, result, error in outcomes:
            if error is None:
                fut.set_result(result)
            else:
                fut.set_exception(error)

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

    # -- wake-ups ---------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Watch PRAGMA data_version, which moves whenever any connection commits: a wake-up
        across processes without reading any table."""
        with self._listeners_lock:
            self._listeners.append(callback)
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name="durable-sqlite-watch",
                                                 daemon=True)
                self._watcher.start()

        def unsubscribe() -> None:
            with self._listeners_lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return unsubscribe

    def _watch(self) -> None:
        conn = _connect(self.path)
        last = conn.execute("PRAGMA data_version").fetchone()[0]
        while not self._closed.wait(WATCH_INTERVAL):
            now = conn.execute("PRAGMA data_version").fetchone()[0]
            if now != last:
                last = now
                with self._listeners_lock:
                    listeners = list(self._listeners)
                for cb in listeners:
                    cb()
        conn.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(None)
        self._writer.join()


def default_path() -> str:
    return os.path.join(".durable", "durable.db")
