"""Crash paths of plain workflows: the seed's `transfer` (examples/automation/transfer.py, auto
mode) and a `durable=False` one, each served by real `durable worker` processes SIGKILLed inside
the bank's calls (tests/apps/vanilla_crash/sitecustomize.py) or while the run sleeps, on both
stores; and `durable replay` catching two external calls swapped under a finished run."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import durable
from durable.model import ExecutionStatus, OperationStatus, OperationType
from tests.kit import DURABLE, ROOT, Proc, Procs, wait_until

TRANSFER = str(ROOT / "examples" / "automation" / "transfer.py")
QUICK = str(ROOT / "tests" / "apps" / "vanilla_app.py")
CRASH_HOOK = str(ROOT / "tests" / "apps" / "vanilla_crash")
BANK_CALLS = ("get_transaction_id", "withdraw_from_account_route", "deposit_to_account_route")


class Bank:
    """The bank's books as bank_api left them, read straight from its SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _rows(self, sql: str) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.path) as conn:
            return conn.execute(sql).fetchall()

    def movements(self) -> list[tuple[object, ...]]:
        return self._rows("SELECT transaction_id, kind, account, amount FROM movements "
                          "ORDER BY kind DESC")

    def balances(self) -> dict[object, object]:
        return dict(self._rows("SELECT name, balance FROM accounts"))

    def calls(self) -> Counter[object]:
        return Counter(call for (call,) in self._rows("SELECT call FROM calls"))


def _worker(procs: Procs, db: str, target: str, tmp: Path, crash_at: list[str]) -> Proc:
    marks = tmp / "marks"
    marks.mkdir(exist_ok=True)
    env = {**os.environ, "BANK_DB": str(tmp / "bank.db"), "PYTHONPATH": CRASH_HOOK,
           "VANILLA_CRASH_AT": ",".join(crash_at), "VANILLA_CRASH_MARKS": str(marks)}
    return procs.start(DURABLE, "worker", target, "--db", db,
                       "--lease", "2", env=env, name="worker")


def _kill_at_each(procs: Procs, db: str, target: str, tmp: Path, points: list[str]) -> None:
    """One worker per point, each dying there (SIGKILL, from inside the bank call)."""
    for point in points:
        proc = _worker(procs, db, target, tmp, points)
        assert _killed(proc) == -9, procs.logs()
        assert (tmp / "marks" / point).read_text() == str(proc.pid)


def _killed(proc: Proc) -> int:
    wait_until(lambda: not proc.alive, f"worker {proc.pid} to die", timeout=120)
    return proc.wait_exit()


def test_the_plain_transfer_survives_a_sigkill_before_and_after_every_bank_call(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path) -> None:
    handle = any_client.start_by_name("transfer", json.dumps(["alice", "bob", 2500]))
    points = [f"{call}:{when}" for call in BANK_CALLS for when in ("before", "after")]
    _kill_at_each(procs, any_db, TRANSFER, tmp_path, points)
    _worker(procs, any_db, TRANSFER, tmp_path, points)  # every point marked: runs to the end
    run = any_client.wait(handle.run_id, timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED, procs.logs()
    # Read as stored: this process may have registered another example's "transfer".
    transaction_id = json.loads(run.result or "null")

    bank = Bank(tmp_path / "bank.db")
    # Each effect once, under the one transaction id the run recorded...
    assert bank.movements() == [(transaction_id, "withdraw", "alice", 2500),
                                (transaction_id, "deposit", "bob", 2500)]
    assert bank.balances() == {"alice": 7500, "bob": 7500}
    # ...though each call ran twice: killed after its effect, it ran again (at least once),
    # and a kill before it left no trace. The recorded id made the retries harmless.
    assert bank.calls() == {"get_transaction_id": 2, "withdraw": 2, "deposit": 2}
    steps = [op for op in any_client.operations(handle.run_id) if op.type is OperationType.STEP]
    assert [(op.name, op.status) for op in steps] == [
        (f"bank_api.{call}", OperationStatus.SUCCEEDED) for call in BANK_CALLS]
    succeeded = Counter(e.name for e in any_client.history(handle.run_id)
                        if e.type == "StepSucceeded")
    assert succeeded == {f"bank_api.{call}": 1 for call in BANK_CALLS}


def test_a_non_durable_workflow_killed_inside_runs_again_from_the_start(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path) -> None:
    handle = any_client.start_by_name("quick_transfer",
                                      json.dumps(["tx-1", "alice", "bob", 100]))
    points = ["deposit_to_account_route:after"]
    _kill_at_each(procs, any_db, QUICK, tmp_path, points)
    _worker(procs, any_db, QUICK, tmp_path, points)
    run = any_client.wait(handle.run_id, timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED, procs.logs()
    assert any_client.result(handle.run_id) == {"alice": 9900, "bob": 5100}
    bank = Bank(tmp_path / "bank.db")
    assert bank.calls() == {"withdraw": 2, "deposit": 2}  # from the top: both calls again
    assert len(bank.movements()) == 2
    steps = [op for op in any_client.operations(handle.run_id) if op.type is OperationType.STEP]
    assert [(op.name, op.status) for op in steps] == [("quick_transfer",
                                                       OperationStatus.SUCCEEDED)]


def test_a_worker_killed_while_a_plain_workflow_sleeps_repeats_no_call(
        any_db: str, any_client: durable.Client, procs: Procs, tmp_path: Path) -> None:
    handle = any_client.start_by_name("transfer_later", json.dumps(["alice", "bob", 300, 3.0]))
    first = _worker(procs, any_db, QUICK, tmp_path, [])

    def sleeping() -> bool:
        return any(op.type is OperationType.WAIT and op.status is OperationStatus.STARTED
                   for op in any_client.operations(handle.run_id))
    wait_until(sleeping, lambda: f"the run to sleep\n{procs.logs()}")
    first.kill()
    bank = Bank(tmp_path / "bank.db")
    assert "deposit" not in bank.calls()  # killed in the sleep, not after it
    _worker(procs, any_db, QUICK, tmp_path, [])
    run = any_client.wait(handle.run_id, timeout=120)
    assert run.status is ExecutionStatus.SUCCEEDED, procs.logs()
    assert bank.calls() == {"get_transaction_id": 1, "withdraw": 1, "deposit": 1}
    assert bank.balances() == {"alice": 9700, "bob": 5300}


SERVICE = '''
CALLS = []

def reserve(item: str) -> str:
    return "reserved " + item

def charge(amount: int) -> str:
    return f"charged {amount}"
'''

APP = '''
import durable
from service import charge, reserve


@durable.workflow(auto=True, external=["service"])
def order(item: str, amount: int) -> list[str]:
    return [{first}, {second}]
'''


def test_durable_replay_catches_two_external_calls_swapped(any_db: str, tmp_path: Path) -> None:
    (tmp_path / "service.py").write_text(SERVICE)
    app = tmp_path / "app.py"
    reserve, charge = "reserve(item)", "charge(amount)"
    app.write_text(APP.format(first=reserve, second=charge))

    def durable_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURABLE, *args, "--db", any_db],
                              capture_output=True, text=True, timeout=120, cwd=tmp_path)

    ran = durable_cli("run", f"{app}:order", "--input", '["book", 12]')
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == ["reserved book", "charged 12"]
    same = durable_cli("replay", str(app))
    assert same.returncode == 0, same.stdout + same.stderr

    app.write_text(APP.format(first=charge, second=reserve))  # the order of the two swapped
    swapped = durable_cli("replay", str(app))
    assert swapped.returncode == 1, swapped.stdout + swapped.stderr
    assert "diverges" in swapped.stdout
    assert "'service.reserve'" in swapped.stdout and "'service.charge'" in swapped.stdout
