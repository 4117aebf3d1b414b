"""HTTP/1.1 requests over kept-alive connections, for both ends of a push invocation.

The server invoking functions and a function checkpointing back make many small requests to
the same few origins, where setting up a connection per request costs more than the request.
Measured on loopback (benchmarks/push.py's machine), a kept-alive stdlib `http.client`
connection answers a small POST in about 0.7 ms; `httpx.AsyncClient` took 3-6 ms for the same,
which alone would put a push step past three local steps. So connections here are stdlib ones,
each used by one request at a time on a worker thread and put back for the next; the event loop
never blocks on them.
"""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlsplit

Origin = tuple[str, str, int]
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
"""How a kept-alive connection that the other end closed while idle fails its next request."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class Pool:
    """Idle connections by origin, at most `keep` each, and the `threads` that make the
    requests: at most that many are in flight at once, the others queue. A pool of its own
    threads, not the loop's default executor, which is a few threads shared with the store:
    an invocation holds its thread until the function answers."""

    def __init__(self, threads: int = 64, keep: int = 32) -> None:
        self.keep = keep
        self._idle: defaultdict[Origin, list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="durable-http")

    async def request(self, method: str, url: str, body: bytes | None = None,
                      headers: Mapping[str, str] | None = None,
                      timeout: float = 60.0) -> Answer:
        """One request; raises `OSError` (`TimeoutError` included) or `http.client
        .HTTPException` when no answer came."""
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, self._request, method, url, body, dict(headers or {}), timeout)

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str],
                 timeout: float) -> Answer:
        parts = urlsplit(url)
        origin = (parts.scheme, parts.hostname or "", parts.port
                  or (443 if parts.scheme == "https" else 80))
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        while True:
            conn, reused = self._take(origin, timeout)
            try:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                conn.request(method, path or "/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except STALE:
                conn.close()
                if reused:  # closed while idle, before it took this request: a fresh one
                    continue
                raise
            except BaseException:
                conn.close()
                raise
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                            data)
            if response.will_close:
                conn.close()
            else:
                self._give(origin, conn)
            return answer

    def _take(self, origin: Origin, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        with self._lock:
            idle = self._idle[origin]
            if idle:
                return idle.pop(), True
        scheme, host, port = origin
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        conn = kind(host, port, timeout=timeout)
        conn.connect()
        # http.client writes a request's headers and its body in two sends: with Nagle's
        # algorithm on, the body waits for the ACK of the headers, which the other end delays
        # (40 ms on Linux) while it waits for the body.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, False

    def _give(self, origin: Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle[origin]
            if len(idle) < self.keep:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections; requests in flight finish on their own."""
        self._threads.shutdown(wait=False)
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


POOL = Pool()
"""A function host's pool, for its checkpoints (a `FunctionWorker` has its own)."""
