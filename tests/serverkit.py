"""`durable server` in a subprocess on a free loopback port, for the server, fuzz and UI tests.

The server is the real console script with uvicorn on a real socket, serving the workflows of
tests/apps/server_app.py; each Server has its own SQLite file and is stopped on exit (SIGTERM,
then SIGKILL: `tests.kit.Subprocess`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from tests.kit import DURABLE, Subprocess, free_port, wait_until

APP = "tests/apps/server_app.py"


class Server:
    def __init__(self, tmp: Path, token: str | None = None, *extra: str,
                 env: dict[str, str] | None = None, db: str | None = None,
                 app: str = APP) -> None:
        self.db = db or f"sqlite:///{tmp / 'server.db'}"
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["server", "--port", str(self.port), "--worker", app, "--db", self.db, *extra]
        self.env = {k: v for k, v in os.environ.items() if k != "DURABLE_TOKEN"}
        self.env.update(env or {})
        if token is not None:
            self.env["DURABLE_TOKEN"] = token
        self.log = tmp / "server.log"
        self.proc: Subprocess | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, **kwargs)

    def __enter__(self) -> Server:
        self.proc = Subprocess([DURABLE, *self.args], self.log, env=self.env)
        try:
            self.proc.wait_answering(f"{self.url}/api/workflows")
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            self.proc.stop()


def sse_events(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """The Server-Sent Events of a response's lines, as parsed fields (comments dropped)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(": ")
            event[field] = value


@contextlib.contextmanager
def serving(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """`app` under uvicorn on loopback (`port`, by default a free one), in a thread."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start", interval=0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
