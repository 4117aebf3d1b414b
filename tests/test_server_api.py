"""The control API and webhooks over a real socket: `durable server` in a subprocess serving
tests/apps/server_app.py, driven with httpx, without a token (auth is in test_server_auth.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable.model.ids import RUN_ID_PATTERN
from tests.kit import ROOT, wait_until
from tests.serverkit import DURABLE, Server

ORDER = {"order_id": "A-17", "amount": 40}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("api")) as s:
        yield s


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    code: str = body["error"]["code"]
    return code


def pending(api: httpx.Client, run_id: str, kind: str) -> dict[str, Any] | None:
    found = [p for p in api.get(f"/api/runs/{run_id}").json()["pending"] if p["kind"] == kind]
    return found[0] if found else None


def waiting_on(api: httpx.Client, run_id: str, kind: str) -> dict[str, Any]:
    """The run's pending `kind` ("signal" or "callback"), once it waits on one."""
    found: dict[str, Any] = wait_until(lambda: pending(api, run_id, kind),
                                       f"run {run_id} to wait on a {kind}", interval=0.05)
    return found


def test_start_is_idempotent_by_id(api: httpx.Client) -> None:
    first = api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": "idem-1"})
    assert first.status_code == 201 and first.json()["created"] is True
    again = api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": "idem-1"})
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["run_id"] == "idem-1" and again.json()["input"] == ORDER


def test_start_by_an_existing_id_with_another_input_is_a_409_unless_existing(
        api: httpx.Client) -> None:
    other = {**ORDER, "amount": 41}
    assert api.post("/api/runs", json={"workflow": "approval", "input": ORDER,
                                       "id": "idem-2"}).status_code == 201
    refused = api.post("/api/runs", json={"workflow": "approval", "input": other, "id": "idem-2"})
    assert refused.status_code == 409 and error_code(refused) == "run_id_taken", refused.text
    assert "another input" in refused.json()["error"]["message"]
    taken = api.post("/api/runs", json={"workflow": "approval", "input": other, "id": "idem-2",
                                        "existing": True})
    assert taken.status_code == 200 and taken.json()["input"] == ORDER


def test_input_is_checked_against_a_loaded_workflow(api: httpx.Client) -> None:
    bad = api.post("/api/runs", json={"workflow": "approval", "input": {"order_id": "x"}})
    assert bad.status_code == 400 and error_code(bad) == "bad_request"
    assert "amount" in bad.json()["error"]["message"]
    missing = api.post("/api/runs", json={"workflow": "approval"})
    assert missing.status_code == 400 and "needs input" in missing.json()["error"]["message"]


def test_a_workflow_not_loaded_is_started_with_raw_json(api: httpx.Client) -> None:
    started = api.post("/api/runs", json={"workflow": "elsewhere", "input": [1, {"a": None}]})
    assert started.status_code == 201
    run = api.get(f"/api/runs/{started.json()['run_id']}").json()["run"]
    assert run["status"] == "RUNNING" and run["input"] == [1, {"a": None}]


BAD_IDS = ["a/b", "..", "a b", "esc\x1b[2J", "nul\x00", "-rf", "", "x" * 257]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_a_run_id_outside_the_rule_is_a_400_naming_the_id_and_the_rule(
        api: httpx.Client, bad_id: str) -> None:
    started = api.post("/api/runs", json={"workflow": "echo", "input": {}, "id": bad_id})
    assert started.status_code == 400 and error_code(started) == "bad_request", started.text
    message = started.json()["error"]["message"]
    assert message.startswith(f"run id {bad_id[:80]!r}") and "a run id is 1 to 256" in message
    source = api.post("/api/runs", json={"workflow": "echo", "input": {}}).json()["run_id"]
    api.get(f"/api/runs/{source}/result", params={"wait": 20})
    rerun = api.post(f"/api/runs/{source}/rerun", json={"from_step": "sorted", "id": bad_id})
    assert rerun.status_code == 400 and "a run id is" in rerun.json()["error"]["message"]


def test_a_webhook_idempotency_key_outside_the_rule_is_a_400(api: httpx.Client) -> None:
    for key in ("a/b", "..", "a b"):
        refused = api.post("/hooks/echo", json={}, headers={"Idempotency-Key": key})
        assert refused.status_code == 400, refused.text
        assert f"run id {key!r}" in refused.json()["error"]["message"]


def test_every_character_the_rule_allows_is_reachable_over_http(api: httpx.Client) -> None:
    run_id = "Tenant_9:order-17@v2.1+eu"
    started = api.post("/api/runs", json={"workflow": "echo", "input": {}, "id": run_id})
    assert started.status_code == 201, started.text
    assert api.get(f"/api/runs/{run_id}").json()["run"]["run_id"] == run_id
    assert api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).status_code == 200
    schema = api.get("/openapi.json").json()["components"]["schemas"]["StartRequest"]
    assert schema["properties"]["id"]["pattern"] == RUN_ID_PATTERN


def test_an_id_taken_by_a_run_of_another_workflow_is_a_409(api: httpx.Client) -> None:
    assert api.post("/api/runs", json={"workflow": "approval", "input": ORDER,
                                       "id": "taken-1"}).status_code == 201
    other = api.post("/api/runs", json={"workflow": "echo", "input": {}, "id": "taken-1"})
    assert other.status_code == 409 and error_code(other) == "run_id_taken", other.text
    assert "'approval'" in other.json()["error"]["message"]
    source = api.post("/api/runs", json={"workflow": "echo", "input": {}}).json()["run_id"]
    api.get(f"/api/runs/{source}/result", params={"wait": 20})
    rerun = api.post(f"/api/runs/{source}/rerun", json={"from_step": "sorted", "id": "taken-1"})
    assert rerun.status_code == 409 and error_code(rerun) == "run_id_taken", rerun.text


@pytest.mark.parametrize("path, body", [
    ("/api/runs", '{"workflow": "echo", "input": {"a": NaN}}'),
    ("/api/runs", '{"workflow": "elsewhere", "input": [1e400]}'),
    ("/api/runs/x/signal", '{"name": "go", "payload": -Infinity}'),
    ("/api/callbacks/x/succeed", '{"payload": {"deep": [[NaN]]}}'),
    ("/api/runs/x/rerun", '{"from_step": "s", "input": Infinity}'),
    ("/hooks/echo", '{"a": NaN}'),
])
def test_numbers_json_has_no_form_for_are_refused_with_a_400(api: httpx.Client, path: str,
                                                            body: str) -> None:
    refused = api.post(path, content=body, headers={"content-type": "application/json"})
    assert refused.status_code == 400, refused.text
    assert "is not a finite number" in refused.json()["error"]["message"]


def test_a_result_holding_nan_reads_as_null_from_the_api_and_the_cli_alike(
        api: httpx.Client, server: Server) -> None:
    run_id = api.post("/api/runs", json={"workflow": "beyond_json"}).json()["run_id"]
    answered = api.get(f"/api/runs/{run_id}/result", params={"wait": 20})
    assert answered.json()["result"] == {"nan": None, "inf": None, "one": 1.5}
    printed = [subprocess.run([DURABLE, "result", run_id, *flag, "--db", server.db], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
               for flag in ([], ["--json"])]
    assert [p.returncode for p in printed] == [0, 0], printed
    assert strict_json(printed[0].stdout) == answered.json()["result"]
    assert strict_json(printed[1].stdout) == answered.json()


def strict_json(text: str) -> Any:
    """JSON as the standard has it: Python's parser would also take NaN and Infinity."""
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def test_signal_then_result_with_long_poll(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"workflow": "approval", "input": ORDER}).json()["run_id"]
    waiting = api.get(f"/api/runs/{run_id}/result", params={"wait": 0.3})
    assert waiting.status_code == 202 and waiting.json()["status"] == "RUNNING"
    waiting_on(api, run_id, "signal")
    sent = api.post(f"/api/runs/{run_id}/signal", json={"name": "approve", "payload": "ann"})
    assert sent.status_code == 202
    done = api.get(f"/api/runs/{run_id}/result", params={"wait": 20})
    assert done.status_code == 200, done.text
    assert done.json()["result"]["approved_by"] == "ann"
    detail = api.get(f"/api/runs/{run_id}").json()
    assert detail["events"] == {"stage": "done"}
    assert detail["run"]["compute_seconds"] > 0


def test_the_api_describes_a_run_exactly_as_durable_show_json_does(
        api: httpx.Client, server: Server) -> None:
    run_id = api.post("/api/runs", json={"workflow": "echo", "input": {"a": 1}}).json()["run_id"]
    assert api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).status_code == 200
    shown = subprocess.run([DURABLE, "show", run_id, "--json", "--db", server.db], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == api.get(f"/api/runs/{run_id}").json()


def test_list_filters_searches_and_pages(api: httpx.Client) -> None:
    for i in range(3):
        api.post("/api/runs", json={"workflow": "approval", "input": ORDER, "id": f"page-{i}"})
    page = api.get("/api/runs", params={"q": "PAGE-", "limit": 2}).json()
    assert [r["run_id"] for r in page["runs"]] == ["page-2", "page-1"]  # newest first
    rest = api.get("/api/runs", params={"q": "page-", "limit": 2,
                                        "offset": page["next_offset"]}).json()
    assert [r["run_id"] for r in rest["runs"]] == ["page-0"] and rest["next_offset"] is None
    running = api.get("/api/runs", params={"status": "RUNNING", "workflow": "approval"}).json()
    assert running["runs"] and {r["status"] for r in running["runs"]} == {"RUNNING"}
    assert api.get("/api/runs", params={"status": "NOPE"}).status_code == 400


def test_history_is_paged(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"workflow": "approval", "input": ORDER}).json()["run_id"]
    waiting_on(api, run_id, "signal")
    events, after = [], 0
    while after is not None:
        page = api.get(f"/api/runs/{run_id}/history", params={"after": after, "limit": 2}).json()
        assert len(page["events"]) <= 2
        events += page["events"]
        after = page["next_after"]
    assert events == api.get(f"/api/runs/{run_id}").json()["history"]
    assert events[0]["type"] == "ExecutionStarted"


def test_callbacks_heartbeat_succeed_and_unknown_ids(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"workflow": "pipeline", "input": "s3"}).json()["run_id"]
    callback = waiting_on(api, run_id, "callback")
    callback_id = callback["callback_id"]
    assert len(callback_id) >= 22  # >= 128 random bits, URL-safe
    beat = api.post(f"/api/callbacks/{callback_id}/heartbeat")
    assert beat.status_code == 200
    history = api.get(f"/api/runs/{run_id}").json()["history"]
    assert any(e["type"] == "CallbackHeartbeat" for e in history)
    ok = api.post(f"/api/callbacks/{callback_id}/succeed", json={"payload": {"ok": True}})
    assert ok.status_code == 200
    result = api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).json()
    assert result["status"] == "SUCCEEDED" and result["result"]["review"] == {"ok": True}
    assert result["result"]["data"] == "data from s3"
    again = api.post(f"/api/callbacks/{callback_id}/succeed", json={})
    assert again.status_code == 404 and error_code(again) == "callback_not_found"
    assert api.post("/api/callbacks/nope/heartbeat").status_code == 404


def test_callback_failure_fails_the_wait(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"workflow": "pipeline", "input": "ftp"}).json()["run_id"]
    callback_id = waiting_on(api, run_id, "callback")["callback_id"]
    failed = api.post(f"/api/callbacks/{callback_id}/fail",
                      json={"message": "rejected by reviewer", "type": "Rejected"})
    assert failed.status_code == 200
    result = api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).json()
    assert result["status"] == "FAILED" and "rejected by reviewer" in result["error"]["message"]


def test_cancel_and_rerun_from_a_step(api: httpx.Client) -> None:
    run_id = api.post("/api/runs", json={"workflow": "approval", "input": ORDER}).json()["run_id"]
    waiting_on(api, run_id, "signal")
    cancelled = api.post(f"/api/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
    final = api.get(f"/api/runs/{run_id}/result", params={"wait": 20}).json()
    assert final["status"] == "STOPPED"
    rerun = api.post(f"/api/runs/{run_id}/rerun",
                     json={"from_step": "approve", "input": {"order_id": "B-2", "amount": 1}})
    assert rerun.status_code == 201, rerun.text
    assert rerun.json()["input"] == {"order_id": "B-2", "amount": 1}
    unknown = api.post(f"/api/runs/{run_id}/rerun", json={"from_step": "nope"})
    assert unknown.status_code == 400 and "reserve" in unknown.json()["error"]["message"]


def test_webhook_returns_the_result_when_it_finishes_in_time(api: httpx.Client) -> None:
    done = api.post("/hooks/echo", params={"wait": "true"}, json={"b": 1, "a": 2})
    assert done.status_code == 200, done.text
    assert done.json()["result"] == {"received": {"b": 1, "a": 2}, "keys": ["a", "b"]}
    keyed = [api.post("/hooks/echo", json={"x": 1}, headers={"Idempotency-Key": "hook-7"})
             for _ in range(2)]
    assert [r.status_code for r in keyed] == [202, 202]
    assert [r.json()["created"] for r in keyed] == [True, False]
    assert {r.json()["run_id"] for r in keyed} == {"hook-7"}


def test_webhook_answers_202_when_the_run_outlasts_the_request(api: httpx.Client) -> None:
    late = api.post("/hooks/slow_hook", params={"wait": "true", "timeout": 0.5})
    assert late.status_code == 202 and late.json()["status"] == "RUNNING"
    assert api.get(f"/api/runs/{late.json()['run_id']}").status_code == 200


def test_webhook_reads_any_content_type_as_json(api: httpx.Client) -> None:
    form = api.post("/hooks/echo", params={"wait": "true"}, content=b'{"ref": "main"}',
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 200 and form.json()["result"]["received"] == {"ref": "main"}
    bad = api.post("/hooks/echo", content=b"\xff{", headers={"content-type": "text/plain"})
    assert bad.status_code == 400 and error_code(bad) == "invalid_json"
    empty = api.post("/hooks/echo")
    assert empty.status_code == 400 and "needs input" in empty.json()["error"]["message"]


def test_only_webhook_workflows_have_hooks(api: httpx.Client) -> None:
    missing = api.post("/hooks/approval", json=ORDER)
    assert missing.status_code == 404 and error_code(missing) == "no_such_webhook"
    assert "echo" in missing.json()["error"]["message"]


@pytest.mark.parametrize("method, path, kwargs", [
    ("POST", "/api/runs", {"content": b"{not json", "headers": {"content-type":
                                                                 "application/json"}}),
    ("POST", "/api/runs", {"json": {"workflow": ""}}),
    ("POST", "/api/runs/x/signal", {"json": {"payload": 1}}),
    ("GET", "/api/runs", {"params": {"limit": "-1"}}),
    ("GET", "/api/runs/missing", {}),
    ("GET", "/api/runs/missing/result", {"params": {"wait": "abc"}}),
    ("POST", "/api/runs/missing/cancel", {}),
    ("GET", "/nowhere", {}),
])
def test_malformed_input_is_a_json_4xx(api: httpx.Client, method: str, path: str,
                                       kwargs: dict[str, Any]) -> None:
    response = api.request(method, path, **kwargs)
    assert 400 <= response.status_code < 500, response.text
    error_code(response)


def test_openapi_schema_documents_the_api(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    assert {"/api/runs", "/api/runs/{run_id}/result", "/hooks/{workflow}",
            "/api/callbacks/{callback_id}/heartbeat"} <= set(schema["paths"])
    assert api.get("/api/workflows").json()[1]["webhook"] is True


def test_ui_pages_render(api: httpx.Client, tmp_path: Path) -> None:
    run_id = api.post("/api/runs", json={"workflow": "pipeline", "input": "ui"}).json()["run_id"]
    waiting_on(api, run_id, "callback")
    page = api.get(f"/runs/{run_id}")
    assert page.status_code == 200 and "flaky_fetch" in page.text
    assert "<svg" in api.get(f"/ui/runs/{run_id}/gantt").text  # the timeline, drawn after
    assert run_id in api.get("/", params={"q": run_id}).text
    assert api.get("/runs/nope").status_code == 404
