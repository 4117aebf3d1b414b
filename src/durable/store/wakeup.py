"""Wake-ups across processes that share one SQLite file, without polling.

Each process that waits for something (a worker, a client waiting for a result) binds a Unix
datagram socket in a directory named after the database file. A process that commits something
others may wait for (a run created, woken or ended) sends one byte to every socket there, and calls
its own listeners directly. A receiver sleeps in recv() until then: no timer, no table reads, no
latency floor. A socket left by a killed process is removed by the first sender to find it dead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path


class WakeChannel:
    def __init__(self, db_path: str) -> None:
        key = hashlib.sha256(os.path.realpath(db_path).encode()).hexdigest()[:16]
        self.dir = Path(tempfile.gettempdir()) / f"durable-wake-{key}"
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._receiver: socket.socket | None = None
        self._address = ""

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(callback)
            if self._receiver is None:
                self._listen()

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return unsubscribe

    def _listen(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self._address = str(self.dir / f"{os.getpid()}-{secrets.token_hex(4)}")
        self._receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._receiver.bind(self._address)
        threading.Thread(target=self._receive, args=(self._receiver,), daemon=True,
                         name="durable-wake").start()

    def _receive(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(16)
            except OSError:
                return
            if data == b"x":  # our own close()
                return
            self._call_listeners()

    def _call_listeners(self) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def broadcast(self) -> None:
        self._call_listeners()
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            address = str(self.dir / name)
            if address == self._address:
                continue
            try:
                self._sender.sendto(b"!", address)
            except BlockingIOError:  # its queue is full: it has wake-ups pending anyway
                pass
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                with contextlib.suppress(OSError):
                    os.unlink(address)
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            receiver, self._receiver = self._receiver, None
        if receiver is not None:
            with contextlib.suppress(OSError):
                self._sender.sendto(b"x", self._address)
            with contextlib.suppress(OSError):
                os.unlink(self._address)
        self._sender.close()
