"""`ctx.logger` lines kept with the run: once each however often the run is replayed, across a
SIGKILLed worker, on both databases, bounded per run, and shown by `durable show --logs`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import durable
from durable import Context, workflow
from durable.model import LOG_LINE_CHARS, LOG_LINES_KEPT
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DURABLE, wait_until

pytestmark = pytest.mark.crash


def test_each_logged_line_is_kept_once_across_a_sigkilled_worker(crash_lab: CrashLab) -> None:
    first = crash_lab.worker()
    run_id = crash_lab.start(app.logged, 5, id="logged-1")
    wait_until(lambda: crash_lab.effects()["log-gate"] == 1,
               lambda: f"the gated step to begin:\n{crash_lab.worker_logs()}")
    first.kill()
    crash_lab.worker()
    (crash_lab.dir / "gate-log-gate").touch()
    crash_lab.finish(run_id)

    lines = [line for _, line in crash_lab.client.logs(run_id)]
    messages = [line.message for line in lines]
    assert sorted(messages) == sorted([
        "starting 5", "after a", "branch 0 begins", "branch 1 begins", "branch 0 ends",
        "branch 1 ends", "before the gate", "after the gate", "attempt of log-retry",
        "attempt of log-retry", "done"]), messages
    assert messages[:2] == ["starting 5", "after a"] and messages[-4:-1] == [
        "after the gate", "attempt of log-retry", "attempt of log-retry"]
    assert messages[-1] == "done"
    retry = crash_lab.operations(run_id)["log-retry"].id
    assert [(line.operation_id, line.attempt) for line in lines if "attempt" in line.message
            ] == [(retry, 1), (retry, 2)]
    assert next(line.level for line in lines if line.message == "before the gate") == "WARNING"
    assert crash_lab.effects()["log-gate"] == 2  # the step ran twice; its line is kept once


@workflow(name="logs.chatty")
async def chatty(ctx: Context, n: int) -> int:
    for i in range(n):
        ctx.logger.info("line %d %s", i, "x" * (LOG_LINE_CHARS if i == n - 1 else 0))
    await ctx.sleep(0.01)  # a second invocation replays every line above
    ctx.logger.debug("not kept: below INFO")
    try:
        raise ValueError("boom")
    except ValueError:
        ctx.logger.exception("caught")
    return n


def test_a_run_keeps_its_newest_lines_each_cut_to_the_bound(any_db: str) -> None:
    n = LOG_LINES_KEPT + 5
    durable.run(chatty, n, id="chatty", db=any_db)
    client = durable.Client(any_db)
    try:
        lines = [line for _, line in client.logs("chatty")]
    finally:
        client.close()
    assert len(lines) == LOG_LINES_KEPT
    assert lines[0].message == "line 6 "  # line 0 and the next five were dropped, oldest first
    assert len(lines[-2].message) == LOG_LINE_CHARS
    assert lines[-1].level == "ERROR" and lines[-1].message.startswith("caught\nTraceback")
    assert "ValueError: boom" in lines[-1].message


def test_show_logs_prints_the_kept_lines(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'd.db'}"
    durable.run(chatty, 2, id="two", db=db)
    shown = subprocess.run([DURABLE, "show", "two", "--logs",
                            "--db", db], capture_output=True, text=True, check=True)
    assert "line 0" in shown.stdout and "INFO" in shown.stdout and "caught" in shown.stdout
    as_json = subprocess.run([DURABLE, "show", "two", "--logs",
                              "--json", "--db", db], capture_output=True, text=True, check=True)
    assert [line["message"].split("\n")[0] for line in json.loads(as_json.stdout)] == [
        "line 0 ", "line 1 " + "x" * (LOG_LINE_CHARS - len("line 1 ")), "caught"]
