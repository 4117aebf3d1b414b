"""examples/agents/, run with fake models and no network: the pydantic-ai research agent (a
FunctionModel script) and the framework-free support loop (the real OpenAI SDK, its HTTP
answered by a fake OpenAI server through httpx2's MockTransport)."""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

import durable
from durable.integrations.llm import Budget, Prices, Usage, call_tool, transient
from durable.model import OperationStatus, OperationType
from durable.model.streams import StreamKind
from durable.testing import TestEnvironment
from tests.apps import support_app
from tests.apps.serverless_kit import start_server
from tests.kit import DEADLINE, ROOT, Procs, load_module, wait_until
from tests.serverkit import sse_events
from tests.streamkit import Follower

AGENTS = ROOT / "examples" / "agents"


def load(name: str) -> ModuleType:
    return load_module(AGENTS / f"{name}.py", f"examples_agents_{name}")


research = load("research")
support = support_app.example


def progress_line(data: dict[str, Any]) -> str:
    """A research progress entry, short: a tool call (`tool NAME`) or a read (`reading TOPIC`)."""
    return f"tool {data['tool']}" if "tool" in data else f"reading {data['reading']}"


async def test_the_research_agent_publishes_only_after_the_editor_approves(
        any_db: str) -> None:
    research.newsroom.published.clear()
    async with TestEnvironment(research.research, db=any_db) as env:
        handle = env.start(research.research, "tides", id="research-1")
        await env.settle()
        (callback_id,) = env.pending_callbacks(handle.run_id)
        assert research.newsroom.published == []
        (request,) = [op for op in env.operations(handle.run_id)
                      if op.name == "research__model.request_stream" and op.result
                      and "publish" in op.result]
        parts = json.loads(request.result or "")["parts"]
        call_id = next(p["tool_call_id"] for p in parts if p["part_kind"] == "tool-call")
        env.complete_callback(callback_id, {"approvals": {call_id: True}})
        output = await env.result(handle)
        progress = [line.message for _, line in env.client.logs(handle.run_id)]
        streamed = [progress_line(entry.data) for entry
                    in env.client.stream(handle.run_id, "progress", follow=False)]
    assert output.startswith("Done: published")
    assert streamed == ["tool search", "tool read", "reading tides", "tool publish"]
    # reported from inside the agent's steps, each once however often the run replayed
    assert [line.split("(")[0] for line in progress] == [
        "calling search", "calling read", "calling publish"]
    assert research.newsroom.published == ["Tides are raised by the moon's and the sun's gravity."]


class SseReader:
    """Follows a run's stream over the server's SSE route on a thread, as a browser would: what
    it received, each event's id and data; it reconnects from the last id it saw."""

    def __init__(self, api: httpx.Client, run_id: str, name: str) -> None:
        self.api, self.path = api, f"/api/runs/{run_id}/streams/{name}"
        self.events: list[dict[str, str]] = []
        self.connections = 0
        self._thread: threading.Thread | None = None

    def read(self, until: int | None = None) -> None:
        """Connect (after the last id seen, if any) and read: until `until` events in all,
        then drop the connection; else to the stream's end."""
        last = next((e["id"] for e in reversed(self.events) if "id" in e), None)
        headers = {"Last-Event-ID": last} if last is not None else {}
        self.connections += 1
        with self.api.stream("GET", self.path, headers=headers, timeout=DEADLINE) as response:
            assert response.status_code == 200, response.read()
            for event in sse_events(response.iter_lines()):
                self.events.append(event)
                if len(self.events) == until:
                    return

    def read_to_end_in_background(self) -> None:
        self._thread = threading.Thread(target=self.read, daemon=True)
        self._thread.start()

    def join(self) -> list[dict[str, str]]:
        assert self._thread is not None
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), f"still reading after {DEADLINE}s: {self.events}"
        return self.events


def progress_data(entries: list[Any]) -> list[str]:
    return [progress_line(e.data) if e.kind is StreamKind.VALUE else str(e.kind)
            for e in entries]


@pytest.mark.crash
def test_the_research_agent_streams_progress_across_killed_workers_and_waits_for_approval(
        any_db: str, tmp_path: Path) -> None:
    """The issue's "done when": the pydantic-ai research agent, served by real `durable worker`
    processes, is SIGKILLed mid tool call and again while it waits for its approval; its
    progress reaches a `Client.stream` follower and an SSE reader that reconnects with
    Last-Event-ID, each entry once and in order; the approval, answered over the HTTP API with
    no worker running, resumes it; no model request or completed tool call runs twice."""
    effects, hold = tmp_path / "effects.txt", tmp_path / "hold"
    effects.touch()
    hold.touch()
    env = {**os.environ, "AGENT_EFFECTS": str(effects), "AGENT_HOLD": str(hold)}
    client = durable.Client(any_db)
    server = start_server(tmp_path, any_db)

    def worker() -> Any:
        return procs.start(sys.executable, "-m", "durable.cli", "worker",
                           "tests/apps/research_app.py:research", "--db", any_db,
                           "--lease", "1", env=env, name="worker")

    def ran() -> Counter[str]:
        return Counter(effects.read_text().splitlines())

    try:
        with Procs(tmp_path) as procs, httpx.Client(base_url=server.url, timeout=30) as api:
            first = worker()
            run_id = client.start_by_name("research", json.dumps("tides"), "research-k").run_id
            follower = Follower(any_db, run_id, "progress")
            sse = SseReader(api, run_id, "progress")
            sse.read(until=2)  # then the connection drops, before the kill
            wait_until(lambda: ran()["read tides"] == 1 and len(follower.entries) == 3,
                       lambda: f"`read` to be mid-body: {ran()}, {follower.entries}")
            first.kill()  # mid tool call: its attempt's progress is abandoned

            hold.unlink()
            second = worker()
            callback_id = wait_until(lambda: next(iter(api.get(
                f"/api/runs/{run_id}/pending-callbacks").json()["callback_ids"]), None),
                "the approval to wait")
            second.kill()  # the approval waits with no worker at all
            sse.read_to_end_in_background()  # reconnects with Last-Event-ID: 2

            (request,) = [op for op in client.operations(run_id)
                          if op.name == "research__model.request_stream" and op.result
                          and "publish" in op.result]
            call_id = next(p["tool_call_id"] for p in json.loads(request.result or "")["parts"]
                           if p["part_kind"] == "tool-call")
            answered = api.post(f"/api/callbacks/{callback_id}/succeed",
                                json={"payload": {"approvals": {call_id: True}}})
            assert answered.status_code == 200, answered.text
            worker()
            output = client.result(run_id, timeout=DEADLINE)
            seen, over_sse = follower.join(), sse.join()
    finally:
        server.stop()
    later = list(client.stream(run_id, "progress", follow=False))
    client.close()

    assert output.startswith("Done: published")
    assert ran() == Counter({"model 1": 1, "search tides": 1, "model 2": 1,
                             "read tides": 2,  # the call killed mid-body, then its retry
                             "model 3": 1, "model 4": 1, "publish": 1})
    assert progress_data(seen) == ["tool search", "tool read", "reading tides", "abandoned",
                                   "reading tides", "tool publish"]
    assert [e.offset for e in seen] == list(range(1, len(seen) + 1))
    killed, marker = seen[2], seen[3]
    assert killed.attempt_key == marker.attempt_key != seen[4].attempt_key
    # A reader coming later is not shown the killed attempt's value, only its marker.
    assert later == [e for e in seen if e is not killed]
    # Over SSE: two entries, the drop, then from Last-Event-ID 2 on what a later reader
    # gets (the kill had voided the value at 3 meanwhile): each once, in order, then the end.
    assert sse.connections == 2
    assert [e.get("id") for e in over_sse] == [str(e.offset) for e in later] + [None]
    assert [json.loads(e["data"])["value"] for e in over_sse[:-1]] == [e.data for e in later]
    assert over_sse[-1]["event"] == "end"


# -- the framework-free loop ---------------------------------------------------------------

class RateLimitedOnce:
    """The fake OpenAI of tests/apps/support_app.py, behind one 429 first."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path.endswith("/chat/completions")
        body = json.loads(request.content)
        self.requests.append(body)
        if len(self.requests) == 1:
            return httpx2.Response(429, json={"error": {"message": "slow down"}})
        return httpx2.Response(200, json=support_app.completion(support_app.answer(body)))


@pytest.fixture
def fake_openai() -> Iterator[RateLimitedOnce]:
    fake = RateLimitedOnce()
    support_app.install(httpx2.MockTransport(fake))
    yield fake
    support_app.install(httpx2.MockTransport(support_app.fake_openai))


@pytest.mark.parametrize("approve", [True, False])
async def test_the_support_loop_refunds_after_approval_and_records_its_spend(
        any_db: str, fake_openai: RateLimitedOnce, approve: bool) -> None:
    async with TestEnvironment(support.support, db=any_db) as env:
        handle = env.start(support.support, "order 17 arrived broken", id="support-1")
        await env.run_until(lambda: bool(env.pending_callbacks("support-1")), "support-1")
        (callback_id,) = env.pending_callbacks(handle.run_id)
        steps = [op.name for op in env.operations(handle.run_id)
                 if op.type is OperationType.STEP and op.name and op.name.startswith("tool.")]
        assert steps == ["tool.order_status"]  # the refund waits for the decision
        env.complete_callback(callback_id, {"approved": approve})
        output = await env.result(handle)
        steps = [op.name for op in env.operations(handle.run_id)
                 if op.type is OperationType.STEP and op.name and op.name.startswith("tool.")]
        (chat,) = {op.attempt for op in env.operations(handle.run_id)
                   if op.name == "llm.chat" and op.attempt > 1}
        attrs = {a.key: a.value for a in env.client.runs().attributes["support-1"]}
    assert output == ("Refunded 42." if approve else "The refund was not approved.")
    assert steps == (["tool.order_status", "tool.refund"] if approve else ["tool.order_status"])
    assert chat == 2  # the 429 was retried, in the step of the first call
    assert len(fake_openai.requests) == 4  # a 429 and three answers: no replay asked again
    assert attrs == {"llm.input_tokens": 300, "llm.output_tokens": 60,
                     "llm.cost_usd": pytest.approx((300 * 0.15 + 60 * 0.60) / 1e6)}


@durable.workflow
async def spend(ctx: durable.Context, calls: int) -> int:
    budget = Budget(max_tokens=250, prices=Prices(input=1.0, output=2.0))
    for _ in range(calls):
        usage = await ctx.step(lambda: {"prompt_tokens": 100, "completion_tokens": 20},
                               name="llm.chat")
        budget.charge(ctx, Usage.from_openai(usage))
    return budget.tokens


async def test_a_budget_fails_the_run_at_the_call_that_passes_it(db_url: str) -> None:
    async with TestEnvironment(spend, db=db_url) as env:
        assert await env.run(spend, 2, id="within") == 240
        with pytest.raises(durable.WorkflowFailed, match="360 tokens spent, over the budget"):
            await env.run(spend, 5, id="over")
        attrs = env.client.runs().attributes
    assert {a.key: a.value for a in attrs["over"]}["llm.input_tokens"] == 300
    # 200 tokens in at $1 and 40 out at $2 a million
    assert {a.key: a.value for a in attrs["within"]}["llm.cost_usd"] == pytest.approx(280e-6)


@pytest.mark.parametrize(("status", "retried"), [(429, True), (500, True), (503, True),
                                                 (408, True), (400, False), (401, False),
                                                 (None, True)])
def test_only_transient_model_errors_are_retried(status: int | None, retried: bool) -> None:
    error = Exception("boom")
    if status is not None:
        error.status_code = status  # type: ignore[attr-defined]
    assert transient(error) is retried


async def test_a_tool_the_model_made_up_is_answered_not_raised() -> None:
    ctx: Any = object()  # never reached: nothing runs for a tool that does not exist
    assert "no tool 'nope'" in (await call_tool(ctx, {"a": dict}, "nope", "{}"))["error"]
    assert "not JSON" in (await call_tool(ctx, {"a": dict}, "a", "{oops"))["error"]
    assert "JSON object" in (await call_tool(ctx, {"a": dict}, "a", "[1]"))["error"]


@pytest.mark.crash
def test_a_killed_worker_resumes_the_support_loop_without_repeating_a_model_or_tool_call(
        any_db: str, tmp_path: Path) -> None:
    effects, hold = tmp_path / "effects.txt", tmp_path / "hold"
    effects.touch()
    hold.touch()
    env = {**os.environ, "AGENT_EFFECTS": str(effects), "AGENT_HOLD": str(hold)}

    def worker() -> Any:
        return procs.start(sys.executable, "-m", "durable.cli", "worker",
                           "tests/apps/support_app.py:support", "--db", any_db, "--lease", "1",
                           env=env)

    def lines() -> Counter[str]:
        return Counter(effects.read_text().splitlines())

    client = durable.Client(any_db)
    with Procs(tmp_path) as procs:
        first = worker()
        client.start(support.support, "order 17 arrived broken", id="support-k")
        # The first model call and the order lookup are checkpointed; the second call is out.
        wait_until(lambda: lines()["request 1"] == 1, "the second model call")
        first.kill()
        hold.unlink()
        worker()
        callback_id = wait_until(lambda: next(
            (op.callback_id for op in client.operations("support-k")
             if op.callback_id and op.status is OperationStatus.STARTED), None),
            "the refund's approval")
        client.complete_callback(callback_id, {"approved": True})
        assert client.result("support-k", timeout=30) == "Refunded 42."
    client.close()
    assert lines() == Counter({"request 0": 1, "tool order_status": 1,
                               "request 1": 2,  # the call in flight when killed, made again
                               "request 2": 1, "tool refund": 1})
