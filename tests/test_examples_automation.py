"""examples/automation/, end to end: the real `durable server` serving the three examples, on
both stores; events come in as their senders would send them (a GitHub delivery over HTTP,
`client.publish` for CI results and page views)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from durable.model import ExecutionStatus
from tests.kit import DEADLINE, ROOT, wait_until
from tests.serverkit import Server

EXAMPLES = ROOT / "examples" / "automation"


@pytest.fixture
def server(tmp_path: Path, any_db: str) -> Iterator[Server]:
    with Server(tmp_path, None, "--worker", str(EXAMPLES / "wait_for_ci.py"),
                "--worker", str(EXAMPLES / "counter.py"),
                app=str(EXAMPLES / "github_webhook.py"), db=any_db) as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[durable.Client]:
    c = durable.Client(server.db)
    wait_until(lambda: c.store.read(lambda tx: all(
        tx.trigger_since(name) for name in ("review_pull_request", "count_view"))),
        "the server's worker to register the triggers")
    yield c
    c.close()


def _delivery(event: str, delivery: str, action: str, base: str) -> tuple[bytes, dict[str, str]]:
    payload = {"action": action, "number": 7,
               "pull_request": {"title": "Fix the flaky login test", "base": {"ref": base}}}
    return json.dumps(payload).encode(), {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                                          "Content-Type": "application/json"}


def test_github_webhook_answers_a_pull_request_opened_on_main_and_starts_nothing_else(
        server: Server, client: durable.Client) -> None:
    with server.client() as http:
        body, headers = _delivery("pull_request", "d-1", "opened", "main")
        answer = http.post("/hooks/events/github", content=body, headers=headers)
        assert answer.status_code == 202
        assert answer.json() == {"review": "started", "pull_request": 7, "delivery": "d-1"}
        run_id = answer.headers["X-Review-Run"]
        redelivered = http.post("/hooks/events/github", content=body, headers=headers)
        assert (redelivered.status_code, redelivered.json()) == (202, answer.json())
        for event, delivery, action, base in [("push", "d-2", "opened", "main"),
                                              ("pull_request", "d-3", "closed", "main"),
                                              ("pull_request", "d-4", "opened", "dev")]:
            body, headers = _delivery(event, delivery, action, base)
            ignored = http.post("/hooks/events/github", content=body, headers=headers)
            assert ignored.status_code == 201 and ignored.json()["id"] == delivery
    assert client.result(run_id, timeout=DEADLINE) == "#7: labelled bug, tests"
    assert [r.run_id for r in client.list(workflow="review_pull_request")] == [run_id]


def test_wait_for_ci_deploys_on_its_commits_first_passing_result(
        server: Server, client: durable.Client) -> None:
    handle = client.start_by_name("deploy_when_green", json.dumps({"sha": "4f2a9c1"}),
                                  id="deploy-1")
    wait_until(lambda: any(op.name == "ci" for op in client.operations(handle.run_id)),
               "the run to subscribe")
    client.publish("ci", {"sha": "0000000", "passed": True})  # another commit's
    client.publish("ci", {"sha": "4f2a9c1", "passed": False})
    client.publish("ci", {"sha": "4f2a9c1", "passed": True})  # its rerun
    assert client.result(handle.run_id, timeout=DEADLINE) == "deployed 4f2a9c1"
    taken = [op for op in client.operations(handle.run_id) if op.sub_type == "NextEvent"]
    assert len(taken) == 2  # the failure, then the pass; the other commit's never reached it


def test_wait_for_ci_gives_up_when_no_result_comes_in_time(
        server: Server, client: durable.Client) -> None:
    handle = client.start_by_name("deploy_when_green",
                                  json.dumps({"sha": "ab12cd3", "ci_timeout": 0.1}))
    assert client.result(handle.run_id, timeout=DEADLINE) == "gave up on ab12cd3: no CI result"


def test_counter_counts_each_page_view_once_in_the_kv_store(
        server: Server, client: durable.Client) -> None:
    for view_id, page in [("v1", "home"), ("v2", "home"), ("v1", "home"), ("v3", "about")]:
        client.publish("page.views", {"page": page}, id=view_id)  # v1 twice: a retry
    client.publish("page.views", {"referrer": "nowhere"})  # the filter wants a page

    def counted() -> bool:
        runs = client.list(workflow="count_view")
        return len(runs) == 3 and all(r.status is ExecutionStatus.SUCCEEDED for r in runs)
    wait_until(counted, "the three views to be counted")
    assert client.kv.get("views/home") == 2 and client.kv.get("views/about") == 1
    assert client.kv.keys("views/") == ["views/about", "views/home"]
