"""Durable streams in one process, on both stores: what workflow code writes is written once
however often the run replays; what a step body writes comes live, marked with its attempt,
and a failed attempt's values are declared abandoned; offsets are the store's, gapless under
concurrent writers; followers (sync and async) stop at the close or the run's end; streams
go with their run."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

import durable
from durable import Context, RetryPolicy, workflow
from durable.errors import RunNotFound, UsageError
from durable.model.streams import StreamKind
from durable.store.streams import NewEntry
from tests.kit import wait_until
from tests.streamkit import Follower


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    c = durable.Client(any_db)
    yield c
    c.close()


@workflow(name="streams.replayed")
async def replayed(ctx: Context, n: int) -> str:
    out = ctx.stream("events")
    for i in range(n):
        out.write({"i": i})
        await ctx.sleep(0.01)  # every write is replayed by each later invocation
    out.close()
    try:
        out.write("too late")
    except UsageError as e:
        return str(e)
    return "written after the close"


def test_workflow_writes_are_written_once_however_often_the_run_replays(
        client: durable.Client, any_db: str) -> None:
    said = durable.run(replayed, 4, id="replayed", db=any_db)
    assert "is closed" in said
    entries = list(client.stream("replayed", "events"))
    assert [(e.offset, e.kind, e.data) for e in entries] == [
        (1, "value", {"i": 0}), (2, "value", {"i": 1}), (3, "value", {"i": 2}),
        (4, "value", {"i": 3}), (5, "closed", None)]
    assert all(e.attempt is None and e.attempt_key is None for e in entries)
    assert [(s.name, s.last_offset, s.closed) for s in client.streams("replayed")] == [
        ("events", 5, True)]


ATTEMPTS: list[str] = []


@workflow(name="streams.flaky")
async def flaky(ctx: Context) -> int:
    def speak() -> int:
        ATTEMPTS.append(ctx.run_id)
        out = ctx.stream("tokens")
        out.write("a")
        out.write("b")
        if ATTEMPTS.count(ctx.run_id) == 1:
            raise RuntimeError("first attempt fails after two tokens")
        out.write("c")
        return 3
    return await ctx.step(speak, retry=RetryPolicy(max_attempts=2, initial_interval=0.01))


def test_a_failed_attempts_values_are_followed_by_its_abandoned_marker(
        client: durable.Client, any_db: str) -> None:
    ATTEMPTS.clear()
    assert durable.run(flaky, id="flaky", db=any_db) == 3
    everything = list(client.stream("flaky", "tokens", with_abandoned=True))
    assert [(e.kind, e.data, e.attempt) for e in everything] == [
        ("value", "a", 1), ("value", "b", 1), ("abandoned", None, 1),
        ("value", "a", 2), ("value", "b", 2), ("value", "c", 2)]
    assert everything[2].attempt_key == everything[0].attempt_key != everything[3].attempt_key
    # A reader coming after the failure is known does not get the void values at all.
    assert [(e.offset, e.kind, e.data) for e in client.stream("flaky", "tokens")] == [
        (3, "abandoned", None), (4, "value", "a"), (5, "value", "b"), (6, "value", "c")]


@workflow(name="streams.parallel")
async def parallel(ctx: Context, branches: int, each: int) -> int:
    def body(b: int) -> int:
        for i in range(each):
            ctx.stream("shared").write([b, i])
        return b
    await ctx.map(body, list(range(branches)))
    return branches


def test_concurrent_step_bodies_get_gapless_offsets_in_each_writers_order(
        client: durable.Client, any_db: str) -> None:
    durable.run(parallel, 4, 25, id="parallel", db=any_db)
    entries = list(client.stream("parallel", "shared"))
    assert [e.offset for e in entries] == list(range(1, 101))
    for b in range(4):
        assert [e.data[1] for e in entries if e.data[0] == b] == list(range(25))


def test_concurrent_transactions_appending_to_one_stream_number_it_without_gaps(
        client: durable.Client, any_db: str) -> None:
    client.start_run("none", None, id="target")
    ends: list[int | None] = []

    def writer(w: int) -> None:
        for i in range(20):
            entry = NewEntry(StreamKind.VALUE, f"[{w}, {i}]", None, None, None, 0.0)
            ends.append(client.store.write_sync(
                lambda tx, e=entry: tx.append_stream("target", "s", [e, e])))
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(e for e in ends if e is not None) == list(range(2, 161, 2))
    entries = client.stream_page("target", "s", limit=1000).entries
    assert [e.offset for e in entries] == list(range(1, 161))
    # A transaction's entries are consecutive: the two of each write sit side by side.
    assert all(entries[i].value == entries[i + 1].value for i in range(0, 160, 2))


@workflow(name="streams.waiting")
async def waiting(ctx: Context) -> str:
    ctx.stream("s").write("before")
    await ctx.wait_for_signal("go")
    ctx.stream("s").write("after")
    return "ok"


def test_a_follower_waits_for_new_entries_and_stops_when_the_run_ends(
        client: durable.Client, any_db: str) -> None:
    worker = durable.Worker([waiting], db=any_db)
    served = threading.Thread(target=asyncio.run, args=(worker.run_async(
        until=lambda: not client.get("waiting").status.live),), daemon=True)
    client.start(waiting, id="waiting")
    follower = Follower(any_db, "waiting", "s")
    served.start()
    wait_until(lambda: len(follower.entries) == 1, lambda: f"first entry: {follower.entries}")
    client.signal("waiting", "go")
    assert [e.data for e in follower.join()] == ["before", "after"]
    served.join(30)


def test_the_async_follower_resumes_after_an_offset(client: durable.Client,
                                                    any_db: str) -> None:
    durable.run(replayed, 3, id="async", db=any_db)

    async def follow(after: int) -> list[object]:
        return [e.data async for e in client.stream_async("async", "events", after=after)]
    assert asyncio.run(follow(1)) == [{"i": 1}, {"i": 2}, None]
    assert asyncio.run(follow(4)) == []  # after the close: over at once


def test_bad_stream_reads_say_what_to_fix(client: durable.Client, any_db: str) -> None:
    with pytest.raises(RunNotFound):
        list(client.stream("nope", "s"))
    with pytest.raises(UsageError, match="non-empty string"):
        list(client.stream("nope", ""))
    with pytest.raises(UsageError, match="integer >= 0"):
        list(client.stream("nope", "s", after=-1))


def test_streams_are_deleted_and_purged_with_their_run(client: durable.Client,
                                                       any_db: str) -> None:
    durable.run(replayed, 1, id="gone", db=any_db)
    ATTEMPTS.clear()
    durable.run(flaky, id="purged", db=any_db)
    client.delete("gone")
    assert client.purge(ended_before=client.clock() + 1) == 1
    counts = client.store.read(lambda tx: [tx._one(f"SELECT count(*) FROM {t}")[0] for t in (
        "streams", "stream_entries", "stream_attempts")])
    assert counts == [0, 0, 0]


@workflow(name="streams.torrent")
async def torrent(ctx: Context, n: int) -> int:
    def body() -> int:
        out = ctx.stream("tokens")
        for i in range(n):
            out.write(i)
        return n
    return await ctx.step(body)


def test_a_step_streaming_faster_than_writes_go_keeps_every_token_once(
        client: durable.Client, any_db: str) -> None:
    # More tokens than one statement could carry parameters for (PostgreSQL: 65,535).
    durable.run(torrent, 12_000, id="torrent", db=any_db)
    entries = list(client.stream("torrent", "tokens"))
    assert [e.data for e in entries] == list(range(12_000))
    assert [e.offset for e in entries] == list(range(1, 12_001))
