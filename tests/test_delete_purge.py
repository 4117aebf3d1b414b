"""Delete and purge: an ended run goes with every row it owns in every table (RUN_TABLES), a
running run is refused, and a purge deletes ended runs in bounded batches while workflows run
through the real engine beside it. On both stores; the crash test SIGKILLs a purge midway."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

import durable
from durable.engine import events, machine, streams
from durable.engine.retention import Retention
from durable.errors import RunNotEnded, RunNotFound
from durable.model import (
    ExecutionStatus,
    InvocationOutput,
    InvocationStatus,
    LogLine,
    OperationAction,
    OperationType,
    OperationUpdate,
    SubType,
    attributes,
)
from durable.model.streams import StreamChunk
from durable.store import Store, Tx, open_store
from durable.store.contract import CheckpointTokenRow
from durable.testing import TestEnvironment
from tests.endingkit import bulk_ended_runs, orphans, owned
from tests.kit import DURABLE, Procs, wait_until

APP = "tests/apps/ending_app.py"
DAY = 86400.0
T0 = 1_750_000_000.0


@pytest.fixture
def store(any_db: str) -> Iterator[Store]:
    s = open_store(any_db)
    yield s
    s.close()


def ended_run_owning_a_row_everywhere(store: Store, run_id: str, now: float) -> None:
    """A run, through the engine, with rows in every RUN_TABLES table, then ended."""
    def build(tx: Tx) -> None:
        machine.start_run(tx, run_id, "wf", '"in"', now)
        (claimed,) = [c for c in machine.claim(tx, "w", now, 10, 30, ["wf"])
                      if c.invocation.run_id == run_id]
        token = claimed.token
        machine.checkpoint(tx, run_id, token, [
            OperationUpdate("s1", OperationType.STEP, OperationAction.SUCCEED, name="stage",
                            sub_type=SubType.SET_EVENT, payload='"shipped"'),
            OperationUpdate("c1", OperationType.CALLBACK, OperationAction.START, name="cb",
                            heartbeat_timeout=60),
            OperationUpdate("sub", OperationType.STEP, OperationAction.SUCCEED, name="orders",
                            sub_type=SubType.SUBSCRIBE,
                            payload='{"topic": "orders", "filter": null}')],
            now, [LogLine(f"{run_id}-l1", now, "INFO", "hello")])
        streams.write_chunks(tx, run_id, token, [StreamChunk("tokens", '"t"', "s2", 1, now)])
        events.publish(tx, "orders", f"for-{run_id}", "1", now)  # buffered for it
        machine.signal(tx, run_id, "unheard", '"x"', now)  # buffered: nobody waits for it
        tx.set_attributes(run_id, attributes.attributes({"customer": "acme"}))
        tx.insert_execution(run_id, "fn", f"exec-{run_id}")
        tx.put_checkpoint_token(CheckpointTokenRow(run_id, token, "nonce", 0))
        machine.finish_invocation(tx, run_id, token,
                                  InvocationOutput(InvocationStatus.SUCCEEDED, result="1"),
                                  now, 0.01)
    store.write_sync(build)


def test_delete_takes_every_row_the_run_owns_and_nothing_else(store: Store) -> None:
    client = durable.Client(store)
    for run_id in ("gone", "kept"):
        ended_run_owning_a_row_everywhere(store, run_id, time.time())
    before = owned(store, "kept")
    assert all(before.values()), f"the fixture owns no row in some table: {before}"
    assert owned(store, "gone") == before

    deleted = client.delete("gone")
    assert deleted.status is ExecutionStatus.SUCCEEDED
    assert set(owned(store, "gone").values()) == {0}
    assert owned(store, "kept") == before
    with pytest.raises(RunNotFound):
        client.delete("gone")


def test_a_running_run_cannot_be_deleted(store: Store) -> None:
    client = durable.Client(store)
    client.start_run("wf", None, "live")
    with pytest.raises(RunNotEnded, match="terminate it first"):
        client.delete("live")
    assert owned(store, "live")["runs"] == 1
    client.terminate("live")
    client.delete("live")
    assert owned(store, "live")["runs"] == 0


def test_purge_takes_only_ended_runs_older_than_asked_in_batches(store: Store) -> None:
    client = durable.Client(store)
    now = time.time()
    for i in range(7):
        ended_run_owning_a_row_everywhere(store, f"old-{i}", now - 2 * DAY)
    ended_run_owning_a_row_everywhere(store, "recent", now)
    client.start_run("wf", None, "old-but-running")  # started long ago, never ended
    assert client.purge(now - DAY, batch=3, limit=5) == 5
    assert client.purge(now - DAY, batch=3, workflow="other") == 0
    assert client.purge(now - DAY, batch=3) == 2
    assert {r.run_id for r in client.list(limit=100)} == {"recent", "old-but-running"}
    assert orphans(store) == {}


# -- 100,000 runs purged while workflows run ---------------------------------------------------

OLD = 100_000
RECENT = 1_000


def test_purging_100k_runs_leaves_running_workflows_alone(any_db: str, tmp_path: Path) -> None:
    """100,000 runs that ended two days ago are purged in batches of 500 while a worker runs
    300 workflows through the real engine on the same database: every workflow ends as it
    would have, none of their rows is touched, and only the old runs go."""
    now = time.time()
    store = open_store(any_db)
    client = durable.Client(store)
    try:
        bulk_ended_runs(store, "old", OLD, now - 2 * DAY)
        bulk_ended_runs(store, "recent", RECENT, now - 60)
        env = {**os.environ, "DURABLE_DB": any_db, "ENDING_DIR": str(tmp_path)}
        with Procs(tmp_path, grace=5) as procs:
            procs.start(DURABLE, "worker", APP, env=env, name="worker")
            live = [f"live-{i}" for i in range(300)]

            def start_all() -> None:
                for i, run_id in enumerate(live):
                    client.start_by_name("quick", json.dumps(i), run_id)
            with ThreadPoolExecutor(1) as pool:
                starting = pool.submit(start_all)  # runs start while the purge deletes
                began = time.perf_counter()
                deleted = client.purge(now - DAY, batch=500)
                purge_seconds = time.perf_counter() - began
                starting.result()
            ended = [client.wait(run_id, 60) for run_id in live]
        print(f"purged {deleted} runs in {purge_seconds:.1f} s on {store.url.split(':')[0]}")
        assert deleted == OLD
        assert [r.status for r in ended] == [ExecutionStatus.SUCCEEDED] * len(live)
        assert [json.loads(r.result or "null") for r in ended] == [i + 1 for i in range(300)]
        for run_id in live[::37]:
            rows = owned(store, run_id)
            assert rows["operations"] == 2 and rows["history"] >= 6, rows
        assert len(client.list(workflow="bulk", limit=2 * RECENT)) == RECENT
        assert orphans(store) == {}
    finally:
        client.close()


def test_a_purge_killed_midway_leaves_no_half_deleted_run(any_db: str, tmp_path: Path) -> None:
    """The crash path: `durable purge` is SIGKILLed between (or inside) its batches while runs
    start and finish beside it. Each batch is one transaction, so no run is left half
    deleted; a second purge finishes the work; the live runs end as they would have."""
    now = time.time()
    store = open_store(any_db)
    client = durable.Client(store)
    try:
        bulk_ended_runs(store, "old", 20_000, now - 2 * DAY)
        env = {**os.environ, "DURABLE_DB": any_db, "ENDING_DIR": str(tmp_path)}
        with Procs(tmp_path, grace=0) as procs:
            procs.start(DURABLE, "worker", APP, env=env, name="worker")
            purge = procs.start(DURABLE, "purge", "--ended-before", "1d", "--batch", "20",
                                env=env, name="purge")
            live = [client.start_by_name("quick", json.dumps(i), f"live-{i}").run_id
                    for i in range(50)]

            def old_left() -> int:
                return int(store.read(lambda tx: tx._one(
                    "SELECT count(*) FROM runs WHERE workflow = 'bulk'"))[0])
            wait_until(lambda: old_left() < 19_000, "the purge to be under way",
                       interval=0.005)
            assert purge.kill() != 0
            left = old_left()
            assert 0 < left < 20_000, "the purge was not killed midway"
            assert orphans(store) == {}
            assert client.purge(now - DAY) == left
            assert [client.wait(r, 60).status for r in live] == [ExecutionStatus.SUCCEEDED] * 50
        assert old_left() == 0 and orphans(store) == {}
    finally:
        client.close()


def test_a_purge_racing_starts_of_the_same_ids(store: Store) -> None:
    """Starts of ids that a purge is deleting at that moment: each start either finds the old
    ended run (which the purge then deletes) or, once it is gone, makes a new run, which the
    purge never touches since it is running."""
    bulk_ended_runs(store, "old", 3000, time.time() - 2 * DAY)
    client = durable.Client(store)
    ids = [f"old-{i}" for i in range(3000, 0, -3)]  # from the end the purge reaches last

    def start_all() -> list[str]:
        return [run_id for run_id in ids
                if client.start_run("bulk", None, run_id, existing=True)[1]]
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_all)
        deleted = client.purge(time.time() - DAY, batch=5)
        created = starting.result()
    deleted += client.purge(time.time() - DAY)  # the old runs the starts found, if any
    assert 0 < len(created) < len(ids), "every start came before or after the purge: no race"
    assert deleted == 3000
    runs = {r.run_id: r for r in client.list(limit=10_000)}
    assert sorted(runs) == sorted(created)
    assert {r.status for r in runs.values()} == {ExecutionStatus.RUNNING}
    for run_id in created[::25]:
        assert [str(e.type) for e in client.history(run_id)] == ["ExecutionStarted"]
    assert orphans(store) == {}


def test_a_deleted_runs_id_starts_a_new_run(store: Store) -> None:
    client = durable.Client(store)
    ended_run_owning_a_row_everywhere(store, "again", time.time())
    client.delete("again")
    run, created = client.start_run("wf", '"new"', "again")
    assert created and run.status is ExecutionStatus.RUNNING and run.input == '"new"'
    assert owned(store, "again") == {**dict.fromkeys(owned(store, "again"), 0),
                                     "runs": 1, "history": 1}


@pytest.mark.usefixtures("registry_restored")
async def test_a_workflows_own_retention_overrides_the_global_one_everywhere(
        any_db: str) -> None:
    """`@workflow(retention=...)`: the worker serving it records it, and every retention sweep
    honours it, that worker's and one of a process without the code (a server given
    `--retention 1d`): shorter than the global age, its runs go sooner; longer, they stay."""
    @durable.workflow(name="brief", retention=timedelta(hours=1))
    async def brief(ctx: durable.Context) -> str:
        return "b"

    @durable.workflow(name="kept", retention=timedelta(days=7))
    async def kept(ctx: durable.Context) -> str:
        return "k"

    @durable.workflow(name="plain")
    async def plain(ctx: durable.Context) -> str:
        return "p"

    async with TestEnvironment(brief, kept, plain, db=any_db, start=T0) as env:
        for wf in (brief, kept, plain):
            assert await env.run(wf, id=wf.name) is not None
        own = env.worker.retention  # no global retention: it sweeps for the workflows' own
        assert own is not None and own.seconds is None
        elsewhere = Retention(env.store, DAY, env.clock)  # knows none of the code

        def left() -> list[str]:
            return sorted(r.run_id for r in env.client.list())

        env.clock.advance(2 * 3600)
        assert await elsewhere.sweep() == 1 and left() == ["kept", "plain"]
        env.clock.advance(DAY)
        assert await own.sweep() == 0  # the global age is none of this worker's business
        assert await elsewhere.sweep() == 1 and left() == ["kept"]  # 7 days are not up
        env.clock.advance(7 * DAY)
        assert await own.sweep() == 1 and left() == []


@pytest.mark.usefixtures("registry_restored")
def test_a_retention_that_is_not_a_positive_timedelta_is_refused() -> None:
    for bad in (timedelta(0), timedelta(seconds=-1), "30d"):
        with pytest.raises(durable.UsageError, match="must be a positive timedelta"):
            durable.workflow(name="refused", retention=bad)(_nothing)  # type: ignore[arg-type]


async def _nothing(ctx: durable.Context) -> None:
    return None
