"""examples/agents/, run with fake models and no network: the pydantic-ai research agent (a
FunctionModel script) and the framework-free support loop (the real OpenAI SDK, its HTTP
answered by a fake OpenAI server through httpx2's MockTransport)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx2
import pytest

import durable
from durable.integrations.llm import Budget, Prices, Usage, call_tool, transient
from durable.model import OperationStatus, OperationType
from durable.testing import TestEnvironment
from tests.apps import support_app
from tests.kit import ROOT, Procs, wait_until

AGENTS = ROOT / "examples" / "agents"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_agents_{name}", AGENTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


research = load("research")
support = support_app.example


async def test_the_research_agent_publishes_only_after_the_editor_approves(
        any_db: str) -> None:
    research.published.clear()
    async with TestEnvironment(research.research, db=any_db) as env:
        handle = env.start(research.research, "tides", id="research-1")
        await env.settle()
        (callback_id,) = env.pending_callbacks(handle.run_id)
        assert research.published == []
        (request,) = [op for op in env.operations(handle.run_id)
                      if op.name == "research__model.request_stream" and op.result
                      and "publish" in op.result]
        parts = json.loads(request.result or "")["parts"]
        call_id = next(p["tool_call_id"] for p in parts if p["part_kind"] == "tool-call")
        env.complete_callback(callback_id, {"approvals": {call_id: True}})
        output = await env.result(handle)
        progress = [line.message for _, line in env.client.logs(handle.run_id)]
        streamed = [entry.data["tool"] for entry
                    in env.client.stream(handle.run_id, "progress", follow=False)]
    assert output.startswith("Done: published")
    assert streamed == ["search", "read", "publish"]
    # reported from inside the agent's steps, each once however often the run replayed
    assert [line.split("(")[0] for line in progress] == [
        "calling search", "calling read", "calling publish"]
    assert research.published == ["Tides are raised by the moon's and the sun's gravity."]


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
