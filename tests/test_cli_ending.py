"""`durable terminate`, `delete`, `purge`, `--retention`, `--version`, and `--json` on every
command, driven through the real console script on both stores. Bad input exits 2 with one
line, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import click
import pytest

import durable
from durable.cli.commands import cli
from durable.model import ExecutionStatus
from durable.store import open_store
from tests.endingkit import bulk_ended_runs
from tests.kit import DURABLE, ROOT, Procs, free_port, wait_until

APP = "tests/apps/ending_app.py"
DAY = 86400.0


class Cli:
    def __init__(self, db: str, dir: Path) -> None:
        self.env = {**os.environ, "DURABLE_DB": db, "ENDING_DIR": str(dir)}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURABLE, *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def refused(self, *args: str) -> str:
        """The one error line of a command refused as bad input."""
        done = self(*args)
        assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        (line,) = done.stderr.strip().splitlines()
        return line


def _leaves(group: click.Group, path: str = "durable") -> list[tuple[str, click.Command]]:
    out = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out += _leaves(command, f"{path} {name}")
        else:
            out.append((f"{path} {name}", command))
    return out


def test_every_command_takes_json() -> None:
    lacking = [path for path, command in _leaves(cli)
               if "as_json" not in {p.name for p in command.params}]
    assert lacking == []


def test_version_names_the_program_and_its_version(tmp_path: Path) -> None:
    done = Cli(f"sqlite:///{tmp_path / 'd.db'}", tmp_path)("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"durable, version {version('durable-serverless')}"


def test_terminate_delete_and_purge_from_the_command_line(any_db: str, tmp_path: Path) -> None:
    cli_ = Cli(any_db, tmp_path)
    client = durable.Client(any_db)
    try:
        with Procs(tmp_path, grace=5) as procs:
            procs.start(DURABLE, "worker", APP, env=cli_.env, name="worker")
            cli_.json("start", APP + ":saga", "--input", '"s"', "--id", "s")
            wait_until(lambda: (tmp_path / "s.started").exists(), "the step to hold")
            assert "terminate it first (`durable terminate s`)" in cli_.refused("delete", "s")
            done = cli_.json("terminate", "s", "--reason", "wrong input")
            assert done["status"] == "STOPPED" and done["terminated"] is True
            assert cli_.json("terminate", "s")["terminated"] is False
            assert cli_.json("delete", "s") == {"deleted": ["s"]}
            (tmp_path / "s.release").touch()
            cli_.json("start", APP + ":quick", "--input", "1", "--id", "q")
            assert client.wait("q", 30).status is ExecutionStatus.SUCCEEDED
            assert cli_.json("purge", "--ended-before", "1h") == {
                "deleted": 0, "ended_before": pytest.approx(time.time() - 3600, abs=60),
                "workflow": None}
            assert cli_.json("purge", "--ended-before", "2099-01-01")["deleted"] == 1
            assert client.list() == []
    finally:
        client.close()


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    cli_ = Cli(f"sqlite:///{tmp_path / 'd.db'}", tmp_path)
    assert "no run with id 'nope'" in cli_.refused("terminate", "nope")
    assert "no run with id 'nope'" in cli_.refused("delete", "nope")
    assert "--children" in cli_.refused("terminate", "nope", "--children", "orphan")
    assert "is not a time" in cli_.refused("purge", "--ended-before", "yesterday")
    assert "--ended-before" in cli_.refused("purge")
    assert "not a length of time" in cli_.refused("worker", APP, "--retention", "forever")


def test_json_results_of_the_commands_that_act(tmp_path: Path) -> None:
    cli_ = Cli(f"sqlite:///{tmp_path / 'd.db'}", tmp_path)
    assert cli_.json("migrate")["schema_version"] >= 6
    cli_.json("start", APP + ":saga", "--input", '"j"', "--id", "j")
    assert cli_.json("signal", "j", "go") == {"run_id": "j", "signal": "go", "sent": True}
    assert cli_.json("cancel", "j")["run_id"] == "j"
    assert cli_.json("functions", "add", "fn", "--url", "http://127.0.0.1:1/")["name"] == "fn"
    assert cli_.json("functions", "rm", "fn") == {"removed": "fn"}
    assert "no pending callback" in cli_.refused("callback", "succeed", "nope", "--json")


@pytest.mark.parametrize("command", ["worker", "server"])
def test_retention_deletes_runs_ended_longer_ago(any_db: str, tmp_path: Path,
                                                 command: str) -> None:
    store = open_store(any_db)
    try:
        bulk_ended_runs(store, "old", 1200, time.time() - 2 * DAY)
        bulk_ended_runs(store, "recent", 5, time.time() - 60)
        env = {**os.environ, "DURABLE_DB": any_db, "ENDING_DIR": str(tmp_path)}
        args = [APP] if command == "worker" else ["--port", str(free_port())]
        with Procs(tmp_path, grace=5) as procs:
            procs.start(DURABLE, command, *args, "--retention", "1d", env=env, name=command)

            def left() -> int:
                return int(store.read(lambda tx: tx._one("SELECT count(*) FROM runs"))[0])
            wait_until(lambda: left() == 5, lambda: f"old runs to go ({left()} left)")
        assert sorted(r.run_id for r in durable.Client(store).list()) == [
            f"recent-{i}" for i in range(1, 6)]
    finally:
        store.close()


def test_worker_json_says_what_it_did_once_stopped(tmp_path: Path) -> None:
    cli_ = Cli(f"sqlite:///{tmp_path / 'd.db'}", tmp_path)
    client = durable.Client(f"sqlite:///{tmp_path / 'd.db'}")
    try:
        with Procs(tmp_path, grace=5) as procs:
            log = tmp_path / "worker.log"
            worker = procs.start(DURABLE, "worker", APP, "--json", env=cli_.env, log=log,
                                 stderr_log=tmp_path / "worker.stderr")  # stdout apart
            cli_.json("start", APP + ":quick", "--input", "1", "--id", "w")
            assert client.wait("w", 30).status is ExecutionStatus.SUCCEEDED
            assert worker.stop() == 0
        done = json.loads(log.read_text())
        assert done["stopped"] is True and done["completed"] == 1 and "quick" in done["workflows"]
    finally:
        client.close()
