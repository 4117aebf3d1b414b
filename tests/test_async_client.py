"""`AsyncClient`, decoded results, `events` and `pending_callbacks`, on both stores, through
both clients and the HTTP API (the real server app, in process)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

import durable
from durable import AsyncClient, Context, ExecutionStatus, workflow
from durable.errors import RunNotFound
from durable.server.app import create_app
from tests.kit import wait_until


@dataclass
class Parcel:
    weight: int
    label: str


@workflow
async def approved(ctx: Context, parcel: Parcel) -> Parcel:
    ctx.set_event("stage", "awaiting approval")
    ctx.set_event("weight", parcel.weight)
    verdict = await ctx.wait_for_callback(lambda callback_id: None, name="approval")
    ctx.set_event("stage", "approved")
    return Parcel(parcel.weight, f"{parcel.label} ({verdict['by']})")


@pytest.fixture
def client(any_db: str) -> Iterator[durable.Client]:
    with closing(durable.Client(any_db)) as c:
        yield c


async def test_the_async_client_has_every_method_of_the_client_as_a_coroutine(
        db_url: str) -> None:
    methods = {name for name, value in vars(durable.Client).items()
               if inspect.isfunction(value) and not name.startswith("_")}
    async with AsyncClient(db_url) as client:
        awaited = {name for name in dir(client) if not name.startswith("_")
                   and inspect.iscoroutinefunction(getattr(client, name))}
        # A stream is iterated, not awaited: `async for entry in client.stream(...)`.
        assert not inspect.iscoroutinefunction(client.stream)
    assert awaited == {name for name in methods if not name.endswith("_async")} - {"stream"}


async def test_awaiting_a_result_leaves_the_loop_to_the_worker_that_ends_the_run(
        any_db: str) -> None:
    async with AsyncClient(any_db) as client:
        worker = durable.Worker([approved], client.store)
        serving = asyncio.create_task(worker.run_async())
        try:
            handle = await client.start(approved, Parcel(3, "box"), id="parcel-1")
            result = asyncio.create_task(handle.result(timeout=30))

            async def one_pending() -> list[str]:
                while not (ids := await client.pending_callbacks(handle.run_id)):
                    await client.wait_ended(handle.run_id, timeout=0.05)
                return ids
            [callback_id] = await asyncio.wait_for(one_pending(), 30)
            assert not result.done()
            assert await client.events(handle.run_id) == {"stage": "awaiting approval",
                                                          "weight": 3}
            await client.complete_callback(callback_id, {"by": "ada"})
            assert await result == Parcel(3, "box (ada)")
        finally:
            worker.stop()
            await serving
        assert await client.pending_callbacks(handle.run_id) == []
        run = await client.get(handle.run_id)
        assert run.status is ExecutionStatus.SUCCEEDED
        assert run.result_value == {"weight": 3, "label": "box (ada)"}
        assert (await client.handle("parcel-1")).workflow is approved
        assert await client.result("parcel-1") == Parcel(3, "box (ada)")
        assert [r.run_id for r in await client.list(status="SUCCEEDED")] == ["parcel-1"]
        with pytest.raises(RunNotFound):
            await client.events("nobody")


def test_the_sync_client_reads_the_same_events_callbacks_and_decoded_result(
        client: durable.Client) -> None:
    handle = client.start(approved, Parcel(7, "crate"))
    assert client.events(handle.run_id) == {}
    assert client.pending_callbacks(handle.run_id) == []
    assert client.get(handle.run_id).result_value is None
    with pytest.raises(RunNotFound):
        client.pending_callbacks("nobody")


@pytest.fixture
def api(client: durable.Client) -> Iterator[httpx.Client]:
    with TestClient(create_app(client, workflows=[approved]),
                    base_url="http://127.0.0.1") as http:
        yield http


def test_the_api_lists_a_runs_events_and_pending_callbacks_and_documents_them(
        api: httpx.Client, client: durable.Client) -> None:
    started = api.post("/api/runs", json={"workflow": "approved", "id": "via-api",
                                          "input": {"weight": 2, "label": "bag"}})
    assert started.status_code == 201, started.text

    def callbacks() -> list[str]:
        answer = api.get("/api/runs/via-api/pending-callbacks")
        assert answer.status_code == 200, answer.text
        ids: list[str] = answer.json()["callback_ids"]
        return ids
    [callback_id] = wait_until(callbacks, "the run to wait on its approval", interval=0.02)
    assert api.get("/api/runs/via-api/events").json() == {
        "events": {"stage": "awaiting approval", "weight": 2}}
    assert api.post(f"/api/callbacks/{callback_id}/succeed",
                    json={"payload": {"by": "bo"}}).status_code == 200
    client.wait("via-api", timeout=30)
    assert api.get("/api/runs/via-api/events").json()["events"]["stage"] == "approved"
    assert callbacks() == []
    for route in ("events", "pending-callbacks"):
        missing = api.get(f"/api/runs/nobody/{route}")
        assert missing.status_code == 404 and "nobody" in missing.json()["error"]["message"]
    paths = api.get("/openapi.json").json()["paths"]
    assert "/api/runs/{run_id}/events" in paths
    assert "/api/runs/{run_id}/pending-callbacks" in paths
