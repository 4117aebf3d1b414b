"""Rerun without surprises: `patch` edits the recorded input field by field (RFC 7386),
`input` still replaces it whole, `id` names the new run and a taken one is refused; through
the client, `durable rerun` and the API, on both stores; and a rerun SIGKILLed in its
transaction or right after it leaves one new run with the patched input, or none to retry."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

import durable
from durable.errors import RunIdTaken, UsageError, WorkflowFailed
from durable.model import ExecutionStatus
from durable.server.app import create_app
from tests import pgkit
from tests.apps import rerun_app
from tests.kit import DURABLE, Procs, wait_until
from tests.test_cli import Cli

ORDER = {"sku": "lamp", "qty": 9, "price": 30, "note": "gift"}


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.txt"
    monkeypatch.setenv("RERUN_EFFECTS", str(path))
    return path


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    with closing(durable.Client(any_db)) as c:
        yield c


@pytest.fixture
def failed(client: durable.Client, effects: Path) -> str:
    """A run of the order that failed at its charge: 9 ordered, 5 in stock."""
    with pytest.raises(WorkflowFailed):
        durable.run(rerun_app.order, ORDER, id="short", db=client.store)
    return "short"


def finished(client: durable.Client, run_id: str) -> durable.model.RunInfo:
    """Serve the run in this process until it ends."""
    worker = durable.Worker([rerun_app.order], client.store)
    asyncio.run(worker.run_async(until=lambda: not client.get(run_id).status.live))
    return client.get(run_id)


def lines(effects: Path) -> list[str]:
    return effects.read_text().splitlines()


def test_a_patch_changes_the_fields_it_names_and_keeps_the_others(
        client: durable.Client, failed: str, effects: Path) -> None:
    handle = client.rerun(failed, "charge", patch={"qty": 2, "note": None}, id="patched")
    assert handle.run_id == "patched"
    assert json.loads(client.get("patched").input or "") == {"sku": "lamp", "qty": 2,
                                                              "price": 30}
    run = finished(client, "patched")
    assert run.status is ExecutionStatus.SUCCEEDED
    assert run.result_value == {"hold": "hold-lamp", "total": 60, "note": None}
    assert lines(effects) == ["reserve lamp", "charge 9", "charge 2"]  # reserve reused
    whole = client.rerun(failed, "charge", input_json=json.dumps({"sku": "lamp", "qty": 1}))
    assert json.loads(client.get(whole.run_id).input or "") == {"sku": "lamp", "qty": 1}
    same = client.rerun(failed, "charge")
    assert client.get(same.run_id).input == client.get(failed).input


def test_a_taken_id_or_a_patch_with_new_input_is_refused_and_starts_nothing(
        client: durable.Client, failed: str) -> None:
    with pytest.raises(RunIdTaken, match="'short' is taken; choose another id"):
        client.rerun(failed, "charge", patch={"qty": 2}, id="short")
    with pytest.raises(UsageError, match="not both"):
        client.rerun(failed, "charge", input_json="{}", patch={"qty": 2})
    assert [r.run_id for r in client.list()] == ["short"]


def test_durable_rerun_patches_names_and_refuses_with_exit_2(
        any_db: str, client: durable.Client, failed: str) -> None:
    cli = Cli(any_db)
    done = cli("rerun", failed, "--from-step", "charge", "--patch", '{"qty": 3}', "--id", "cli")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cli"
    assert json.loads(client.get("cli").input or "")["qty"] == 3
    for args, says in [(("--patch", '{"qty": 4}', "--id", "cli"), "'cli' is taken"),
                       (("--patch", '{"qty": 4}', "--input", "{}"), "not both"),
                       (("--patch", "{qty: 4}"), "--patch")]:
        refused = cli("rerun", failed, "--from-step", "charge", *args)
        assert refused.returncode == 2, refused.stderr
        assert says in refused.stderr and "Traceback" not in refused.stderr
    assert len(client.list()) == 2


@pytest.fixture
def api(client: durable.Client) -> Iterator[httpx.Client]:
    with TestClient(create_app(client, serve=False), base_url="http://127.0.0.1") as http:
        yield http


def test_the_api_reruns_with_a_patch_and_an_id_and_refuses_what_clashes(
        api: httpx.Client, failed: str) -> None:
    url = f"/api/runs/{failed}/rerun"
    made = api.post(url, json={"from_step": "charge", "patch": {"qty": 1}, "id": "api"})
    assert made.status_code == 201, made.text
    assert made.json()["run_id"] == "api" and made.json()["input"]["qty"] == 1
    assert made.json()["input"]["note"] == "gift"
    taken = api.post(url, json={"from_step": "charge", "patch": {"qty": 1}, "id": "api"})
    assert taken.status_code == 409 and "taken" in taken.json()["error"]["message"]
    both = api.post(url, json={"from_step": "charge", "patch": {"qty": 1}, "input": ORDER})
    assert both.status_code == 400 and "not both" in both.json()["error"]["message"]
    schema = api.get("/openapi.json").json()["components"]["schemas"]["RerunRequest"]
    assert "patch" in schema["properties"]


def reruns_once_with_the_patch(client: durable.Client, failed: str, run_id: str,
                               cli: Cli, effects: Path) -> None:
    """After a kill: `run_id` is there with all of the rerun, or not at all; retried, the
    command makes it once; served, it reuses the reservation and charges the patched 2."""
    there = client.list(limit=10)
    if any(r.run_id == run_id for r in there):
        assert [op.name for op in client.operations(run_id)] == ["reserve"]  # all it reused
        again = cli("rerun", failed, "--from-step", "charge", "--patch", '{"qty": 2}',
                    "--id", run_id)
        assert again.returncode == 2 and f"{run_id!r} is taken" in again.stderr
    else:
        again = cli("rerun", failed, "--from-step", "charge", "--patch", '{"qty": 2}',
                    "--id", run_id)
        assert again.returncode == 0, again.stderr
    assert json.loads(client.get(run_id).input or "") == {**ORDER, "qty": 2}
    assert finished(client, run_id).status is ExecutionStatus.SUCCEEDED
    assert [r.run_id for r in client.list(limit=10)].count(run_id) == 1
    assert lines(effects).count("reserve lamp") == 1
    assert lines(effects)[-1] == "charge 2" and lines(effects).count("charge 2") == 1


@pytest.mark.crash
def test_a_rerun_killed_right_after_its_commit_leaves_one_patched_run(
        any_db: str, client: durable.Client, failed: str, effects: Path,
        tmp_path: Path) -> None:
    cli = Cli(any_db)
    with Procs(tmp_path) as procs:
        proc = procs.start(DURABLE, "rerun", failed, "--from-step", "charge", "--patch",
                           '{"qty": 2}', "--id", "after-commit", env=cli.env)
        wait_until(lambda: any(r.run_id == "after-commit" for r in client.list(limit=10)),
                   lambda: f"the rerun to commit:\n{proc.output()}", interval=0.001)
        proc.kill()
    reruns_once_with_the_patch(client, failed, "after-commit", cli, effects)


@pytest.mark.crash
def test_a_rerun_killed_inside_its_transaction_leaves_nothing_and_a_retry_makes_it_once(
        pg_url: str, effects: Path, tmp_path: Path) -> None:
    """The rerun's transaction has reached the server and waits to copy the reused operations
    (the test holds the operations table against writes): the client is killed there. The
    store pipelines a transaction's statements with its COMMIT, so a server that did not
    notice the client die would commit it whole once the lock is let go; this one checks its
    clients (client_connection_check_interval), drops the dead one's transaction, and not a
    row of it is left: the retry makes the run, once."""
    import psycopg

    with closing(durable.Client(pg_url)) as client:
        with pytest.raises(WorkflowFailed):
            durable.run(rerun_app.order, ORDER, id="short", db=client.store)
        cli = Cli(pgkit.with_params(pg_url, options="-cclient_connection_check_interval=20"))
        with psycopg.connect(pg_url) as holder, Procs(tmp_path) as procs:
            holder.execute("LOCK TABLE operations IN EXCLUSIVE MODE")
            proc = procs.start(DURABLE, "rerun", "short", "--from-step", "charge",
                               "--patch", '{"qty": 2}', "--id", "mid-tx", env=cli.env)

            def blocked() -> bool:
                row = holder.execute("SELECT count(*) FROM pg_locks WHERE relation = "
                                     "'operations'::regclass AND NOT granted").fetchone()
                return row is not None and row[0] > 0
            wait_until(blocked, lambda: f"the rerun to wait on the lock:\n{proc.output()}",
                       interval=0.01)
            assert proc.kill() < 0
            wait_until(lambda: not blocked(), "the server to drop the dead client's "
                       "transaction", interval=0.01)
            holder.rollback()  # only now may anything of it go on
        assert [r.run_id for r in client.list(limit=10)] == ["short"]
        reruns_once_with_the_patch(client, "short", "mid-tx", cli, effects)
