"""`durable server` in a subprocess on a free loopback port, for the server, fuzz and UI tests.

The server is the real console script with uvicorn on a real socket, serving the workflows of
tests/apps/server_app.py; each Server has its own SQLite file and is killed on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
APP = "tests/apps/server_app.py"
DURABLE = str(Path(sys.executable).with_name("durable"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, tmp: Path, token: str | None = None, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.db = f"sqlite:///{tmp / 'server.db'}"
        self.token = token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["server", "--port", str(self.port), "--worker", APP, "--db", self.db, *extra]
        self.env = {k: v for k, v in os.environ.items() if k != "DURABLE_TOKEN"}
        self.env.update(env or {})
        if token is not None:
            self.env["DURABLE_TOKEN"] = token
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=30, **kwargs)

    def __enter__(self) -> Server:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen([DURABLE, *self.args], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"durable server exited: {self.log.read_text()}")
            try:
                httpx.get(f"{self.url}/api/workflows", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"durable server did not answer: {self.log.read_text()}")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")
