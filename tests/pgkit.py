"""PostgreSQL for the tests: which server, what to do without one, a fresh schema per test, and
a proxy to take the server away from the code under test (and give it back) while it stays up for
everyone else.

The server is DURABLE_TEST_POSTGRES, else postgresql://postgres@127.0.0.1:5432/test (this
project's machines and CI run one there). Unreachable in CI (CI=true): the PostgreSQL tests FAIL,
so a broken CI setup can never pass by skipping them. Unreachable elsewhere: they skip, saying how
to enable them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

ENV = "DURABLE_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@functools.cache
def unreachable(url: str) -> str | None:
    """Why the server cannot be used, or None if it can (asked once per session)."""
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=5, autocommit=True).close()
    except Exception as e:  # ImportError included: the [postgres] extra is not installed
        return " ".join(str(e).split()) or type(e).__name__
    return None


def require_server() -> str:
    """The server's URL; otherwise fail (in CI) or skip (elsewhere) the calling test."""
    url = server_url()
    reason = unreachable(url)
    if reason is None:
        return url
    what = f"PostgreSQL at {url} is unreachable ({reason})"
    if in_ci():
        pytest.fail(f"{what}. CI=true: the PostgreSQL tests must run, not skip; start the "
                    f"server (.ci/run does) or point {ENV} at one", pytrace=False)
    pytest.skip(f"{what}; to run the PostgreSQL tests, start a server or set "
                f"{ENV}=postgresql://user@host:port/dbname")


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters set (libpq reads e.g. application_name); `options` (server
    settings, `-cname=value`) are added to those already there, not replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in params.items():
        query[key] = f"{query[key]} {value}" if key == "options" and key in query else value
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # libpq: no +


@contextlib.contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    """A new, empty schema, dropped afterwards; yields a URL whose connections use it
    (search_path), so Durable creates its tables there and sees nothing of other tests."""
    import psycopg

    schema = f"durable_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_params(server, options=f"-csearch_path={schema}")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def terminate(server: str, application_name: str) -> int:
    """Cut every connection whose application_name is `application_name`; returns how many."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,)).fetchall()
    return sum(1 for (ok,) in rows if ok)


class Proxy:
    """A TCP proxy to the PostgreSQL server, for the outages a worker must ride out: `stop()`
    drops every connection through it and refuses new ones, as a server that went down or a
    network that was cut; `start()` listens again on the same port; `cut()` drops the
    connections and goes on accepting, as a server restart or a failover does; `drop_new`
    closes each new connection as soon as it is accepted, a cut while connecting.

    The shared server itself is never touched. The proxy runs on its own event loop thread.
    """

    def __init__(self, server: str) -> None:
        parts = urlsplit(server)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.port = 0  # chosen by the first `start`, kept after
        self.drop_new = False
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Transport] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy",
                                        daemon=True)
        self._thread.start()
        self.start()

    def url(self, url: str) -> str:
        """`url` (of the proxied server) with its host and port those of the proxy."""
        parts = urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def start(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        self._call(self._stop())

    def cut(self) -> int:
        """Drop every connection through the proxy; returns how many there were."""
        return self._call(self._drop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port,
                                                      reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._drop()

    async def _drop(self) -> int:
        dropped = len(self._open)
        for transport in list(self._open):
            transport.abort()  # a reset, not a polite close: as a dead peer or a cut cable
        self._open.clear()
        return dropped

    async def _serve(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        client = client_w.transport
        if self.drop_new:
            client.abort()
            return
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client.abort()
            return
        pair = {client, server_w.transport}
        self._open |= pair
        try:
            await asyncio.gather(_pipe(client_r, server_w), _pipe(server_r, client_w))
        finally:
            for transport in pair:
                transport.abort()
            self._open -= pair


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    sink.transport.abort()  # one way ended: so does the other, as on a real socket pair
