"""Bulk actions on both stores: every run a filter selects is acted on once, those the action
no longer applies to are skipped and counted, a dry run changes nothing, and a bulk job killed
midway (SIGKILL) and continued acts on each remaining run once and on none twice."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import Context, ExecutionStatus, step, workflow
from durable.engine.bulk import rerun_id
from durable.errors import BulkJobNotFound, UsageError
from durable.model.attributes import FilterError
from durable.model.bulk import DONE, RUNNING, BulkJob
from tests.kit import DURABLE, ROOT, Procs, wait_until
from tests.serverkit import Server
from tests.test_pause_edit import serving

SOURCES = 120


@step
def prepare(n: int) -> int:
    return n * 2


@workflow
async def bulk_source(ctx: Context, n: int) -> int:
    doubled: int = await prepare(n)
    return doubled


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    c = durable.Client(any_db)
    yield c
    c.close()


def _started(client: durable.Client, workflow: str, count: int,
             tier: str = "gold") -> list[str]:
    """Runs that sit RUNNING (no worker serves `workflow`), with attribute tier."""
    return [client.start_run(workflow, "1", attributes={"tier": tier})[0].run_id
            for _ in range(count)]


def _statuses(client: durable.Client, run_ids: list[str]) -> list[ExecutionStatus]:
    return [client.get(r).status for r in run_ids]


def test_a_dry_run_counts_and_changes_nothing_then_the_job_acts_on_exactly_those(
        client: durable.Client) -> None:
    gold, silver = _started(client, "w", 4), _started(client, "w", 2, tier="silver")
    client.terminate(gold[0])  # ended: a terminate no longer applies to it
    count = client.bulk("terminate", where='tier = "gold"', dry_run=True)
    assert (count.status, count.acted, count.skipped) == ("DRY_RUN", 3, 1)
    assert client.bulk_jobs() == [] and _statuses(client, gold[1:]) == [
        ExecutionStatus.RUNNING] * 3
    job = client.bulk("terminate", where='tier = "gold"', reason="retired tier", batch=2)
    assert (job.status, job.acted, job.skipped) == (DONE, 3, 1)
    assert _statuses(client, gold) == [ExecutionStatus.STOPPED] * 4
    assert _statuses(client, silver) == [ExecutionStatus.RUNNING] * 2
    error = client.get(gold[1]).error
    assert error is not None and error.message == "retired tier"
    assert client.bulk_job(job.job_id) == job and client.bulk_jobs() == [job]


def test_pause_skips_paused_runs_and_resume_runs_them_on(client: durable.Client) -> None:
    runs = _started(client, "w", 5)
    client.pause(runs[0])
    paused = client.bulk("pause", workflow="w")
    assert (paused.acted, paused.skipped) == (4, 1)
    assert _statuses(client, runs) == [ExecutionStatus.PAUSED] * 5
    assert client.bulk("pause", workflow="w", dry_run=True).acted == 0
    resumed = client.bulk("resume", status="paused")
    assert (resumed.acted, resumed.skipped) == (5, 0)
    assert _statuses(client, runs) == [ExecutionStatus.RUNNING] * 5
    cancelled = client.bulk("cancel", workflow="w")
    assert cancelled.acted == 5 and all(client.get(r).cancel_requested for r in runs)
    assert client.bulk("cancel", workflow="w").skipped == 5  # asked already


def test_runs_started_after_the_job_began_are_not_swept_in(client: durable.Client) -> None:
    before = _started(client, "w", 3)
    job = client.bulk_create("terminate", workflow="w")
    after = _started(client, "w", 2)
    done = client.bulk_resume(job.job_id)
    assert (done.acted, done.skipped) == (3, 0)
    assert _statuses(client, before) == [ExecutionStatus.STOPPED] * 3
    assert _statuses(client, after) == [ExecutionStatus.RUNNING] * 2
    assert client.bulk_resume(job.job_id) == done  # a finished job changes nothing


def test_two_clients_continuing_one_job_at_once_act_on_each_run_once(
        client: durable.Client, any_db: str) -> None:
    runs = _started(client, "w", 60)
    job = client.bulk_create("cancel", workflow="w")
    finished: list[BulkJob] = []

    def go_on() -> None:
        with closing(durable.Client(any_db)) as mine:
            finished.append(mine.bulk_resume(job.job_id, batch=7))
    racers = [threading.Thread(target=go_on) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)
    done = client.bulk_job(job.job_id)
    assert len(finished) == 2 and (done.status, done.acted, done.skipped) == (DONE, 60, 0)
    assert all(client.get(r).cancel_requested for r in runs)
    cancels = [e for r in runs for e in client.history(r)
               if e.type == "ExecutionCancelRequested"]
    assert len(cancels) == 60


def _sources(db: str, count: int) -> list[str]:
    """`count` runs of bulk_source, each ended with its step `prepare` recorded."""
    with closing(durable.Client(db)) as c, serving(db, bulk_source):
        ids = [c.start(bulk_source, n).run_id for n in range(count)]
        wait_until(lambda: all(not c.get(r).status.live for r in ids), "the sources to end")
    return ids


def test_a_bulk_rerun_starts_one_rerun_per_run_under_ids_it_derives(
        client: durable.Client, any_db: str) -> None:
    sources = _sources(any_db, 3)
    _started(client, "bulk_source", 1)  # no step recorded yet: nothing to rerun from
    job = client.bulk("rerun", from_step="prepare", workflow="bulk_source")
    assert (job.acted, job.skipped) == (3, 1)
    for source in sources:
        rerun = client.get(rerun_id(job.job_id, source))
        assert rerun.input == client.get(source).input
    with pytest.raises(UsageError, match="needs the step to rerun from"):
        client.bulk("rerun", workflow="bulk_source")


def test_bad_input_is_refused_before_anything_is_stored(client: durable.Client) -> None:
    with pytest.raises(UsageError, match="unknown bulk action 'explode'; use one of cancel"):
        client.bulk("explode", workflow="w")
    with pytest.raises(FilterError, match="position"):
        client.bulk("cancel", where="tier = ")
    with pytest.raises(UsageError, match="unknown status"):
        client.bulk("cancel", status="asleep")
    with pytest.raises(UsageError, match="unknown filter color"):
        client.bulk("cancel", color="red")
    with pytest.raises(BulkJobNotFound):
        client.bulk_resume("bulk-nope")
    assert client.bulk_jobs() == []


class Cli:
    def __init__(self, db: str) -> None:
        self.env = {**os.environ, "DURABLE_DB": db}

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURABLE, *args], cwd=ROOT, env=self.env, capture_output=True,
                              text=True, timeout=60)


def test_a_bulk_rerun_killed_midway_and_continued_reruns_each_run_exactly_once(
        any_db: str, tmp_path: Path) -> None:
    sources = _sources(any_db, SOURCES)
    cli = Cli(any_db)
    with closing(durable.Client(any_db)) as client, Procs(tmp_path) as procs:
        proc = procs.start(DURABLE, "bulk", "rerun", "--from", "prepare", "--workflow",
                           "bulk_source", "--yes", "--batch", "10", env=cli.env)

        def midway() -> Any:
            jobs = client.bulk_jobs()
            return jobs and jobs[0].acted >= 15 and jobs[0]
        wait_until(midway, lambda: f"the job to get going:\n{proc.output()}", interval=0.002)
        proc.pause()  # held where it is, then killed there
        (job,) = client.bulk_jobs()
        assert job.status == RUNNING and job.acted < SOURCES, "the job ended before the kill"
        proc.kill()
        assert f"bulk job {job.job_id} started" in proc.output()
        done = cli("bulk", "continue", job.job_id, "--json")
        assert done.returncode == 0, done.stderr
        finished = json.loads(done.stdout)
        assert (finished["status"], finished["acted"], finished["skipped"]) == (
            DONE, SOURCES, 0)
        reruns = [r for r in client.runs(limit=10 * SOURCES).runs
                  if r.created_at >= job.started_at]
        assert sorted(r.run_id for r in reruns) == sorted(
            rerun_id(job.job_id, s) for s in sources)
        assert len(client.runs(limit=10 * SOURCES).runs) == 2 * SOURCES


def test_the_cli_counts_first_and_refuses_bad_input_with_exit_2(any_db: str) -> None:
    cli = Cli(any_db)
    with closing(durable.Client(any_db)) as client:
        runs = _started(client, "w", 2)
    dry = cli("bulk", "pause", "--workflow", "w", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["acted"] == 2
    asked = subprocess.run([DURABLE, "bulk", "pause", "--workflow", "w"], input="n\n",
                           cwd=ROOT, env=cli.env, capture_output=True, text=True, timeout=60)
    assert asked.returncode == 0 and "2 runs match; pause would apply to 2" in asked.stderr
    assert "nothing done" in asked.stderr
    done = cli("bulk", "pause", "--workflow", "w", "--yes")
    assert done.returncode == 0 and "paused 2 runs, skipped 0" in done.stdout, done.stderr
    with closing(durable.Client(any_db)) as client:
        assert _statuses(client, runs) == [ExecutionStatus.PAUSED] * 2
        (job,) = client.bulk_jobs()
    listed = cli("bulk", "jobs", "--json")
    assert [j["job_id"] for j in json.loads(listed.stdout)["jobs"]] == [job.job_id]
    for args, message in [
            (("explode",), "No such command 'explode'"),
            (("cancel", "--where", "tier = "), "bad filter at position 8"),
            (("cancel", "--status", "asleep"), "unknown status 'asleep'"),
            (("rerun", "--workflow", "w", "--yes"), "Missing option '--from'"),
            (("continue", "bulk-nope"), "no bulk job with id 'bulk-nope'")]:
        refused = cli("bulk", *args)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert message in refused.stderr and "Traceback" not in refused.stderr


def test_the_api_counts_then_runs_the_job_in_the_background(any_db: str,
                                                             tmp_path: Path) -> None:
    with Server(tmp_path, db=any_db) as server, server.client() as api:
        ids = [api.post("/api/runs", json={"workflow": "approval", "input": {
            "order_id": f"o{i}", "amount": 3}}).json()["run_id"] for i in range(3)]
        with closing(durable.Client(any_db)) as client:
            wait_until(lambda: all(op.name == "reserve" for r in ids
                                   for op in client.operations(r)[:1]), "the reserve steps")
        body = {"action": "terminate", "workflow": "approval", "reason": "bulk"}
        dry = api.post("/api/bulk", json={**body, "dry_run": True})
        assert dry.status_code == 200, dry.text
        assert (dry.json()["job_id"], dry.json()["matched"], dry.json()["acted"]) == (None, 3, 3)
        started = api.post("/api/bulk", json=body)
        assert started.status_code == 202, started.text
        job_id = started.json()["job_id"]
        done = wait_until(lambda: (j := api.get(f"/api/bulk/{job_id}").json())["status"]
                          == DONE and j, "the job to finish")
        assert (done["acted"], done["skipped"]) == (3, 0)
        assert {api.get(f"/api/runs/{r}").json()["run"]["status"] for r in ids} == {"STOPPED"}
        assert [j["job_id"] for j in api.get("/api/bulk").json()["jobs"]] == [job_id]
        for bad, code in [({"action": "explode"}, "unknown bulk action 'explode'"),
                          ({"action": "cancel", "where": "a = "}, "bad filter at position"),
                          ({"action": "rerun"}, "needs the step to rerun from")]:
            refused = api.post("/api/bulk", json=bad)
            assert refused.status_code == 400 and code in refused.json()["error"]["message"]
        missing = api.get("/api/bulk/bulk-nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "bulk_job_not_found"
