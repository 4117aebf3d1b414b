"""Events: publishing, triggers with CEL filters, subscriptions, signal_run, on both stores."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

import durable
from durable import Context, workflow
from durable.errors import SignalFailed, UsageError, WaitTimeout
from tests.kit import DEADLINE, wait_until, wait_until_async

SEEN: list[str] = []


@workflow(name="events.big_order", on_event="orders", filter="data.amount > 100")
async def big_order(ctx: Context, event: dict[str, Any]) -> str:
    await ctx.step(SEEN.append, event["id"], name="note")
    return f"{event['id']}:{event['data']['amount']}"


@workflow(name="events.collector")
async def collector(ctx: Context, wanted: int) -> list[Any]:
    sub = ctx.subscribe("payments", filter="data.ok")
    await ctx.step(SEEN.append, "subscribed", name="ready")
    got = []
    for _ in range(wanted):
        event = await ctx.next_event(sub, timeout=DEADLINE)
        got.append(event["data"]["n"])
    return got


@workflow(name="events.impatient")
async def impatient(ctx: Context) -> str:
    sub = ctx.subscribe("never")
    try:
        await ctx.next_event(sub, timeout=0.05)
    except WaitTimeout:
        return "timed out"
    return "got one"


@workflow(name="events.waiter")
async def waiter(ctx: Context) -> Any:
    return await ctx.wait_for_signal("go", timeout=DEADLINE)


@workflow(name="events.sender")
async def sender(ctx: Context, target: str) -> str:
    await ctx.signal_run(target, "go", {"from": ctx.run_id})
    try:
        await ctx.signal_run("no-such-run", "go")
    except SignalFailed as e:
        return e.error.type
    return "delivered to nobody?"


@asynccontextmanager
async def serving(client: durable.Client, *workflows: Any) -> AsyncIterator[durable.Worker]:
    worker = durable.Worker(list(workflows), client.store)
    task = asyncio.create_task(worker.run_async())
    try:
        yield worker
    finally:
        worker.stop()
        await task


def _runs_of(client: durable.Client, name: str) -> Callable[[], list[durable.RunInfo]]:
    return lambda: [r for r in client.list(workflow=name) if r.status.ended]


@pytest.fixture
def any_client(any_db: str) -> Any:
    c = durable.Client(any_db)
    SEEN.clear()
    yield c
    c.close()


async def test_each_matching_event_starts_one_run_and_a_republished_id_starts_none(
        any_client: durable.Client) -> None:
    client = any_client
    async with serving(client, big_order):
        await wait_until_async(lambda: client.store.read(
            lambda tx: tx.trigger_since("events.big_order")), "the trigger to be registered")
        for i, amount in enumerate([50, 150, 300, 100]):
            await asyncio.to_thread(client.publish, "orders", {"amount": amount}, id=f"o{i}")
        again, created = await asyncio.to_thread(
            client.publish_json, "orders", json.dumps({"amount": 999}), id="o1")
        assert not created and again.value == {"amount": 150}  # the first one stands
        done = await wait_until_async(lambda: len(_runs_of(client, "events.big_order")()) == 2
                                      and _runs_of(client, "events.big_order")())
    assert sorted(json.loads(r.result or "null") for r in done) == ["o1:150", "o2:300"]
    assert sorted(SEEN) == ["o1", "o2"]
    listed = client.list_events("orders")
    assert [e.id for e in listed] == ["o3", "o2", "o1", "o0"]
    _, deliveries = client.event(listed[0].seq)
    assert [(d.workflow, d.run_id) for d in deliveries] == [("events.big_order", None)]


async def test_a_redispatched_event_starts_a_second_run(any_client: durable.Client) -> None:
    client = any_client
    async with serving(client, big_order):
        await wait_until_async(lambda: client.store.read(
            lambda tx: tx.trigger_since("events.big_order")), "the trigger to be registered")
        event = await asyncio.to_thread(client.publish, "orders", {"amount": 500}, id="r")
        await wait_until_async(lambda: len(_runs_of(client, "events.big_order")()) == 1)
        await asyncio.to_thread(client.redispatch, event.seq)
        await wait_until_async(lambda: len(_runs_of(client, "events.big_order")()) == 2)
    _, deliveries = client.event(event.seq)
    assert [d.generation for d in deliveries] == [0, 1]
    assert len({d.run_id for d in deliveries}) == 2


async def test_a_subscription_buffers_matching_events_from_its_start_and_replays_them(
        any_client: durable.Client) -> None:
    client = any_client
    client.publish("payments", {"ok": True, "n": -1})  # before the subscription: not seen
    handle = client.start(collector, 3)
    async with serving(client, collector):
        await wait_until_async(lambda: "subscribed" in SEEN)
        for n in range(5):  # published while the run waits, and before it waits again
            client.publish("payments", {"ok": n % 2 == 0, "n": n})
        run = await asyncio.to_thread(client.wait, handle.run_id, DEADLINE)
    assert json.loads(run.result or "null") == [0, 2, 4]
    (replayed,) = await asyncio.to_thread(client.replay, [collector], [handle.run_id])
    assert replayed.divergence is None  # the recorded events replay as they came


async def test_next_event_times_out(any_client: durable.Client) -> None:
    handle = any_client.start(impatient)
    async with serving(any_client, impatient):
        run = await asyncio.to_thread(any_client.wait, handle.run_id, DEADLINE)
    assert json.loads(run.result or "null") == "timed out"


async def test_signal_run_reaches_the_other_run_once_and_fails_for_an_unknown_run(
        any_client: durable.Client) -> None:
    client = any_client
    target = client.start(waiter)
    source = client.start(sender, target.run_id)
    async with serving(client, waiter, sender):
        got = await asyncio.to_thread(client.wait, target.run_id, DEADLINE)
        sent = await asyncio.to_thread(client.wait, source.run_id, DEADLINE)
    assert json.loads(got.result or "null") == {"from": source.run_id}
    assert json.loads(sent.result or "null") == "RunNotFound"
    received = [e for e in client.history(target.run_id) if e.type == "SignalReceived"]
    assert len(received) == 1


def test_a_bad_filter_or_topic_fails_where_the_workflow_is_declared() -> None:
    with pytest.raises(UsageError, match="not a valid CEL expression"):
        workflow(name="events.bad", on_event="orders", filter="data.amount >")(big_order.fn)
    with pytest.raises(UsageError, match="may name only data, topic, id and request"):
        workflow(name="events.bad", on_event="orders", filter="order.amount > 1")(big_order.fn)
    with pytest.raises(UsageError, match="topic 'no spaces' is not valid"):
        workflow(name="events.bad", on_event="no spaces")(big_order.fn)
    with pytest.raises(UsageError, match="give the topic too"):
        workflow(name="events.bad", filter="true")(big_order.fn)


def test_publishing_data_that_is_not_json_is_refused(client: durable.Client) -> None:
    with pytest.raises(UsageError, match="not JSON"):
        client.publish_json("orders", "{nope")


def test_the_api_and_a_topic_webhook_publish_list_show_and_redispatch_events(
        any_db: str) -> None:
    from fastapi.testclient import TestClient

    from durable.server.app import create_app

    client = durable.Client(any_db)
    SEEN.clear()
    try:
        with TestClient(create_app(client, workflows=[big_order]),
                        base_url="http://127.0.0.1") as http:
            wait_until(lambda: client.store.read(
                lambda tx: tx.trigger_since("events.big_order")), "the trigger to register")
            first = http.post("/api/events/orders?id=p1", json={"amount": 120})
            assert first.status_code == 201 and first.json()["created"] is True
            again = http.post("/api/events/orders", json={"amount": 1},
                              headers={"Idempotency-Key": "p1"})
            assert again.status_code == 200 and again.json()["data"] == {"amount": 120}
            hooked = http.post("/hooks/events/orders", content=b'{"amount": 200}',
                               headers={"X-GitHub-Delivery": "gh-1",
                                        "Content-Type": "text/plain"})
            assert hooked.status_code == 201 and hooked.json()["id"] == "gh-1"
            assert http.post("/api/events/orders", content=b"{nope").status_code == 400
            bad_topic = http.post("/api/events/no%20spaces", json=1)
            assert bad_topic.status_code == 400 and "not valid" in bad_topic.text
            assert http.get("/api/events/999").json()["error"]["code"] == "event_not_found"
            page = http.get("/api/events", params={"topic": "orders", "limit": 1}).json()
            assert [e["id"] for e in page["events"]] == ["gh-1"]
            assert page["next_before"] == hooked.json()["seq"]
            seq = first.json()["seq"]
            wait_until(lambda: http.get(f"/api/events/{seq}").json()["deliveries"],
                       "the first event to be dispatched")
            redone = http.post(f"/api/events/{seq}/redispatch").json()
            assert redone["generation"] == 1

            def redispatched() -> dict[str, Any] | None:
                shown: dict[str, Any] = http.get(f"/api/events/{seq}").json()
                return shown if len(shown["deliveries"]) == 2 else None
            detail = wait_until(redispatched, "the redispatch to start its run")
            runs = {d["run_id"] for d in detail["deliveries"]}
            assert len(runs) == 2 and None not in runs
            wait_until(lambda: len(_runs_of(client, "events.big_order")()) == 3)
    finally:
        client.close()


async def test_events_older_than_the_global_retention_are_swept_and_a_purge_keeps_runs(
        any_client: durable.Client) -> None:
    from durable.engine.retention import Retention

    client = any_client
    async with serving(client, big_order):
        await wait_until_async(lambda: client.store.read(
            lambda tx: tx.trigger_since("events.big_order")), "the trigger to be registered")
        old = await asyncio.to_thread(client.publish, "orders", {"amount": 500}, id="old")
        await wait_until_async(lambda: len(_runs_of(client, "events.big_order")()) == 1)
    assert client.purge_events(old.published_at) == 0  # published at, not before
    assert client.purge_events(old.published_at + 1) == 1
    assert len(_runs_of(client, "events.big_order")()) == 1  # the run it started stays
    later = old.published_at + 3600
    aged = durable.Client(client.store, clock=lambda: old.published_at)
    aged.publish("orders", 1, id="aged")
    young = durable.Client(client.store, clock=lambda: later).publish("orders", 1, id="young")
    await Retention(client.store, 1800, lambda: later).sweep()
    assert [e.id for e in client.list_events()] == [young.id]


def test_an_event_the_filter_cannot_evaluate_does_not_match() -> None:
    from durable.model.events import Event, EventFilter

    amount = EventFilter("data.amount > 100", "test")
    assert amount.matches(Event(1, "orders", "a", '{"amount": 101}', 0.0))
    assert not amount.matches(Event(2, "orders", "b", '{"total": 101}', 0.0))  # no such field
    assert not amount.matches(Event(3, "orders", "c", '"just text"', 0.0))
    assert not EventFilter("data.amount", "test").matches(  # not a bool: no match
        Event(4, "orders", "d", '{"amount": 1}', 0.0))


def test_the_cli_publishes_lists_shows_and_redispatches_and_refuses_bad_input(
        db_url: str) -> None:
    import subprocess

    from tests.kit import DURABLE

    def durable_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURABLE, *args, "--db", db_url], capture_output=True,
                              text=True, timeout=DEADLINE)
    published = durable_cli("publish", "orders", '{"amount": 120}', "--id", "c1", "--json")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["created"] is True
    again = durable_cli("publish", "orders", '{"amount": 5}', "--id", "c1")
    assert again.returncode == 0 and "nothing new started" in again.stdout
    for bad, says in [(("publish", "orders", "{nope"), "not valid JSON"),
                      (("publish", "no spaces", "1"), "is not valid"),
                      (("events", "show", "99"), "no event with number 99")]:
        refused = durable_cli(*bad)
        assert refused.returncode == 2 and says in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    (listed,) = json.loads(durable_cli("events", "ls", "--json").stdout)
    assert (listed["id"], listed["data"]) == ("c1", {"amount": 120})
    redone = json.loads(durable_cli("events", "redispatch", str(listed["seq"]), "--json").stdout)
    assert redone["generation"] == 1
    shown = json.loads(durable_cli("events", "show", str(listed["seq"]), "--json").stdout)
    assert shown["deliveries"] == [] and shown["generation"] == 1  # no worker serves it


def test_an_event_id_that_is_empty_or_unprintable_is_refused(client: durable.Client) -> None:
    for bad in ["", "a\x00b", "line\nbreak", "x" * 501]:
        with pytest.raises(UsageError, match=r"event id .* is not valid"):
            client.publish("orders", 1, id=bad)
