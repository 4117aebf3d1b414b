"""The examples, end to end, on a fresh SQLite database each: they are documentation that runs,
so a change that breaks one of them breaks a promise the README makes. Short sleeps and timeouts
come in through each example's input, as a user would pass them to `durable run --input`."""

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import durable
from durable.model import HistoryEvent
from tests.kit import ROOT

EXAMPLES = ROOT / "examples"


def _load(name: str) -> ModuleType:
    """Import examples/<name>.py the way `durable run examples/<name>.py:...` would: by path."""
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: dataclasses and pydantic look here
    spec.loader.exec_module(module)
    return module


greeting = _load("greeting")
transfer = _load("transfer")
order = _load("order")


def _python(*args: str | Path, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def _events(client: durable.Client, run_id: str, type: str, name: str) -> list[HistoryEvent]:
    return [e for e in client.history(run_id) if e.type == type and e.name == name]


# -- greeting ---------------------------------------------------------------------------------

def test_greeting_composes_five_greetings_with_durable_sleeps_between(
        db_url: str, client: durable.Client, capsys: pytest.CaptureFixture[str]) -> None:
    request = greeting.GreetingRequest(name="Ada", pause=0.05)
    result = durable.run(greeting.greeting, request, id="greet", db=db_url)

    assert len(result) == 5
    assert all(line.startswith("Hello, Ada! (greeting ") for line in result)
    assert [line.split("(greeting ")[1][:6] for line in result] == [
        f"{n} of 5" for n in range(1, 6)]
    assert len(_events(client, "greet", "WaitSucceeded", "pause 1")) == 1
    assert sum(e.type == "WaitSucceeded" for e in client.history("greet")) == 4
    assert capsys.readouterr().err.count("Hello, Ada!") == 5  # each step body ran once


# -- transfer ---------------------------------------------------------------------------------

@pytest.fixture
def bank(tmp_path: Path) -> Any:
    return transfer.Bank(tmp_path / "bank.db")


def _transfer(bank: Any, db: str, target: str, amount: int = 25_00,
              run_id: str = "t-1") -> Any:
    request = transfer.TransferRequest("alice", target, amount, bank=str(bank.path))
    return durable.run(transfer.transfer, request, id=run_id, db=db)


def test_transfer_moves_money_once_with_idempotency_keys(bank: Any, db_url: str) -> None:
    receipt = _transfer(bank, db_url, "bob")

    assert receipt == transfer.TransferReceipt("completed", 975_00, 525_00)
    assert (bank.balance("alice"), bank.balance("bob")) == (975_00, 525_00)
    assert [(p.account, p.delta) for p in bank.ledger()] == [("alice", -25_00), ("bob", 25_00)]
    assert all(p.key.startswith("t-1:") for p in bank.ledger())


@pytest.mark.parametrize("target", ["mallory", "nobody"])  # frozen; does not exist
def test_transfer_refused_deposit_is_compensated_by_a_refund(
        bank: Any, db_url: str, target: str) -> None:
    receipt = _transfer(bank, db_url, target)

    assert receipt.status == "refunded"
    assert target in (receipt.reason or "")
    assert bank.balance("alice") == 1_000_00
    assert [(p.account, p.delta, p.memo.split(":")[0]) for p in bank.ledger()] == [
        ("alice", -25_00, "transfer to " + target), ("alice", 25_00, "refund")]


def test_transfer_retried_step_applies_once(bank: Any, db_url: str, client: durable.Client) -> None:
    bank.lose_replies(1)  # the withdrawal lands, but its reply is lost: the step fails, retries

    receipt = _transfer(bank, db_url, "bob", run_id="flaky")

    assert receipt.status == "completed"
    assert bank.balance("alice") == 975_00  # debited once, not twice
    assert [p.account for p in bank.ledger()] == ["alice", "bob"]
    failed = _events(client, "flaky", "StepFailed", "withdraw")
    assert [(e.details["retry"], e.details["error"]["type"]) for e in failed] == [
        (True, "BankUnreachable")]
    assert _events(client, "flaky", "StepSucceeded", "withdraw")[0].details["attempt"] == 2


def test_transfer_without_funds_fails_and_moves_nothing(bank: Any, db_url: str) -> None:
    with pytest.raises(durable.WorkflowFailed, match="InsufficientFunds"):
        _transfer(bank, db_url, "bob", amount=5_000_00)
    assert bank.ledger() == []


# -- order ------------------------------------------------------------------------------------

@pytest.fixture
def shop(tmp_path: Path) -> Any:
    return order.Shop(str(tmp_path / "shop.db"))


def _order(shop: Any, **timings: float) -> Any:
    return order.OrderRequest("A-17", quantity=2, shop=shop.path, **timings)


def _kinds(shop: Any) -> list[str]:
    return [kind for kind, _ in shop.effects("A-17")]


def test_order_packed_signal_ships_and_follows_up(
        shop: Any, db_url: str, client: durable.Client) -> None:
    packer = order.when_stage(client, "o-1", "awaiting_packing", lambda: client.signal(
        "o-1", "packed", {"packer": "sam", "parcels": 2}))

    outcome = durable.run(order.order, _order(shop, follow_up_after=0.05), id="o-1", db=db_url)
    packer.join()

    assert outcome.status == "delivered" and outcome.tracking.startswith("TRK")
    assert _kinds(shop) == ["reserved", "charged", "shipped", "follow_up"]
    assert "2 parcel(s) packed by sam" in shop.effects("A-17")[2][1]
    assert shop.available("mug") == 23
    assert client.get_event("o-1", "stage") == "delivered"
    assert len(_events(client, "o-1", "WaitSucceeded", "until delivery follow-up")) == 1


def test_order_signal_sent_before_the_wait_is_buffered(
        shop: Any, db_url: str, client: durable.Client) -> None:
    request = _order(shop, follow_up_after=0.01)
    client.start(order.order, request, id="o-early")
    client.signal("o-early", "packed", {"packer": "early bird"})

    outcome = durable.run(order.order, request, id="o-early", db=db_url)  # same id: same run

    assert outcome.status == "delivered"
    assert "packed by early bird" in shop.effects("A-17")[2][1]


def test_order_packing_timeout_refunds_and_releases(
        shop: Any, db_url: str, client: durable.Client) -> None:
    outcome = durable.run(order.order, _order(shop, packing_timeout=0.1), id="o-2", db=db_url)

    assert outcome.status == "refunded" and "not packed within" in (outcome.reason or "")
    assert _kinds(shop) == ["reserved", "charged", "refunded", "released"]
    assert shop.available("mug") == 25
    assert client.get_event("o-2", "stage") == "refunded"


def test_order_out_of_stock_fails_before_charging(shop: Any, db_url: str) -> None:
    request = order.OrderRequest("A-17", sku="kettle", shop=shop.path)

    with pytest.raises(durable.WorkflowFailed, match="OutOfStock"):
        durable.run(order.order, request, id="o-4", db=db_url)
    assert _kinds(shop) == []


def test_order_cancelled_while_waiting_refunds_releases_and_stops(
        shop: Any, db_url: str, client: durable.Client) -> None:
    support = order.when_stage(client, "o-3", "awaiting_packing", lambda: client.cancel("o-3"))

    with pytest.raises(durable.WorkflowFailed) as failed:
        durable.run(order.order, _order(shop), id="o-3", db=db_url)
    support.join()

    assert failed.value.status == "STOPPED"
    assert _kinds(shop) == ["reserved", "charged", "refunded", "released"]
    assert shop.available("mug") == 25
    assert client.get_event("o-3", "stage") == "cancelled"


# -- scripts: the __main__ blocks, the demo, the benchmark, the CLI -------------------------------

@pytest.mark.parametrize(("script", "expect"), [
    ("transfer.py", "alice -> mallory 25.00: TransferReceipt(status='refunded'"),
    ("order.py", "status='delivered'"),
])
def test_example_main_blocks_run_on_the_embedded_default(
        tmp_path: Path, script: str, expect: str) -> None:
    done = _python(EXAMPLES / script, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout
    assert (tmp_path / ".durable" / "durable.db").exists()


def test_demo_kills_a_worker_and_resumes_without_rerunning_steps(tmp_path: Path) -> None:
    done = _python(EXAMPLES / "demo.py", "--dir", tmp_path / "demo", cwd=tmp_path)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SIGKILL worker 1" in done.stdout
    assert "Run SUCCEEDED" in done.stdout
    for step in ("fetch orders", "validate", "price"):  # checkpointed before the kill
        assert f"{step:14} 1x" in done.stdout


@pytest.mark.parametrize("workers", [1, 2])  # in-process, and worker subprocesses
def test_benchmark_smoke_prints_one_json_line(tmp_path: Path, workers: int) -> None:
    done = _python(ROOT / "benchmarks" / "steps.py", "--workflows", "5", "--steps", "3",
                   "--workers", str(workers), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    result = json.loads(line)
    assert {"workflows_per_s", "steps_per_s", "step_latency_p50_ms", "step_latency_p99_ms",
            "peak_rss_mb", "baseline_sqlite_commits_per_s", "workflows", "steps",
            "concurrency", "workers", "db"} <= result.keys()
    assert (result["workflows"], result["steps"], result["workers"]) == (5, 3, workers)
    assert result["latency_samples"] == 15


@pytest.mark.parametrize(("target", "given", "check"), [
    ("greeting.py:greeting", {"name": "CLI", "pause": 0.05},
     lambda result: len(result) == 5 and result[4].startswith("Hello, CLI! (greeting 5")),
    ("transfer.py:transfer", {"source": "alice", "target": "nobody", "amount": 1, "bank": "b.db"},
     lambda result: result["status"] == "refunded"),
])
def test_examples_run_with_the_cli(tmp_path: Path, db_url: str, target: str,
                                   given: dict[str, object], check: Callable[[Any], bool]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "durable.cli", "run", str(EXAMPLES / target),
         "--input", json.dumps(given), "--db", db_url],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert check(json.loads(done.stdout.splitlines()[-1])), done.stdout
