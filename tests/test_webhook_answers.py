"""Synchronous webhook answers: a trigger declared with `respond=` answers the request that
posted its event, with `ctx.respond` or its result, on both stores."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import durable
from durable import Context, WebhookRequest, workflow
from durable.errors import UsageError
from tests.kit import DEADLINE, DURABLE, wait_until


@workflow(name="hooked.review", on_event="gh", respond=DEADLINE,
          filter='request.headers["x-github-event"] == "pull_request"')
async def review(ctx: Context, request: WebhookRequest) -> str:
    await ctx.respond(201, headers={"X-Run": ctx.run_id},
                      body={"seen": request.body["action"], "path": request.path,
                            "query": request.query, "auth": "authorization" in request.headers})
    await ctx.wait_for_signal("finish", timeout=DEADLINE)  # carries on after answering
    return "reviewed"


@workflow(name="hooked.sum", on_event="sums", respond=True)
async def summed(ctx: Context, event: dict[str, Any]) -> dict[str, int]:
    total = await ctx.step(sum, event["data"]["numbers"], name="add")
    return {"total": total}


@workflow(name="hooked.slow", on_event="slow", respond=timedelta(seconds=0.2))
async def slow(ctx: Context) -> str:
    await ctx.wait_for_signal("go", timeout=DEADLINE)
    await ctx.respond(body="late but recorded")
    return "done"


@workflow(name="hooked.twice", on_event="twice", respond=DEADLINE)
async def twice(ctx: Context) -> str:
    await ctx.respond(body="first")
    await ctx.respond(body="second")
    return "never"


@pytest.fixture
def http(any_db: str) -> Iterator[tuple[Any, durable.Client]]:
    from fastapi.testclient import TestClient

    from durable.server.app import create_app

    client = durable.Client(any_db)
    try:
        with TestClient(create_app(client, workflows=[review, summed, slow, twice]),
                        base_url="http://127.0.0.1") as session:
            names = [w.name for w in (review, summed, slow, twice)]
            wait_until(lambda: client.store.read(
                lambda tx: all(tx.trigger_since(name) for name in names)),
                "the triggers to register")
            yield session, client
    finally:
        client.close()


def test_a_run_answers_with_ctx_respond_then_carries_on_and_a_retry_gets_the_same_answer(
        http: tuple[Any, durable.Client]) -> None:
    session, client = http
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1",
               "Authorization": "Bearer not-for-the-workflow"}
    answer = session.post("/hooks/events/gh?x=1", json={"action": "opened"}, headers=headers)
    assert answer.status_code == 201
    assert answer.json() == {"seen": "opened", "path": "/hooks/events/gh",
                             "query": {"x": "1"}, "auth": False}
    run_id = answer.headers["X-Run"]
    assert client.get(run_id).status.live  # answered, and still going
    (event,) = session.get("/api/events", params={"topic": "gh"}).json()["events"]
    assert (event["request"]["method"], event["request"]["query"]) == ("POST", {"x": "1"})
    assert event["request"]["headers"]["x-github-event"] == "pull_request"
    assert "authorization" not in event["request"]["headers"]  # the caller's, not stored
    again = session.post("/hooks/events/gh?x=1", json={"action": "closed"}, headers=headers)
    assert (again.status_code, again.json(), again.headers["X-Run"]) == (
        201, answer.json(), run_id)
    client.signal(run_id, "finish")
    assert client.result(run_id, timeout=DEADLINE) == "reviewed"
    assert [r.run_id for r in client.list(workflow="hooked.review")] == [run_id]


def test_a_run_that_never_responds_answers_with_its_result_at_its_end(
        http: tuple[Any, durable.Client]) -> None:
    session, _ = http
    answer = session.post("/hooks/events/sums", json={"numbers": [1, 2, 3]})
    assert (answer.status_code, answer.json()) == (200, {"total": 6})


def test_a_run_not_answering_in_time_gets_202_with_its_id_and_answers_a_retry_later(
        http: tuple[Any, durable.Client]) -> None:
    session, client = http
    pending = session.post("/hooks/events/slow", json={}, headers={"Idempotency-Key": "s-1"})
    assert pending.status_code == 202
    run_id = pending.json()["run_id"]
    assert pending.headers["Location"] == f"/api/runs/{run_id}"
    assert session.get(pending.headers["Location"]).status_code == 200
    wait_until(lambda: client.store.read(lambda tx: tx.get_run(run_id)), "the run to start")
    client.signal(run_id, "go")
    assert client.result(run_id, timeout=DEADLINE) == "done"
    retried = session.post("/hooks/events/slow", json={}, headers={"Idempotency-Key": "s-1"})
    assert (retried.status_code, retried.text) == (200, "late but recorded")
    assert retried.headers["content-type"].startswith("text/plain")


def test_an_event_the_answering_filter_refuses_starts_nothing_and_gets_the_publish_answer(
        http: tuple[Any, durable.Client], any_db: str) -> None:
    session, client = http
    answer = session.post("/hooks/events/gh", json={"action": "opened"},
                          headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-2"})
    assert answer.status_code == 201
    assert answer.json()["id"] == "d-2" and answer.json()["created"] is True
    (event,) = [e for e in client.list_events("gh") if e.id == "d-2"]
    wait_until(lambda: client.event(event.seq)[1], "the trigger to dispatch the event")
    assert [d.run_id for d in client.event(event.seq)[1]] == [None]
    assert client.list(workflow="hooked.review") == []
    shown = subprocess.run([DURABLE, "events", "show", str(event.seq), "--db", any_db],
                           capture_output=True, text=True, timeout=DEADLINE)
    assert "posted by a webhook: POST /hooks/events/gh" in shown.stdout, shown.stderr
    assert "filtered out" in shown.stdout


def test_a_second_ctx_respond_fails_the_run_and_the_request_keeps_the_first_answer(
        http: tuple[Any, durable.Client]) -> None:
    session, client = http
    answer = session.post("/hooks/events/twice", headers={"Idempotency-Key": "t-1"})
    assert (answer.status_code, answer.text) == (200, "first")
    (run,) = client.list(workflow="hooked.twice")
    ended = client.wait_ended(run.run_id, timeout=DEADLINE)
    assert ended.error is not None and "ctx.respond was called twice" in ended.error.message
    retried = session.post("/hooks/events/twice", headers={"Idempotency-Key": "t-1"})
    assert (retried.status_code, retried.text) == (200, "first")


def test_respond_without_a_trigger_a_bad_wait_or_two_answering_triggers_are_refused(
        any_db: str) -> None:
    with pytest.raises(UsageError, match="respond= applies to a trigger"):
        workflow(name="x", respond=True)(summed.fn)
    with pytest.raises(UsageError, match="respond=0 is not valid"):
        workflow(name="x", on_event="t", respond=0)(summed.fn)
    rival = workflow(name="hooked.rival", on_event="sums", respond=True)(summed.fn)
    with pytest.raises(UsageError, match="both answer the webhook requests of topic 'sums'"):
        durable.Worker([summed, rival], any_db)


def test_ctx_respond_refuses_a_status_headers_or_body_it_cannot_send() -> None:
    from durable.model.events import WebhookResponse

    with pytest.raises(UsageError, match="status 99 is not valid"):
        WebhookResponse(99)
    with pytest.raises(UsageError, match="headers"):
        WebhookResponse(200, {"X": 1})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="body is not JSON"):
        WebhookResponse(200, {}, object()).to_json()
