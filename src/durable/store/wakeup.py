"""Wake-ups across processes that share one SQLite file, without polling.

Each process that waits for something (a worker, a client waiting for a result) binds a Unix
datagram socket in `<database>-wake/`, the directory beside the file. A process that commits
something others may wait for (a run created, woken or ended) sends one byte to every socket
there, and calls its own listeners directly. A receiver sleeps in recv() until then: no timer, no
table reads, no latency floor. A socket left by a killed process is removed by the first sender to
find it dead.

The directory sits beside the database because whoever may create or replace files there may
replace the database itself: nobody else can block or spoof its wake-ups (a directory under /tmp
could be taken by any user first). It is made with the database's write permissions, so a file
shared with a group gets a directory shared with the same group, and an existing one is used only
if it belongs to this user, the database's owner or root, and nobody may write it who may not
write the database. Where it cannot be used, the process says so once (a warning through
`logging`) and polls SQLite's commit counter (`PRAGMA data_version`) instead. A path too long
for a socket address (about 100 bytes) is reached through /proc/self/fd where there is one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import sqlite3
import stat
import threading
from collections.abc import Callable

from durable.store.base import Finding

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""How often a process that cannot use the directory looks for commits."""
MAX_ADDRESS = 100  # bytes of a socket's path: Linux allows 107, macOS 103
NAME_LENGTH = 16  # of a socket's name in the directory: "<pid>-<8 hex digits>"


class _Unusable(Exception):
    """Why this process cannot use the wake-up directory."""


class _Dir:
    """The wake-up directory, opened once and checked, and how to spell its sockets' addresses."""

    def __init__(self, fd: int, prefix: str) -> None:
        self.fd = fd
        self._prefix = prefix

    def address(self, name: str) -> str:
        return f"{self._prefix}/{name}"


def _mode_for(db_mode: int) -> int:
    """The directory's mode: open to whoever may write the database, and to nobody else."""
    return (0o700 | (0o070 if db_mode & stat.S_IWGRP else 0)
            | (0o007 if db_mode & stat.S_IWOTH else 0))


def _open_dir(path: str, db_path: str, create: bool) -> _Dir:
    """Open the directory (making it if `create`) and check it may be trusted; FileNotFoundError
    if it does not exist and `create` is false."""
    try:
        db = os.stat(db_path)
    except OSError as e:
        raise _Unusable(f"cannot look at the database file: {e.strerror}") from e
    made = False
    if create:
        try:
            os.mkdir(path, 0o700)
            made = True
        except FileExistsError:
            pass
        except OSError as e:
            raise _Unusable(f"cannot create it: {e.strerror}") from e
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if create:
            raise _Unusable("it vanished as it was made") from None
        raise
    except OSError as e:
        raise _Unusable(f"cannot open it as a directory: {e.strerror}") from e
    try:
        if made:
            _share_like(fd, db)
        _check(os.fstat(fd), db)
        return _Dir(fd, _prefix(path, fd))
    except BaseException:
        os.close(fd)
        raise


def _share_like(fd: int, db: os.stat_result) -> None:
    """Give a directory just made the database's group and write permissions (mkdir's mode
    went through the umask)."""
    mode = _mode_for(db.st_mode)
    if os.fstat(fd).st_gid != db.st_gid:
        try:
            os.fchown(fd, -1, db.st_gid)
        except OSError:  # not in the database's group: share with nobody, not the wrong group
            mode &= ~0o070
    os.fchmod(fd, mode)


def _check(st: os.stat_result, db: os.stat_result) -> None:
    if st.st_uid not in (os.geteuid(), db.st_uid, 0):
        raise _Unusable(f"it belongs to uid {st.st_uid}, neither you nor the database's owner")
    loose = st.st_mode & ~db.st_mode & 0o022
    if st.st_mode & 0o020 and st.st_gid != db.st_gid:
        loose |= 0o020
    if loose:
        raise _Unusable(f"its mode {st.st_mode & 0o7777:04o} lets users write it who may not "
                        f"write the database (mode {db.st_mode & 0o7777:04o})")


def _prefix(path: str, fd: int) -> str:
    if len(os.fsencode(path)) + 1 + NAME_LENGTH <= MAX_ADDRESS:
        return path
    through = f"/proc/self/fd/{fd}"
    if os.path.isdir(through):
        return through
    raise _Unusable(f"its path is too long for a socket's address (at most "
                    f"{MAX_ADDRESS - 1 - NAME_LENGTH} bytes here)")


class WakeChannel:
    def __init__(self, db_path: str, connect: Callable[[], sqlite3.Connection]) -> None:
        """`connect` opens a connection to the database, for polling if it comes to that."""
        self._db_path = os.path.realpath(db_path)
        self.dir = self._db_path + "-wake"
        self._connect = connect
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._listening = False
        self._receiver: socket.socket | None = None
        self._name = ""
        self._stop_polling: threading.Event | None = None
        self._dir_lock = threading.Lock()
        self._dir: _Dir | None = None
        self._problem: str | None = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(callback)
            if not self._listening:
                self._listen()
                self._listening = True

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return unsubscribe

    def _listen(self) -> None:
        found = self._directory(create=True)
        if found is not None:
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                receiver.bind(found.address(name))
                # Senders need write permission on the socket; the directory's mode already
                # keeps out everyone who may not write the database.
                os.chmod(found.address(name), 0o666)
            except OSError as e:
                receiver.close()
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=found.fd)
                self._unusable(f"cannot make a socket in it: {e.strerror}")
            else:
                self._receiver, self._name = receiver, name
                threading.Thread(target=self._receive, args=(receiver,), daemon=True,
                                 name="durable-wake").start()
                return
        self._start_polling()

    def _directory(self, create: bool) -> _Dir | None:
        """The directory once opened and found usable; None if it is not (or, unless `create`,
        does not exist yet)."""
        with self._dir_lock:
            if self._dir is None and self._problem is None:
                try:
                    self._dir = _open_dir(self.dir, self._db_path, create)
                except FileNotFoundError:  # nobody has waited yet: nobody to wake
                    pass
                except _Unusable as e:
                    self._unusable(str(e))
            return self._dir

    def _unusable(self, reason: str) -> None:
        if self._problem is not None:
            return
        self._problem = reason
        log.warning("this process cannot use %s for wake-ups: %s. While it waits, it polls the "
                    "database every %gs instead, and processes waiting on sockets there notice "
                    "its commits only when they next look. Remove the directory, or fix its "
                    "owner and mode: it must belong to you or the database's owner, and be "
                    "writable only by those who may write the database", self.dir, reason,
                    POLL_SECONDS)

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(16)
            except OSError:
                return
            if data == b"x":  # our own close()
                return
            self._call_listeners()

    def _start_polling(self) -> None:
        conn = self._connect()
        seen = _data_version(conn)  # before subscribe returns: later commits all count
        self._stop_polling = stop = threading.Event()
        threading.Thread(target=self._poll, args=(conn, seen, stop), daemon=True,
                         name="durable-wake-poll").start()

    def _poll(self, conn: sqlite3.Connection, seen: int | None, stop: threading.Event) -> None:
        try:
            while not stop.wait(POLL_SECONDS):
                try:
                    version = _data_version(conn)
                except sqlite3.Error:  # a failing read fails the waiters' own reads too
                    continue
                if version != seen:
                    seen = version
                    self._call_listeners()
        finally:
            conn.close()

    def _call_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def broadcast(self) -> None:
        self._call_listeners()
        found = self._directory(create=False)
        if found is None:
            return
        try:
            names = os.listdir(found.fd)
        except OSError:
            return
        for name in names:
            if name == self._name:
                continue
            try:
                self._sender.sendto(b"!", found.address(name))
            except BlockingIOError:  # its queue is full: it has wake-ups pending anyway
                pass
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=found.fd)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            receiver, self._receiver = self._receiver, None
            stop, self._stop_polling = self._stop_polling, None
        with self._dir_lock:  # and later broadcasts send nothing
            found, self._dir, self._problem = self._dir, None, "closed"
        if receiver is not None and found is not None:
            with contextlib.suppress(OSError):
                self._sender.sendto(b"x", found.address(self._name))
            with contextlib.suppress(OSError):
                os.unlink(self._name, dir_fd=found.fd)
        if stop is not None:
            stop.set()
        if found is not None:
            os.close(found.fd)
        self._sender.close()

    @staticmethod
    def finding(db_path: str) -> Finding:
        """What `durable doctor` says of the wake-up directory (looked at, not made)."""
        path = os.path.realpath(db_path) + "-wake"
        try:
            found = _open_dir(path, db_path, create=False)
        except FileNotFoundError:
            return Finding("wake-ups", f"{path}, made when a process first waits")
        except _Unusable as e:
            return Finding("wake-ups", f"{path} cannot be used ({e}), so processes poll the "
                           "database instead: remove it, or fix its owner and mode", ok=False)
        os.close(found.fd)
        return Finding("wake-ups", path)


def _data_version(conn: sqlite3.Connection) -> int:
    """SQLite's count of commits by other connections: cheap, and it takes no lock."""
    return int(conn.execute("PRAGMA data_version").fetchone()[0])
