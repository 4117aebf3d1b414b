"""The embedded default: one SQLite file, WAL, synchronous=FULL, one writer thread per process.

Writes are group-committed by a `BatchWriter`. Several processes may share the file; SQLite's lock
and the busy timeout serialize their writers, and run leases decide who runs what. Opening the
file reads its schema version and writes only if a migration is due, so reading a database never
waits for its write lock.

A damaged file (pages overwritten by a faulty disk, a torn copy of a live database) is refused
with one line instead of a traceback: its header is checked whenever it is opened, and damage
SQLite comes across later, in any process, is recorded beside the file (`<database>-damaged`).
From then on no process writes to it, since writing into a damaged b-tree can spread the damage
to pages still intact, until `durable doctor` (`diagnose`) checks every page and finds it sound.
Reads go on where the pages are intact: they are what salvage needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from durable.errors import StoreUnavailable, StoreUnusable, UsageError
from durable.store.base import Finding, Store
from durable.store.batch import BatchWriter
from durable.store.runs import Fence
from durable.store.schema import applied, apply_migrations, pending, version_finding
from durable.store.tx import Tx
from durable.store.wakeup import WakeChannel

T = TypeVar("T")

BUSY_TIMEOUT_MS = 30_000
SERIAL = "INTEGER PRIMARY KEY"  # SQLite's auto-incrementing key: an alias of the rowid
MIGRATIONS_EXIST = "SELECT 1 FROM sqlite_master WHERE name = 'durable_migrations'"
HEADER_MAGIC = b"SQLite format 3\x00"
DAMAGE_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
MARK_LOOK_SECONDS = 0.1
"""How long a process may go on trusting what it last read of the damage mark."""


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


_HEADER_FDS: dict[str, int] = {}
_HEADER_LOCK = threading.Lock()


def _kept_open(path: str) -> int:
    """A descriptor of the file at `path`, opened once per process and never closed while the
    file is the same: closing any descriptor of a file drops every POSIX lock this process
    holds on it, SQLite's too, so a header read closed after it would let another process take
    this process's connections for gone and checkpoint the WAL away under them (the database
    is then corrupted). Reopened only when the path names another file (its old inode's locks
    are none of SQLite's then)."""
    with _HEADER_LOCK:
        fd = _HEADER_FDS.get(path)
        if fd is not None and os.fstat(fd).st_ino == os.stat(path).st_ino:
            return fd
        if fd is not None:
            os.close(fd)
            del _HEADER_FDS[path]
        fd = _HEADER_FDS[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return fd


def check_header(path: str) -> None:
    """Refuse a file whose first 100 bytes are not a SQLite header that SQLite could read.

    Costs one read, so every open does it. Only the fields that never change in a live
    database are checked (not the page count, which a checkpoint running meanwhile may be
    rewriting): a file that is not a database at all, or whose first page was overwritten."""
    try:
        header = os.pread(_kept_open(path), 100, 0)
    except FileNotFoundError:
        return  # SQLite creates it
    except OSError as e:
        raise UsageError(f"cannot read database {path!r}: {e.strerror}; "
                         "set DURABLE_DB or --db to a readable SQLite file") from e
    if not header:
        return  # an empty file is a new database to SQLite
    if not header.startswith(HEADER_MAGIC):
        raise StoreUnusable(f"{path!r} is not a SQLite database (its first bytes are not "
                            "SQLite's header); set DURABLE_DB or --db to Durable's database")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if (len(header) < 100 or page_size < 512 or page_size & (page_size - 1)
            or header[18] not in (1, 2) or header[19] not in (1, 2)
            or header[21:24] != b"\x40\x20\x20"):
        raise StoreUnusable(f"the database {path!r} is damaged: its header (the first 100 "
                            "bytes) is not valid. Restore it from a backup")


def lock_timeout(error: BaseException) -> str | None:
    """What to tell a user whose write waited out the busy timeout behind another connection
    holding the write lock; None if `error` is something else."""
    if not (isinstance(error, sqlite3.OperationalError)
            and getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY):
        return None
    return (f"the database is locked: another connection has held its write lock for over "
            f"{BUSY_TIMEOUT_MS // 1000} s (a backup, an `sqlite3` shell, a stopped process); "
            "nothing was written, so try again once it lets go")


def _is_damage(error: sqlite3.Error) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) in DAMAGE_CODES


class _Damage:
    """Damage known of the file: recorded beside it (`<database>-damaged`) by whichever process
    finds it, in one line (when, by which process, SQLite's words).

    Every process's writes follow the mark, so they resume once `durable doctor` has found
    every page sound and removed it (after a restore, say), even in the worker that found the
    damage. A process that cannot write the mark refuses its own writes for good."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mark = Path(os.path.realpath(path) + "-damaged")
        self._unmarked: str | None = None  # found here, but the mark could not be written
        self._seen: str | None = None  # the mark as last read
        self._look_again = 0.0

    def refuse_writes(self, recheck: bool = True) -> None:
        """Raise StoreUnusable if the file is known to be damaged. `recheck`: read the mark
        again, at most every MARK_LOOK_SECONDS, which spares each batch a file system call."""
        if recheck and time.monotonic() >= self._look_again:
            self._look_again = time.monotonic() + MARK_LOOK_SECONDS
            self._seen = self.recorded()
        found = self._unmarked or self._seen
        if found is not None:
            raise StoreUnusable(_refusal(self.path, found))

    def recorded(self) -> str | None:
        try:
            return self.mark.read_text(errors="replace").strip() or "no details recorded"
        except FileNotFoundError:
            return None
        except OSError as e:  # a mark we cannot read still says the file was found damaged
            return f"recorded in {self.mark}, which cannot be read: {e.strerror}"

    def check(self, error: sqlite3.Error) -> None:
        """If `error` is SQLite finding the file damaged, record that and raise StoreUnusable
        instead; otherwise return, and the caller raises `error` itself."""
        if not _is_damage(error):
            return
        raise StoreUnusable(_refusal(self.path, self.found(str(error)))) from error

    def found(self, what: str) -> str:
        """Record damage found now; returns the record."""
        found = (f"found {time.strftime('%Y-%m-%d %H:%M:%S %z')} by pid {os.getpid()}: "
                 f"{' '.join(what.split())}")
        try:
            with open(self.mark, "x") as f:
                f.write(found + "\n")
        except FileExistsError:  # the first finder's words stay
            pass
        except OSError:
            self._unmarked = found
        self._seen = found
        return found

    def clear(self) -> str | None:
        """Remove the mark, returning what it said (None: there was none); OSError if it
        cannot be removed."""
        said = self.recorded()
        if said is not None:
            self.mark.unlink(missing_ok=True)
        self._seen = self._unmarked = None
        return said

    def guard(self, fn: Callable[[Tx], T]) -> Callable[[Tx], T]:
        def guarded(tx: Tx) -> T:
            try:
                return fn(tx)
            except sqlite3.DatabaseError as e:
                self.check(e)
                raise
        return guarded


def _refusal(path: str, found: str) -> str:
    return (f"the database {path!r} is damaged ({found}): Durable will not write to it. "
            f"Restore it from a backup, or salvage what is readable ({_salvage(path)}); "
            "`durable doctor` checks every page, and allows writes again once it finds the "
            "file sound")


def _salvage(path: str) -> str:
    return f"`sqlite3 {path} .recover | sqlite3 recovered.db`"


class _Writer(BatchWriter):
    """The shared writer, refusing to write into a file known to be damaged: each batch checks
    before it begins, and one whose job came across damage does not commit at all.

    Optimistic (see `BatchWriter.optimistic`): a step's checkpoint is three statements, and a
    savepoint around it two more, so a batch of many jobs runs without them first; one that
    fails (a job fenced out, say) runs again with them, which a job rarely makes it do."""

    optimistic = True

    def __init__(self, path: str, damage: _Damage, after_notify: Callable[[], None]) -> None:
        self._damage = damage
        super().__init__(lambda: _connect(path), "BEGIN IMMEDIATE", "sqlite",
                         after_notify=after_notify)

    def submit(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> Future[T]:
        return super().submit(self._damage.guard(fn), fence)

    def submit_async(self, fn: Callable[[Tx], T],
                     fence: Fence | None = None) -> asyncio.Future[T]:
        return super().submit_async(self._damage.guard(fn), fence)

    def _start(self, conn: Any) -> Any:
        self._damage.refuse_writes()
        return super()._start(conn)

    def _finish(self, conn: Any, tx: Tx) -> None:
        self._damage.refuse_writes(recheck=False)  # a job of this batch came across damage
        super()._finish(conn, tx)


def _passing(error: sqlite3.Error) -> bool:
    """Whether `error` may pass by itself: another process held the write lock past the busy
    timeout, or the disk is full."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_FULL)


class SQLiteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self.url = self.where = f"sqlite:///{path}"
        self._damage = _Damage(path)
        self._open_file(path)
        self._local = threading.local()
        self._wake = WakeChannel(path, lambda: _connect(path))
        self.writer = _Writer(path, self._damage, self._wake.broadcast)
        self._closed = threading.Event()

    def _open_file(self, path: str) -> None:
        if path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UsageError(f"cannot create the directory for database {path!r}: {e}; "
                                 "set DURABLE_DB or --db to a writable location") from e
            check_header(path)
        try:
            conn = _connect(path)
            try:
                _enable_wal(conn)
                if pending(applied(conn.execute, MIGRATIONS_EXIST), path):
                    self._migrate(conn)
            finally:
                conn.close()
        except sqlite3.Error as e:
            self._damage.check(e)
            if _passing(e):
                raise StoreUnavailable(f"cannot open database {path!r} for now: {e}",
                                       self.where) from e
            raise UsageError(f"cannot open database {path!r}: {e}; "
                             "set DURABLE_DB or --db to a writable SQLite file") from e

    def _migrate(self, conn: sqlite3.Connection) -> None:
        # BEGIN IMMEDIATE takes the file's write lock before reading which migrations are done:
        # of processes opening a new file at once, one migrates while the others wait out the
        # busy timeout, then find nothing left to do.
        self._damage.refuse_writes()
        conn.execute("BEGIN IMMEDIATE")
        try:
            apply_migrations(conn.execute, SERIAL, time.time(), self.path)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def refuse_if_unwritable(self) -> None:
        self._damage.refuse_writes()

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
            result = fn(tx)
        except BaseException as e:
            # A read has nothing to keep, and after SQLite found damage COMMIT fails as well.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.DatabaseError):
                self._damage.check(e)
            raise
        conn.execute("COMMIT")
        return result

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._wake.subscribe(callback)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.writer.close()
        self._wake.close()


def diagnose(path: str) -> list[Finding]:
    """`durable doctor` on a SQLite file: its size, header, journal mode, schema version,
    every page (`PRAGMA quick_check`) and the wake-up directory. Writes nothing to the
    database, takes no write lock, and creates nothing: it may be what a broken setup needs."""
    findings = [Finding("database", f"sqlite:///{path}")]
    if not os.path.isfile(path):
        return [*findings, Finding("file", f"no database file at {path!r} (Durable creates "
                                   "it when it first opens it)", ok=False)]
    wal = Path(path + "-wal")
    findings.append(Finding("file", f"{path}: {os.path.getsize(path):,} bytes, and "
                            f"{wal.stat().st_size if wal.exists() else 0:,} in its WAL"))
    try:
        check_header(path)
    except UsageError as e:
        return [*findings, Finding("header", str(e), ok=False)]
    damage = _Damage(path)
    conn = sqlite3.connect(f"file:{quote(path)}?mode=rw", uri=True, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        findings.append(Finding("journal mode", mode if mode == "wal" else
                                f"{mode} (Durable switches it to wal when it opens it)"))
        findings.append(version_finding(applied(conn.execute, MIGRATIONS_EXIST)))
        # Its rows may hold several lines each, under a heading naming the schema ("main").
        problems = [line for row in conn.execute("PRAGMA quick_check(5)").fetchall()
                    for line in str(row[0]).splitlines() if not line.startswith("***")]
    except sqlite3.DatabaseError as e:
        if not _is_damage(e):
            return [*findings, Finding("integrity", f"cannot check it: {e}", ok=False)]
        problems = [str(e)]
    finally:
        conn.close()
    if problems != ["ok"]:
        damage.found("; ".join(problems))
        findings.append(Finding("integrity", f"DAMAGED: {'; '.join(problems)}. Durable will "
                                "not write to it; restore it from a backup, or salvage what is "
                                f"readable ({_salvage(path)})", ok=False))
    else:
        try:
            cleared = damage.clear()
        except OSError as e:
            findings.append(Finding("integrity", "every page is sound (PRAGMA quick_check), "
                                    f"but {damage.mark} cannot be removed ({e.strerror}): "
                                    "remove it to allow writes again", ok=False))
        else:
            findings.append(Finding("integrity", "every page is sound (PRAGMA quick_check)" + (
                f"; the damage recorded earlier ({cleared}) is gone, and writes are allowed "
                "again" if cleared else "")))
    return [*findings, WakeChannel.finding(path)]
