"""The stream routes of a real `durable server` (uvicorn, a real socket): the list of a run's
streams, and Server-Sent Events that follow one live across a wait, resume from `Last-Event-ID`,
sit behind the API's auth, and are described in the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.kit import wait_until
from tests.serverkit import Server, sse_events

TOKEN = "stream-secret-token-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("streams"), TOKEN) as s:
        yield s


def test_an_event_stream_follows_live_and_resumes_from_last_event_id(server: Server) -> None:
    with server.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "chatter", "input": 3}).json()["run_id"]
        got: list[dict[str, str]] = []
        with api.stream("GET", f"/api/runs/{run_id}/streams/tokens") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            received = sse_events(response.iter_lines())
            got += [next(received) for _ in range(3)]  # the step's tokens, before the signal
            api.post(f"/api/runs/{run_id}/signal", json={"name": "more", "payload": {"last": True}})
            got += list(received)
        assert [e["event"] for e in got] == ["value"] * 4 + ["closed", "end"]
        assert [e.get("id") for e in got] == ["1", "2", "3", "4", "5", None]
        data = [json.loads(e["data"]) for e in got[:5]]
        assert [d["value"] for d in data] == ["w0", "w1", "w2", {"last": True}, None]
        assert data[0]["attempt"] == 1 and data[0]["attempt_key"] and data[3]["attempt"] is None

        with api.stream("GET", f"/api/runs/{run_id}/streams/tokens",
                        headers={"Last-Event-ID": "3"}) as response:
            resumed = list(sse_events(response.iter_lines()))
        assert [e.get("id") for e in resumed] == ["4", "5", None]

        listed = api.get(f"/api/runs/{run_id}/streams").json()
        assert listed == {"streams": [{"name": "tokens", "last_offset": 5, "closed": True}]}


def test_stream_routes_refuse_bad_input_and_missing_auth(server: Server) -> None:
    with server.client() as api:
        assert api.get("/api/runs/nope/streams/tokens").status_code == 404
        assert api.get("/api/runs/nope/streams").status_code == 404
        assert api.get("/api/runs/x/streams/t", params={"after": -1}).status_code in (400, 422)
        bad = api.get("/api/runs/x/streams/t", headers={"Last-Event-ID": "seven"})
        assert bad.status_code in (400, 422) and "error" in bad.json()
    anonymous = httpx.get(f"{server.url}/api/runs/x/streams/t", timeout=30)
    assert anonymous.status_code == 401


def test_the_stream_routes_are_in_the_openapi_document(server: Server) -> None:
    with server.client() as api:
        paths = api.get("/openapi.json").json()["paths"]
    sse = paths["/api/runs/{run_id}/streams/{name}"]["get"]
    assert "text/event-stream" in sse["responses"]["200"]["content"]
    assert {p["name"] for p in sse["parameters"]} >= {"after", "Last-Event-ID", "follow"}
    assert "/api/runs/{run_id}/streams" in paths


def test_a_run_ending_ends_its_event_streams(server: Server, tmp_path: Path) -> None:
    with server.client() as api:
        run_id = api.post("/api/runs", json={"workflow": "chatter", "input": 1}).json()["run_id"]
        wait_until(lambda: api.get(f"/api/runs/{run_id}/streams").json()["streams"])
        api.post(f"/api/runs/{run_id}/cancel")
        with api.stream("GET", f"/api/runs/{run_id}/streams/tokens",
                        params={"follow": "true"}) as response:
            got = list(sse_events(response.iter_lines()))
    assert [e["event"] for e in got] == ["value", "end"]
