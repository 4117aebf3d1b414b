"""Live progress of `durable run` (rich): on a terminal a status line tells steps done, retries
and what the run waits on; to a pipe only the plain event lines go, with no terminal codes."""

from __future__ import annotations

import os
import pty
import subprocess
import time

from tests.kit import ROOT
from tests.serverkit import DURABLE


def run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; returns the exit code and what it drew there."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    return proc.wait(timeout=60), screen.decode(errors="replace")


def test_run_shows_a_live_status_line_on_a_terminal(db_url: str) -> None:
    env = {**os.environ, "DURABLE_DB": db_url, "TERM": "xterm", "COLUMNS": "120"}
    code, screen = run_on_terminal(
        [DURABLE, "run", "tests/apps/server_app.py:echo", "--input", '{"a": 1}'], env)
    assert code == 0, screen
    assert "1 step(s) done, 0 retries" in screen
    assert "\x1b[" in screen  # drawn with terminal codes


def test_run_to_a_pipe_prints_plain_lines(db_url: str) -> None:
    done = subprocess.run([DURABLE, "run", "tests/apps/server_app.py:echo", "--input", "{}"],
                          cwd=ROOT, env={**os.environ, "DURABLE_DB": db_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "step(s) done" not in done.stderr and "\x1b[" not in done.stderr
    assert "run succeeded" in done.stderr
