"""Queues at run time: a run waiting for a slot shows ENQUEUED with its queue and position;
`priority` orders the waiting runs (higher first, then start order); a `dedup_id` is unique
among a queue's live runs, a second start returning the first run, race-safe across starters.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import durable
from durable import ExecutionStatus, UsageError
from durable.sdk.workflow import REGISTRY
from durable.testing import TestEnvironment
from tests.apps import sched_app
from tests.crashkit import CrashLab
from tests.kit import ROOT, Procs, wait_until
from tests.readmekit import OPERATING, Shell, run_section
from tests.schedkit import spawn
from tests.serverkit import Server
from tests.test_cli import Cli
from tests.test_queues import T0, fresh_queue, napper

pytestmark = pytest.mark.usefixtures("registry_restored")

QUEUE_APP = "tests/apps/queue_app.py"


@pytest.fixture
def db_url(any_db: str) -> str:
    return any_db


async def test_waiting_runs_show_enqueued_with_their_position_in_priority_order(
        db_url: str) -> None:
    queue = fresh_queue(limit=1)
    started: list[str] = []
    wf = napper(queue, started)
    async with TestEnvironment(wf, db=db_url, start=T0) as env:
        for run_id, priority in [("low", -1), ("first", 0), ("urgent", 5), ("second", 0)]:
            env.client.start(wf, run_id, id=run_id, priority=priority)
            env.clock.advance(0.001)
        waiting = {r.run_id: r for r in env.client.list(status="ENQUEUED")}
        assert {r: (w.status, w.queue, w.position) for r, w in waiting.items()} == {
            "urgent": (ExecutionStatus.ENQUEUED, queue.name, 1),
            "first": (ExecutionStatus.ENQUEUED, queue.name, 2),
            "second": (ExecutionStatus.ENQUEUED, queue.name, 3),
            "low": (ExecutionStatus.ENQUEUED, queue.name, 4)}
        assert env.client.list(status="RUNNING") == []

        await env.settle()  # one slot: the highest priority goes first
        assert started == ["urgent"]
        urgent = env.get("urgent")
        assert (urgent.status, urgent.queue, urgent.position) == (
            ExecutionStatus.RUNNING, queue.name, None)
        assert [r.run_id for r in env.client.list(status="RUNNING")] == ["urgent"]
        assert env.get("low").position == 3
        for _ in range(3):
            await env.skip(60)
        assert started == ["urgent", "first", "second", "low"]


async def test_a_second_start_with_a_live_dedup_id_returns_the_first_run(db_url: str) -> None:
    queue = fresh_queue(limit=1)
    wf = napper(queue)
    async with TestEnvironment(wf, db=db_url, start=T0) as env:
        first, created = env.client.start_run(wf.name, json.dumps("a"), dedup_id="order-1")
        again, created_again = env.client.start_run(wf.name, json.dumps("b"), dedup_id="order-1")
        assert created and not created_again and again.run_id == first.run_id
        env.clock.advance(0.001)  # started after the first: admitted after it
        other = env.client.start(wf, "c", dedup_id="order-2")
        assert other.run_id != first.run_id

        await env.settle()
        await env.skip(60)  # the first run ends: its dedup id is free again
        assert env.get(first.run_id).status is ExecutionStatus.SUCCEEDED
        fresh, created_fresh = env.client.start_run(wf.name, json.dumps("d"), dedup_id="order-1")
        assert created_fresh and fresh.run_id != first.run_id


async def test_cancelling_an_enqueued_run_stops_it_at_once_and_frees_its_dedup_id(
        db_url: str) -> None:
    queue = fresh_queue(limit=1)
    wf = napper(queue)
    async with TestEnvironment(wf, db=db_url, start=T0) as env:
        env.client.start(wf, "holder", id="holder")
        await env.settle()
        waiting = env.client.start(wf, "w", id="w", dedup_id="job")
        assert env.get("w").status is ExecutionStatus.ENQUEUED
        assert env.cancel("w").status is ExecutionStatus.STOPPED  # nothing of it ever ran
        again = env.client.start(wf, "w2", id="w2", dedup_id="job")
        assert again.run_id == "w2" != waiting.run_id


def test_concurrent_starts_with_one_dedup_id_make_one_run(db_url: str) -> None:
    """Eight clients, each on its own store, start at the same instant with one dedup id: the
    unique index decides, every caller gets the one run."""
    wf = napper(fresh_queue(limit=1))
    clients = [durable.Client(db_url) for _ in range(8)]
    together = threading.Barrier(len(clients))
    got: list[str] = []

    def start(client: durable.Client, n: int) -> None:
        together.wait()
        got.append(client.start(wf, str(n), id=f"racer-{n}", dedup_id="once").run_id)
    try:
        threads = [threading.Thread(target=start, args=(c, n)) for n, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 8 and len(set(got)) == 1
        assert [r.run_id for r in clients[0].list(workflow=wf.name)] == got[:1]
    finally:
        for c in clients:
            c.close()


def signalled(queue: durable.Queue, name: str) -> durable.Workflow[..., None]:
    """A workflow on `queue` whose runs hold their slot until signalled `go`."""
    @durable.workflow(name=f"{name}-{queue.name}", queue=queue)
    async def held(ctx: durable.Context) -> None:
        await ctx.wait_for_signal("go")
    return held


async def test_child_runs_and_schedule_ticks_on_a_full_queue_wait_enqueued(
        db_url: str) -> None:
    """Runs the engine starts itself (a child run, a schedule's tick) wait ENQUEUED on their
    queue like runs a client starts: the queue the worker recorded for their workflow."""
    queue = fresh_queue(limit=1)
    holder, child = signalled(queue, "holder"), napper(queue)

    @durable.workflow(name=f"parent-{queue.name}")
    async def parent(ctx: durable.Context) -> str:
        return str(await ctx.invoke(child, "kid", id="kid"))

    @durable.workflow(name=f"tick-{queue.name}", schedule="* * * * *", queue=queue)
    async def ticking(ctx: durable.Context) -> None:
        return None

    async with TestEnvironment(holder, child, parent, ticking, db=db_url, start=T0) as env:
        env.client.start(holder, id="holder")
        await env.settle()
        env.client.start(parent, id="parent")
        await env.settle()
        kid = env.get("kid")
        assert (kid.status, kid.queue, kid.position) == (ExecutionStatus.ENQUEUED, queue.name, 1)
        assert env.get("parent").status is ExecutionStatus.RUNNING  # on no queue

        await env.skip(61)  # the schedule's tick at 12:01 starts a run: the queue is full
        (tick,) = env.client.list(workflow=ticking.name)
        assert (tick.status, tick.queue, tick.position) == (
            ExecutionStatus.ENQUEUED, queue.name, 2)
        assert env.get("kid").position == 1

        env.signal("holder", "go")
        await env.settle()
        assert env.get("kid").status is ExecutionStatus.RUNNING
        await env.skip(60)  # kid ends, its parent with it; the tick's run is admitted and ends
        assert env.get("parent").status is ExecutionStatus.SUCCEEDED
        assert env.get(tick.run_id).status is ExecutionStatus.SUCCEEDED


async def test_a_run_started_where_its_code_is_not_loaded_waits_on_the_recorded_queue(
        db_url: str) -> None:
    """A starter without the workflow's code (the CLI, the API of another deployment) knows
    its queue from the worker serving it, which records it as it starts serving: runs started
    before that are marked ENQUEUED then, those after at their start, and priority and dedup
    ids work from there too."""
    queue = fresh_queue(limit=1)
    wf = signalled(queue, "remote")
    async with TestEnvironment(wf, db=db_url, start=T0) as env:
        del REGISTRY[wf.name]  # this process's client no longer knows the code
        for run_id in ("early-1", "early-2"):
            early, _ = env.client.start_run(wf.name, None, id=run_id)
            env.clock.advance(0.001)
        assert early.status is ExecutionStatus.RUNNING  # no worker said where it waits yet
        with pytest.raises(UsageError, match="no worker serving it has recorded a queue"):
            env.client.start_run(wf.name, None, dedup_id="job-1")

        await env.settle()  # the worker records the queue, then admits the oldest
        first, second = env.get("early-1"), env.get("early-2")
        assert (first.status, first.queue) == (ExecutionStatus.RUNNING, queue.name)
        assert (second.status, second.queue, second.position) == (
            ExecutionStatus.ENQUEUED, queue.name, 1)

        late, created = env.client.start_run(wf.name, None, id="late", priority=3,
                                             dedup_id="job-1")
        assert created and (late.status, late.queue, late.position) == (
            ExecutionStatus.ENQUEUED, queue.name, 1)
        again, created = env.client.start_run(wf.name, None, dedup_id="job-1")
        assert not created and again.run_id == "late"
        assert env.get("early-2").position == 2


def test_priority_and_dedup_id_need_a_queued_workflow_and_sane_values(
        client: durable.Client) -> None:
    @durable.workflow(name="unqueued-rt")
    async def unqueued(ctx: durable.Context) -> None:
        return None

    with pytest.raises(UsageError, match="is on no queue"):
        client.start(unqueued, priority=1)
    with pytest.raises(UsageError, match="not loaded in this process, and no worker"):
        client.start_run("nowhere", None, dedup_id="x")
    wf = napper(fresh_queue())
    with pytest.raises(UsageError, match="must be an integer"):
        client.start(wf, "x", priority="high")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="non-empty string"):
        client.start(wf, "x", dedup_id="")


def test_a_worker_killed_after_admitting_loses_no_enqueued_run(crash_lab: CrashLab) -> None:
    """A worker SIGKILLed right after its claim admitted a run (before invoking it): the run
    keeps its slot and is finished by the next worker once the lease lapses; the runs still
    enqueued are all admitted, highest priority first, and each body runs once."""
    lab = crash_lab
    assert REGISTRY.get(sched_app.job.name) is sched_app.job
    ids = [f"job-{i}" for i in range(5)]
    for i, run_id in enumerate(ids):
        lab.client.start_by_name(sched_app.job.name, json.dumps(i), id=run_id, priority=i)
    assert [lab.client.get(r).position for r in ids] == [5, 4, 3, 2, 1]
    doomed = spawn(lab, "--serve", "queue", "--crash-on-first-invoke")
    doomed.wait_exit()
    crashed = [e.split(":", 1)[1] for e, _ in lab.effects().lines if e.startswith("crash:")]
    assert len(crashed) == 1 and crashed[0] in ("job-4", "job-3")  # the two highest first
    assert lab.client.get(crashed[0]).status is ExecutionStatus.RUNNING  # admitted, no lost slot
    spawn(lab, "--serve", "queue")
    for run_id in ids:
        assert lab.finish(run_id).status is ExecutionStatus.SUCCEEDED
    begins = [e for e, _ in lab.effects().lines if e.startswith("begin:")]
    assert sorted(int(e.split(":")[1]) for e in begins) == [0, 1, 2, 3, 4]  # each once


@pytest.mark.crash
def test_runs_started_without_the_code_are_enqueued_by_a_worker_killed_as_it_admits_one(
        tmp_path: Path, any_db: str) -> None:
    """Runs of `sched.held_job` (one slot) started by name where its code is not loaded show
    RUNNING: nothing says where they wait. A worker's first write records the workflow's queue
    and marks them ENQUEUED, its claim admits the oldest, and it is SIGKILLed invoking that
    one: the record and the admission stand, the others wait in order, and the next worker
    runs every run once, one at a time."""
    job = sched_app.held_job.name
    with CrashLab(tmp_path, any_db) as lab:
        del REGISTRY[job]  # the test's client is a starter without the code
        ids = ["held-1", "held-2", "held-3"]
        for n, run_id in enumerate(ids, 1):
            assert lab.client.start_run(job, json.dumps(n), run_id)[0].status \
                is ExecutionStatus.RUNNING
            lab.open_gate(f"begin-{n}")
            lab.client.signal(run_id, "go")  # buffered until the run waits for it
        spawn(lab, "--serve", "held", "--crash-on-first-invoke").wait_exit()
        assert [e for e, _ in lab.effects().lines] == ["crash:held-1"]
        runs = [lab.client.get(run_id) for run_id in ids]
        assert [(r.status, r.queue, r.position) for r in runs] == [
            (ExecutionStatus.RUNNING, sched_app.HELD.name, None),
            (ExecutionStatus.ENQUEUED, sched_app.HELD.name, 1),
            (ExecutionStatus.ENQUEUED, sched_app.HELD.name, 2)]

        spawn(lab, "--serve", "held")
        for run_id in ids:
            assert lab.finish(run_id).status is ExecutionStatus.SUCCEEDED
        stamps = [e.split(":") for e, _ in lab.effects().lines if not e.startswith("crash:")]
        assert sorted((kind, int(n)) for kind, n, _ in stamps) == sorted(
            (kind, n) for kind in ("begin", "end") for n in (1, 2, 3))  # each body once
        ordered = sorted(stamps, key=lambda stamp: float(stamp[2]))
        assert [(kind, int(n)) for kind, n, _ in ordered] == [  # one at a time, in order
            ("begin", 1), ("end", 1), ("begin", 2), ("end", 2), ("begin", 3), ("end", 3)]


def test_priority_dedup_and_enqueued_positions_through_the_cli_and_the_api(
        db_url: str, tmp_path: Path) -> None:
    """`durable server` serving tests/apps/queue_app.py (one slot, held until signalled) and
    `durable start|ls|show` on the same database: both say the same of the waiting runs."""
    cli = Cli(db_url)
    with Server(tmp_path, db=db_url, app=QUEUE_APP) as server, server.client() as api:
        def start(body: dict[str, Any]) -> httpx.Response:
            return api.post("/api/runs", json={"workflow": "rt.hold", **body})

        assert start({"input": "first", "id": "first"}).status_code == 201
        wait_until(lambda: api.get("/api/runs/first").json()["run"]["status"] == "RUNNING",
                   "the first run to take the slot")
        assert start({"input": "low", "id": "low", "priority": -1}).status_code == 201
        urgent = start({"input": "urgent", "id": "urgent", "priority": 7})
        assert urgent.json()["status"] == "ENQUEUED" and urgent.json()["position"] == 1
        by_cli = cli("start", f"{QUEUE_APP}:hold", "--input", '"cli"', "--id", "cli",
                     "--priority", "3", "--dedup-id", "job-9")
        assert (by_cli.returncode, by_cli.stdout.strip()) == (0, "cli"), by_cli.stderr
        again = cli("start", f"{QUEUE_APP}:hold", "--input", '"x"', "--dedup-id", "job-9")
        assert again.stdout.strip() == "cli"
        dup = start({"input": "y", "dedup_id": "job-9"})
        assert dup.status_code == 200 and dup.json()["run_id"] == "cli"
        assert dup.json()["created"] is False

        expected = [("urgent", 1, 7), ("cli", 2, 3), ("low", 3, -1)]
        listed = api.get("/api/runs", params={"status": "ENQUEUED"}).json()["runs"]
        assert sorted((r["run_id"], r["position"], r["priority"]) for r in listed) == sorted(
            expected)
        assert all(r["queue"] == "rt.one-slot" for r in listed)
        by_ls = cli.json("ls", "--status", "ENQUEUED")["runs"]
        assert sorted((r["run_id"], r["position"], r["priority"]) for r in by_ls) == sorted(
            expected)
        shown = cli.json("show", "cli")["run"]
        assert (shown["status"], shown["dedup_id"]) == ("ENQUEUED", "job-9")
        assert "ENQUEUED #2 on rt.one-slot" in cli("ls").stdout

        bad = start({"priority": "high"})
        assert bad.status_code == 422 and "priority" in bad.text
        unqueued = api.post("/api/runs", json={"workflow": "rt.free", "priority": 1})
        assert unqueued.status_code == 400 and "is on no queue" in unqueued.text
        for args in (["--priority", "high"], ["--dedup-id", ""]):
            refused = cli("start", f"{QUEUE_APP}:hold", "--input", '"z"', *args)
            assert refused.returncode == 2 and "Traceback" not in refused.stderr
        refused = cli("start", f"{QUEUE_APP}:free", "--priority", "1")
        assert refused.returncode == 2 and "is on no queue" in refused.stderr

        assert api.post("/api/runs/first/signal", json={"name": "go"}).status_code == 202
        wait_until(lambda: api.get("/api/runs/urgent").json()["run"]["status"] == "RUNNING",
                   "the urgent run to be admitted next")
        assert api.get("/api/runs/cli").json()["run"]["position"] == 1


def test_the_readme_commands_for_queues_and_schedules_at_run_time(tmp_path: Path) -> None:
    """Each command of docs/guides/operating.md, "Queues and schedules at run time", pasted
    in a fresh directory with examples/mailer.py; what they print is what the section says."""
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "mailer.py", tmp_path / "examples")

    def same_run(command: str) -> str:
        out = shell(command)
        assert out.strip() == ada[0], (out, ada)
        return out

    def first(command: str) -> str:
        ada.append(shell(command).strip())
        return ada[-1]

    def enqueued(command: str) -> str:
        out = shell(command)
        assert "ENQUEUED #1 on emails" in out and "ENQUEUED #2 on emails" in out, out
        return out

    def shown(command: str) -> str:
        out = shell(command)
        run = json.loads(out)["run"]
        assert (run["status"], run["queue"], run["position"]) == ("ENQUEUED", "emails", 2)
        return out

    def backfilled(command: str) -> str:
        out = shell(command)
        assert out.split() == ["mailer.digest@2025-01-01T08:00:00+01:00",
                               "mailer.digest@2025-01-02T08:00:00+01:00"], out
        return out

    def curl(command: str) -> str:
        """The API's answers: JSON, none of them an error."""
        out = shell(command)
        answer = json.loads(out)
        assert not (isinstance(answer, dict) and "code" in answer and "message" in answer), out
        if '"dedup_id": "welcome-cy"' in command:
            assert answer["dedup_id"] == "welcome-cy" and answer["priority"] == 9
        elif "status=ENQUEUED" in command:
            waiting = answer["runs"]
            assert waiting and all(r["status"] == "ENQUEUED" and r["position"] for r in waiting)
        elif command.endswith("/pause"):
            assert answer["paused"] is True
        elif "/backfill" in command:
            assert [r["created"] for r in answer] == [False, False]  # the CLI filled them
        answers.append(answer)
        return out

    ada: list[str] = []
    answers: list[object] = []
    with Procs(tmp_path) as procs:
        shell = Shell(tmp_path, procs)
        skipped = run_section(
            OPERATING, "Queues and schedules at run time", shell, ports=("8777",),
            skip=lambda command: False,
            then={"durable start examples/mailer.py:send_welcome --input '\"ada\"' --priority":
                  first, "durable start examples/mailer.py:send_welcome --input '\"ada\"'":
                  same_run, "durable ls --status ENQUEUED": enqueued,
                  "durable show welcome-bob": shown, "durable schedules backfill": backfilled,
                  "curl": curl})
        assert skipped == [] and len(ada) == 1 and len(answers) == 6
