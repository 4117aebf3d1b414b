"""The `durable` command, driven as users drive it: the real console script (and once
`python -m durable.cli`) in subprocesses, on a fresh SQLite database per test. The workflows are in
tests/apps/cli_app.py. Exit codes: 0 ok, 1 run FAILED/STOPPED, 2 bad input, 3 run not ended."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.model import Operation
from tests.apps import cli_app
from tests.kit import DURABLE, ROOT, Procs, Subprocess, wait_until

APP = "tests/apps/cli_app.py"

Result = subprocess.CompletedProcess[str]


class Cli:
    """Runs `durable` against one database, from the repository root; the long-running
    commands it starts (`popen`) are stopped when the test ends."""

    def __init__(self, db_url: str, procs: Procs | None = None) -> None:
        self.env = {**os.environ, "DURABLE_DB": db_url}
        self.procs = procs

    def __call__(self, *args: str, module: bool = False) -> Result:
        command = [sys.executable, "-m", "durable.cli"] if module else [DURABLE]
        return subprocess.run([*command, *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)

    def popen(self, *args: str) -> Subprocess:
        """`durable *args` in the background; its stderr is `errors()`, apart from stdout."""
        assert self.procs is not None, "Cli(db_url, procs) starts commands in the background"
        log = self.procs.next_log("durable")
        return self.procs.start(DURABLE, *args, log=log, env=self.env,
                                stderr_log=log.with_suffix(".stderr"))

    def all(self, *commands: Sequence[str]) -> list[Result]:
        """Run independent commands at once: each one costs a Python start-up."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda command: self(*command), commands))

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Iterator[Cli]:
    with Procs(tmp_path) as procs:
        yield Cli(db_url, procs)


def waiting_op(client: durable.Client, run_id: str, sub_type: str) -> Operation | None:
    """The run's callback or signal wait once it is waiting; None before (or before it exists)."""
    try:
        ops = client.operations(run_id)
    except durable.RunNotFound:
        return None
    return next((op for op in ops if op.sub_type == sub_type and op.status.value == "STARTED"),
                None)


def waiting(client: durable.Client, run_id: str, sub_type: str) -> Operation:
    """The run's callback or signal wait, once it waits on it."""
    return wait_until(lambda: waiting_op(client, run_id, sub_type),
                      f"run {run_id} to wait on a {sub_type}")


@pytest.fixture
def worker(cli: Cli) -> Subprocess:
    """`durable worker` on the whole app module; the test stops it, or `cli` does after."""
    return cli.popen("worker", APP, "--concurrency", "4")


# -- run ---------------------------------------------------------------------------------------

def test_run_with_events_prints_each_event_on_stderr_and_the_result_last_on_stdout(
        cli: Cli) -> None:
    done = cli("run", f"{APP}:greet", "--input", '"world"', "--id", "hi", "--events")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == '"Hello, world!"'
    assert "run hi (greet)" in done.stderr
    assert "step 'compose' succeeded (attempt 1" in done.stderr
    assert "sleep until +" in done.stderr
    assert 'event \'stage\' published "greeted"' in done.stderr


def test_run_reports_each_failed_attempt_with_its_next_attempt_time(cli: Cli) -> None:
    done = cli("run", f"{APP}:retrying", "--events")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"ok"'
    assert "step 'flaky' attempt 1 failed: ConnectionError: service unavailable" in done.stderr
    assert "next attempt at +" in done.stderr
    assert "step 'flaky' succeeded (attempt 2" in done.stderr


def test_run_of_a_20_item_map_prints_a_short_summary_and_only_the_result_on_stdout(
        cli: Cli) -> None:
    done = cli("run", f"{APP}:index_all", "--id", "docs", "--json", "--log-level", "error")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == 2 * (sum(range(20)) - 6 - 13)
    told = [line for line in done.stderr.splitlines() if " ERROR durable.worker: " not in line]
    assert told == [
        "run docs (index_all)",
        told[1],
        "steps 18/20 done, 2 failed attempt(s)",
        "map 'documents' 18/20 item(s) done, 2 failed",
        "2 failed: step 'index_document': Unreadable: document 6 is unreadable; "
        "step 'index_document': Unreadable: document 13 is unreadable"], done.stderr
    assert told[1].startswith("run succeeded after ")
    streamed = cli("run", f"{APP}:index_all", "--events", "--log-level", "error")
    assert streamed.returncode == 0, streamed.stderr
    events = streamed.stderr.splitlines()
    assert len(events) > 60  # each map item starting and ending, each step ending
    assert sum("step 'index_document' succeeded (attempt 1" in line for line in events) == 18
    assert streamed.stdout.strip() == str(2 * (sum(range(20)) - 6 - 13))


def test_show_follow_waits_for_the_run_to_end_with_its_summary_on_stderr(
        cli: Cli, worker: Subprocess) -> None:
    started = cli("start", f"{APP}:approval", "--id", "ask")
    assert started.returncode == 0, started.stderr
    following = cli.popen("show", "ask", "--follow", "--json")
    client = durable.Client(cli.env["DURABLE_DB"])
    try:
        callback = waiting(client, "ask", "Callback")
    finally:
        client.close()
    assert following.poll() is None  # it follows a run that waits
    assert callback.callback_id is not None
    resolved = cli("callback", "succeed", callback.callback_id, "--payload", '"yes"')
    assert resolved.returncode == 0, resolved.stderr
    assert following.wait_exit() == 0, following.errors()
    shown = json.loads(following.output())
    assert (shown["run"]["status"], shown["run"]["result"]) == ("SUCCEEDED", "yes")
    told = following.errors().splitlines()
    assert len(told) == 2 and told[0].startswith("run succeeded after "), told
    assert told[1] == "steps 0/0 done, 0 failed attempt(s)"


def test_python_dash_m_runs_a_package_module_target_with_an_array_of_inputs(cli: Cli) -> None:
    done = cli("run", "tests.apps.cli_app:add", "--input", "[2, 3]", module=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "5"


def test_a_file_target_alone_runs_its_only_workflow_which_imports_a_sibling(cli: Cli) -> None:
    done = cli("run", "tests/apps/single_app.py", "--input", '"hey"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"HEY!"'


TEMPORAL_APP = "examples/temporal_style/signals.py"


def test_worker_and_run_find_temporal_style_workflow_classes_in_a_file(cli: Cli) -> None:
    worker = cli.popen("worker", TEMPORAL_APP)
    try:
        started = cli("start", f"{TEMPORAL_APP}:GreetOne", "--input", '"Bo"')
        assert started.returncode == 0, started.stderr
        served = cli("result", started.stdout.strip(), "--wait", "--timeout", "20")
        assert served.stdout.strip() == '"Hello, Bo!"', served.stderr
    finally:
        worker.stop(grace=20)
    assert "worker serving GreetOne, GreetingService on " in worker.errors()
    ran = cli("run", f"{TEMPORAL_APP}:GreetOne.run", "--input", '"Ada"')
    assert ran.stdout.strip() == '"Hello, Ada!"', ran.stderr


def test_a_failed_run_exits_1_with_its_error_and_show_has_the_traceback(cli: Cli) -> None:
    done = cli("run", f"{APP}:broken", "--id", "fire")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "ended FAILED: ValueError: the order book is on fire" in done.stderr
    again, shown = cli.all(["result", "fire", "--json"], ["show", "fire"])
    assert again.returncode == 1
    assert "ValueError: the order book is on fire" in again.stderr
    outcome = json.loads(again.stdout)
    assert (outcome["status"], outcome["error"]["type"]) == ("FAILED", "ValueError")
    assert "Traceback (most recent call last)" in shown.stdout
    assert 'raise ValueError("the order book is on fire")' in shown.stdout


def test_run_stops_serving_a_parked_run_with_exit_3_and_show_makes_the_error_plain(
        cli: Cli) -> None:
    done = cli("run", f"{APP}:drifting", "--id", "drift")
    assert done.returncode == 3
    assert "run drift is parked (still RUNNING): NonDeterminismError" in done.stderr
    shown, as_json = cli.all(["show", "drift"], ["show", "drift", "--json"])
    assert "PARKED" in shown.stdout
    assert "NonDeterminismError" in shown.stdout
    assert "RUNNING (parked)" in shown.stdout
    run = json.loads(as_json.stdout)["run"]
    assert run["status"] == "RUNNING"
    assert run["parked"]["type"] == "NonDeterminismError"
    assert "invocation-2" in run["parked"]["message"]


def test_run_with_the_id_of_an_ended_run_prints_that_runs_result(
        cli: Cli, client: durable.Client) -> None:
    durable.run(cli_app.add, 1, 2, id="once", db=client.store)
    done = cli("run", f"{APP}:add", "--input", "[1, 2]", "--id", "once")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "3\n"
    assert len(client.list()) == 1


def test_ctrl_c_stops_serving_without_a_traceback_and_leaves_the_run_running(
        cli: Cli, client: durable.Client) -> None:
    serving = cli.popen("run", f"{APP}:wait_signal", "--id", "held")
    waiting(client, "held", "Signal")
    serving.send(signal.SIGINT)
    returncode = serving.wait_exit(20)
    stderr = serving.errors()
    assert returncode == 130
    assert "Traceback" not in stderr
    assert "run held is still RUNNING" in stderr
    assert client.get("held").status.value == "RUNNING"


# -- start, result, signal, cancel --------------------------------------------------------------

def test_start_prints_the_run_id_and_result_exits_3_while_it_is_running(
        cli: Cli, client: durable.Client) -> None:
    done = cli("start", f"{APP}:greet", "--input", '"later"')
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    assert client.get(run_id).status.value == "RUNNING"
    now, waited = cli.all(["result", run_id], ["result", run_id, "--wait", "--timeout", "0.1"])
    assert now.returncode == waited.returncode == 3
    assert f"run {run_id} is still RUNNING" in now.stderr


def test_start_stores_the_input_as_decoded_for_the_workflow_parameters(
        cli: Cli, client: durable.Client) -> None:
    by_name, model = cli.all(
        ["start", f"{APP}:add", "--input", '{"b": 4, "a": 1}', "--id", "by-name", "--json"],
        ["start", f"{APP}:place", "--input", '{"sku": "x", "quantity": "2"}', "--id", "model"])
    assert json.loads(by_name.stdout) == {"run_id": "by-name", "workflow": "add"}
    assert json.loads(client.get("by-name").input or "") == [1, 4]
    assert model.stdout.strip() == "model"
    assert json.loads(client.get("model").input or "") == {"sku": "x", "quantity": 2}


def test_a_signal_sent_before_the_run_waits_is_delivered_when_it_is_served(
        cli: Cli, client: durable.Client) -> None:
    client.start(cli_app.wait_signal, id="patient")
    sent = cli("signal", "patient", "go", "--payload", '{"ok": true}')
    assert sent.returncode == 0, sent.stderr
    done = cli("run", f"{APP}:wait_signal", "--id", "patient", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "run_id": "patient", "status": "SUCCEEDED", "result": {"ok": True}, "error": None}


def test_cancel_stops_the_run_at_its_next_durable_await(
        cli: Cli, client: durable.Client) -> None:
    client.start(cli_app.wait_signal, id="doomed")
    cancelled = cli("cancel", "doomed")
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancel requested for run doomed" in cancelled.stdout
    done = cli("run", f"{APP}:wait_signal", "--id", "doomed")
    assert done.returncode == 1
    assert "ended STOPPED" in done.stderr
    assert "has already ended (STOPPED)" in cli("cancel", "doomed").stdout


# -- worker and callbacks -------------------------------------------------------------------------

def test_worker_serves_waiting_runs_that_show_explains_and_drains_on_sigterm(
        cli: Cli, client: durable.Client, worker: Subprocess) -> None:
    for run_id in ("approved", "rejected"):
        client.start(cli_app.approval, id=run_id)
    client.start(cli_app.wait_signal, id="signalled")
    callback = waiting(client, "approved", "Callback")
    refusal = waiting(client, "rejected", "Callback")
    waiting(client, "signalled", "Signal")
    shown, as_json, signal_shown = cli.all(
        ["show", "approved"], ["show", "approved", "--json"], ["show", "signalled"])
    assert "Waiting on" in shown.stdout
    assert f"durable callback succeed {callback.callback_id}" in shown.stdout
    pending = json.loads(as_json.stdout)["pending"]
    assert [(p["kind"], p["callback_id"]) for p in pending] == [("callback", callback.callback_id)]
    assert "durable signal signalled go" in signal_shown.stdout

    resolved = cli.all(["callback", "succeed", callback.callback_id, "--payload", "42"],
                       ["callback", "fail", refusal.callback_id, "--message", "no budget"],
                       ["signal", "signalled", "go"])
    assert [r.returncode for r in resolved] == [0, 0, 0], [r.stderr for r in resolved]
    approved, rejected, signalled = cli.all(
        *(["result", run_id, "--wait", "--timeout", "20"]
          for run_id in ("approved", "rejected", "signalled")))
    assert approved.stdout.strip() == "42"
    assert rejected.returncode == 1
    assert "no budget" in rejected.stderr
    assert signalled.stdout.strip() == "null"

    returncode = worker.stop(grace=20)
    assert returncode == 0
    assert "worker stopped" in worker.errors()


# -- ls and show ----------------------------------------------------------------------------------

def test_ls_lists_runs_as_a_table_and_as_json_filtered_by_status_workflow_and_limit(
        cli: Cli, client: durable.Client) -> None:
    durable.run(cli_app.add, 1, 1, id="done-1", db=client.store)
    client.start(cli_app.greet, "x", id="queued-1")
    table, running, adds, latest = cli.all(
        ["ls"], ["ls", "--json", "--status", "running"], ["ls", "--json", "--workflow", "add"],
        ["ls", "--json", "--limit", "1"])
    assert "done-1" in table.stdout and "SUCCEEDED" in table.stdout
    assert "queued-1" in table.stdout and "RUNNING" in table.stdout
    assert [r["run_id"] for r in json.loads(running.stdout)["runs"]] == ["queued-1"]
    assert [r["run_id"] for r in json.loads(adds.stdout)["runs"]] == ["done-1"]
    assert [r["run_id"] for r in json.loads(latest.stdout)["runs"]] == ["queued-1"]


@pytest.fixture
def greeted(client: durable.Client) -> str:
    """A finished run of `greet`, made in this process: what is under test is reading it."""
    durable.run(cli_app.greet, "you", id="hello", db=client.store)
    return "hello"


def test_show_tells_status_times_input_result_events_and_the_timeline(
        cli: Cli, greeted: str) -> None:
    shown = cli("show", greeted).stdout
    for expected in ("workflow  greet", "SUCCEEDED", 'input     "you"',
                     'result    "Hello, you!"', "elapsed", "computing", "Published events",
                     "stage", "History", "started (greet)", "step 'compose'",
                     "succeeded (attempt 1", "sleep", "until +"):
        assert expected in shown, expected


def test_show_json_dumps_the_run_its_operations_events_and_history(
        cli: Cli, greeted: str) -> None:
    view = cli.json("show", greeted)
    assert view["run"]["status"] == "SUCCEEDED"
    assert view["run"]["input"] == "you"
    assert view["run"]["result"] == "Hello, you!"
    assert view["run"]["compute_seconds"] <= view["run"]["elapsed_seconds"]
    assert view["events"] == {"stage": "greeted"}
    assert view["pending"] == []
    assert view["operations"][0]["name"] == "compose"
    types = [e["type"] for e in view["history"]]
    assert types[0] == "ExecutionStarted" and types[-1] == "ExecutionSucceeded"


HOSTILE = "\x1b]0;owned\x07\x1b[2J\u202e\x9b31m"
"""Retitles the terminal, clears it, reverses the text after it, recolours (C1 CSI)."""


def test_show_and_ls_print_control_characters_from_the_data_escaped(
        cli: Cli, client: durable.Client) -> None:
    old = f"old{HOSTILE}"  # stored before the run id rule, or by another tool
    client.store.write_sync(lambda tx: tx.insert_run(old, f"wf{HOSTILE}", f"raw{HOSTILE}",
                                                     time.time()))
    client.signal(old, f"sig{HOSTILE}", HOSTILE)
    listed, shown = cli.all(["ls"], ["show", old])
    for done in (listed, shown):
        assert done.returncode == 0, done.stderr
        assert not set(done.stdout) & {"\x1b", "\x07", "\u202e", "\x9b"}, done.stdout
    escaped = "\\x1b]0;owned\\x07\\x1b[2J\\u202e\\x9b31m"
    assert f"old{escaped}" in listed.stdout and f"wf{escaped}" in listed.stdout
    assert f"raw{escaped}" in shown.stdout and f"sig{escaped}" in shown.stdout


def test_server_on_a_port_in_use_is_one_line_and_exit_2(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("server", "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use (another durable server?): stop "
        "what listens there, or choose another port with --port"]


# -- bad input: one line on stderr, exit 2, never a traceback ------------------------------------

BAD_INPUT = {
    "unknown file": (["run", "tests/apps/nowhere.py:greet"], "no such file"),
    "unknown module": (["run", "no_such_module_here:greet"], "no module named"),
    "unknown attribute": (["run", f"{APP}:nope"], "has no attribute 'nope'"),
    "step not a workflow": (["run", f"{APP}:compose"], "not a workflow"),
    "constant not a workflow": (["start", f"{APP}:GREETING"], "is a str, not a workflow"),
    "several workflows in the target": (["run", APP], "pick one"),
    "target failing to import": (["run", "tests/apps/broken_app.py"], "DATABASE_URL is not set"),
    "malformed input JSON": (["run", f"{APP}:greet", "--input", '{"name": '],
                             "'--input': not valid JSON: Expecting value: line 1 column 10"),
    "input of the wrong type": (["start", f"{APP}:place", "--input", '{"sku": 1, "quantity": 2}'],
                                "order.sku: Input should be a valid string"),
    "missing input": (["start", f"{APP}:greet"], "needs input (name)"),
    "input to a workflow without parameters": (["start", f"{APP}:broken", "--input", "1"],
                                               "takes no input"),
    "wrong number of inputs": (["start", f"{APP}:add", "--input", "[1]"], "takes 2 inputs"),
    "malformed payload JSON": (["signal", "some-run", "go", "--payload", "[1,"],
                               "'--payload': not valid JSON"),
    "unknown run id for show": (["show", "no-such-run"], "no run with id 'no-such-run'"),
    "unknown run id for result": (["result", "no-such-run"], "no run with id"),
    "unknown run id for signal": (["signal", "no-such-run", "go"], "no run with id"),
    "unknown run id for cancel": (["cancel", "no-such-run"], "no run with id"),
    "unknown callback id": (["callback", "succeed", "no-such-callback"], "no pending callback"),
    "unknown callback id to fail": (["callback", "fail", "no-such-callback"],
                                    "no pending callback"),
    "both message and payload": (["callback", "fail", "x", "--message", "a", "--payload", '"b"'],
                                 "not both"),
    "unknown status": (["ls", "--status", "SLEEPING"], "'--status'"),
    "missing target": (["run"], "Missing argument 'TARGET'"),
    "unsupported database URL": (["ls", "--db", "mysql://localhost/x"], "unsupported database"),
    "SQLite URL naming no file": (["ls", "--db", "sqlite:///"], "'sqlite:///' names no file"),
    "in-memory SQLite URL": (["ls", "--db", "sqlite:///:memory:"], "names no file"),
    "input with 5000 digits": (["start", f"{APP}:greet", "--input", "1" * 5000],
                               "not valid JSON: Exceeds the limit (4300 digits)"),
    "input nested 5000 deep": (["start", f"{APP}:greet", "--input", "[" * 5000 + "]" * 5000],
                               "not valid JSON: nested too deeply"),
    "NaN in input": (["start", f"{APP}:greet", "--input", '{"name": NaN}'],
                     'input["name"] is not a finite number (NaN)'),
    "1e400 in payload": (["signal", "some-run", "go", "--payload", "[1e400]"],
                         "payload[0] is not a finite number (Infinity)"),
    "timeout NaN": (["result", "some-run", "--timeout", "nan"],
                    "'nan' is not a finite number of seconds"),
    "worker lease too short": (["worker", APP, "--lease", "0.1"],
                               "'--lease': 0.1 is not in the range 1.0<=x<=86400.0"),
    "worker lease NaN": (["worker", APP, "--lease", "nan"],
                         "'--lease': 'nan' is not a finite number of seconds"),
    "handler that does not import": (["functions", "add", "f", "--handler", "no.such:fn"],
                                     "cannot load handler 'no.such:fn': ModuleNotFoundError"),
    "handler that is not callable": (["functions", "add", "f", "--handler",
                                      "tests.apps.cli_app:GREETING"], "neither a @workflow"),
    "run id with a slash": (["start", f"{APP}:greet", "--input", '"x"', "--id", "a/b"],
                            "run id 'a/b' contains '/' at position 1: a run id is 1 to 256"),
    "run id with an escape": (["start", f"{APP}:greet", "--input", '"x"', "--id", "a\x1b[2J"],
                              "run id 'a\\x1b[2J' contains '\\x1b'"),
    "run id of a dot segment": (["run", f"{APP}:greet", "--input", '"x"', "--id", ".."],
                                "run id '..' starts with '.'"),
    "run id too long": (["start", f"{APP}:greet", "--input", '"x"', "--id", "r" * 300],
                        "is 300 characters long"),
}


@pytest.fixture(scope="module")
def bad_input(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Result]:
    """Every case at once: they are independent and none of them writes a run."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'durable.db'}"
    durable.Client(db_url).close()  # created once, before the processes race to
    results = Cli(db_url).all(*(args for args, _ in BAD_INPUT.values()))
    return dict(zip(BAD_INPUT, results, strict=True))


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input_is_one_error_line_and_exit_2(case: str, bad_input: dict[str, Result]) -> None:
    done, message = bad_input[case], BAD_INPUT[case][1]
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert message in done.stderr


def test_a_database_path_that_cannot_be_written_is_bad_input(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = cli("ls", "--db", f"sqlite:///{blocker}/sub/durable.db")
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot create the directory for database")
    assert "Traceback" not in done.stderr


def test_signalling_a_run_that_ended_is_bad_input(cli: Cli, client: durable.Client) -> None:
    durable.run(cli_app.add, 0, 0, id="over", db=client.store)
    done = cli("signal", "over", "go")
    assert done.returncode == 2
    assert "has ended" in done.stderr


def test_start_by_an_existing_id_with_another_input_is_exit_2_unless_existing(cli: Cli) -> None:
    assert cli("start", f"{APP}:greet", "--input", '"Ada"', "--id", "dup").returncode == 0
    refused = cli("start", f"{APP}:greet", "--input", '"Bob"', "--id", "dup")
    assert refused.returncode == 2, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "already started with another input" in refused.stderr and "--existing" in refused.stderr
    taken = cli("start", f"{APP}:greet", "--input", '"Bob"', "--id", "dup", "--existing")
    assert taken.returncode == 0, taken.stderr
