"""Live progress of `durable run` (rich): on a terminal a summary kept current tells steps done,
branches, failures and what the run waits on; to a pipe only the final summary goes, with no
terminal codes."""

from __future__ import annotations

import os
import pty
import subprocess
import time
from typing import Any

from rich.console import Console

from durable.cli.render import render_summary
from durable.model import (
    ErrorObject,
    ExecutionStatus,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
    SubType,
)
from durable.views.timeline import summarize
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
    assert "steps 1/1 done, 0 failed attempt(s)" in screen
    assert "\x1b[" in screen  # drawn with terminal codes


def test_run_to_a_pipe_prints_plain_lines(db_url: str) -> None:
    done = subprocess.run([DURABLE, "run", "tests/apps/server_app.py:echo", "--input", "{}"],
                          cwd=ROOT, env={**os.environ, "DURABLE_DB": db_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "\x1b[" not in done.stderr
    told = done.stderr.splitlines()
    assert len(told) == 3 and told[0].startswith("run "), told
    assert told[1].startswith("run succeeded after ")
    assert told[2] == "steps 1/1 done, 0 failed attempt(s)"


T0 = 1_000_000.0
MAP, ITEM, STEP = SubType.MAP, SubType.MAP_ITERATION, SubType.STEP


def op(id: str, type: OperationType, status: OperationStatus, **fields: Any) -> Operation:
    return Operation(id=id, type=type, status=status, **fields)


def test_the_summary_renders_with_rich_for_a_run_midway() -> None:
    run = RunInfo(run_id="r", workflow="index", status=ExecutionStatus.RUNNING, input=None,
                  result=None, error=None, created_at=T0, updated_at=T0, ended_at=None,
                  compute_seconds=0.0, parked=None, cancel_requested=False, ready_at=None)
    ok, started, failed = OperationStatus.SUCCEEDED, OperationStatus.STARTED, \
        OperationStatus.FAILED
    bad = ErrorObject("Unreadable", "page 3 is blank")
    ctx, step = OperationType.CONTEXT, OperationType.STEP
    ops = [
        op("m", ctx, started, name="docs", sub_type=MAP),
        op("i0", ctx, ok, name="0", parent_id="m", sub_type=ITEM),
        op("s0", step, ok, name="read", parent_id="i0", sub_type=STEP, attempt=1),
        op("i1", ctx, failed, name="1", parent_id="m", sub_type=ITEM, error=bad),
        op("s1", step, failed, name="read", parent_id="i1", sub_type=STEP, attempt=2,
           error=bad),
        op("i2", ctx, started, name="2", parent_id="m", sub_type=ITEM),
        op("s2", step, OperationStatus.PENDING, name="read", parent_id="i2", sub_type=STEP,
           attempt=1, due_at=T0 + 70),
        op("z", OperationType.WAIT, started, sub_type=SubType.SLEEP, due_at=T0 + 40),
        op("g", OperationType.CALLBACK, started, name="go", sub_type=SubType.SIGNAL),
    ]
    console = Console(record=True, force_terminal=True, width=120, color_system="standard")
    console.print(render_summary(summarize(run, ops), T0 + 10))
    assert console.export_text(clear=False).splitlines() == [
        "run running for 10.00s",
        "steps 1/3 done, 3 failed attempt(s)",
        "map 'docs' 1/3 item(s) done, 1 failed",
        "waiting on step 'read' (in 1m00s), sleep (in 30.00s), signal 'go'",
        "1 failed: step 'read': Unreadable: page 3 is blank"]
    drawn = console.export_text(styles=True)
    assert "\x1b[31m1 failed: step 'read'" in drawn  # failures in red
