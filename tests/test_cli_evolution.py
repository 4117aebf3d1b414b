"""`durable replay` and `durable rerun`: checking a deploy against stored histories, and
running again from a step."""

from __future__ import annotations

import json

import pytest

import durable
from durable.store.schema import LATEST
from tests.apps import evolving_v1
from tests.test_cli import Cli


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)


def test_replay_passes_matching_code_and_flags_a_reordered_step(cli: Cli,
                                                                client: durable.Client):
    durable.run(evolving_v1.pipeline, 3, db=client.store)
    ok = cli("replay", "tests/apps/evolving_v1.py")
    assert ok.returncode == 0, ok.stderr
    assert "0 diverge" in ok.stdout
    bad = cli("replay", "tests/apps/evolving_v2.py", "--json")
    assert bad.returncode == 1
    [report] = json.loads(bad.stdout)
    assert "recorded as STEP 'extract'" in report["divergence"]
    assert "now calls STEP 'transform'" in report["divergence"]


def test_rerun_reuses_results_before_the_step_and_reports_unknown_steps(
        cli: Cli, client: durable.Client):
    original = durable.run(evolving_v1.pipeline, 3, db=client.store)
    assert original == [3, 6]
    [run] = client.list()
    done = cli("rerun", run.run_id, "--from-step", "transform", "--input", "10", "--id", "again")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "again"
    reused = [op.name for op in client.operations("again")]
    assert reused == ["extract"]
    unknown = cli("rerun", run.run_id, "--from-step", "nope")
    assert unknown.returncode == 2
    assert "extract, transform" in unknown.stderr and "Traceback" not in unknown.stderr


def test_schedules_lists_scheduled_workflows_with_their_next_fire_time(cli: Cli):
    rows = cli.json("schedules", "examples/nightly_report.py")
    assert [(r["workflow"], r["cron"], r["last_tick"]) for r in rows] == [
        ("nightly_report", "0 2 * * *", None)]
    assert rows[0]["next_fire"].endswith("+00:00")


def test_migrate_brings_the_schema_up_to_date_and_reports_its_version(cli: Cli):
    done = cli("migrate")
    assert done.returncode == 0, done.stderr
    assert f"schema at version {LATEST}" in done.stdout
    unreachable = cli("migrate", "--db", "postgresql://nobody@127.0.0.1:1/none")
    assert unreachable.returncode == 2
    assert "cannot connect to PostgreSQL" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
