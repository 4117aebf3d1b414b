"""durable.integrations.pydantic_ai: pydantic-ai agents whose model requests and tool calls are
Durable steps, on both stores, offline (pydantic-ai's FunctionModel and TestModel)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastmcp import FastMCP
from pydantic_ai import Agent
from pydantic_ai.capabilities import RequestInput
from pydantic_ai.exceptions import ModelHTTPError, UserError
from pydantic_ai.mcp import MCPToolset
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.tools import DeferredToolRequests, RunContext

import durable
from durable import Context, ExecutionStatus, workflow
from durable.integrations.pydantic_ai import Durability, workflow_context
from durable.model import OperationType
from durable.testing import TestEnvironment
from tests.apps import agent_app
from tests.kit import Procs, wait_until

ROOT = Path(__file__).resolve().parent.parent
APP = "tests/apps/agent_app.py"


@pytest.fixture
def effects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "effects.txt"
    path.touch()
    monkeypatch.setenv("AGENT_EFFECTS", str(path))
    return path


def counted(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines())


def step_names(env: TestEnvironment, run_id: str) -> list[str]:
    ops = sorted(env.operations(run_id), key=lambda op: op.started_at or 0)
    return [op.name or "" for op in ops if op.type is OperationType.STEP]


# Persisted step names are compatibility data: a run in flight replays by them, so a change
# here strands it. Change them only with a migration of recorded runs in mind.
PINNED_NAMES = [
    "uuid4",
    "notes__model.request",
    "notes__function_toolset__<agent>.call_tool:look_up",
    "notes__model.request",
    "notes__function_toolset__<agent>.call_tool:write_down",
    "notes__model.request",
]


async def test_every_model_request_and_tool_call_is_a_step_under_its_pinned_name(
        any_db: str, effects: Path) -> None:
    async with TestEnvironment(agent_app.take_notes, db=any_db) as env:
        handle = env.start(agent_app.take_notes, "tides")
        assert await env.result(handle) == "tides follow the moon"
        assert step_names(env, handle.run_id) == PINNED_NAMES
    assert counted(effects) == Counter({"model 0": 1, "look_up tides": 1, "model 1": 1,
                                        "write_down moon": 1, "written moon": 1, "model 2": 1})


def worker(procs: Procs, db: str, effects: Path, hold: Path, **env: str) -> Any:
    return procs.start(sys.executable, "-m", "durable.cli", "worker", APP, "--db", db,
                       "--lease", "1", env={**os.environ, "AGENT_EFFECTS": str(effects),
                                            "AGENT_HOLD": str(hold), **env})


@pytest.mark.crash
def test_a_killed_worker_resumes_the_agent_without_repeating_a_model_request_or_tool_call(
        any_db: str, tmp_path: Path, effects: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    client = durable.Client(any_db)
    with Procs(tmp_path) as procs:
        first = worker(procs, any_db, effects, hold)
        run_id = client.start(agent_app.take_notes, "tides", id="notes-1").run_id
        # Two model requests and a tool call are checkpointed; the second tool is mid-body.
        wait_until(lambda: counted(effects)["write_down moon"] == 1, "write_down to start")
        first.kill()
        hold.unlink()
        worker(procs, any_db, effects, hold)
        assert client.result(run_id, timeout=30) == "tides follow the moon"
    client.close()
    assert counted(effects) == Counter({
        "model 0": 1, "look_up tides": 1, "model 1": 1,
        "write_down moon": 2,  # at least once: the killed attempt, then the one that finished
        "written moon": 1, "model 2": 1})


@pytest.mark.crash
def test_an_at_most_once_tool_cut_short_by_a_kill_fails_the_run_instead_of_running_again(
        any_db: str, tmp_path: Path, effects: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    client = durable.Client(any_db)
    with Procs(tmp_path) as procs:
        first = worker(procs, any_db, effects, hold, AGENT_AT_MOST_ONCE="1")
        run_id = client.start(agent_app.take_notes, "tides", id="notes-2").run_id
        wait_until(lambda: counted(effects)["write_down moon"] == 1, "write_down to start")
        first.kill()
        hold.unlink()
        worker(procs, any_db, effects, hold, AGENT_AT_MOST_ONCE="1")
        with pytest.raises(durable.WorkflowFailed, match="was interrupted"):
            client.result(run_id, timeout=30)
    client.close()
    assert counted(effects) == Counter({"model 0": 1, "look_up tides": 1, "model 1": 1,
                                        "write_down moon": 1})


def test_a_finished_agent_run_replays_clean_through_durable_replay(
        any_db: str, effects: Path) -> None:
    def durable_cli(*args: str, name: str = "notes") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "durable.cli", *args, "--db", any_db],
                              capture_output=True, text=True, cwd=ROOT, timeout=120,
                              env={**os.environ, "AGENT_NAME": name})

    ran = durable_cli("run", f"{APP}:take_notes", "--input", '"tides"', "--id", "notes-r")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout.strip().splitlines()[-1]) == "tides follow the moon"
    before = counted(effects)

    same = durable_cli("replay", APP, "notes-r")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "1 run(s) replayed, 0 diverge" in same.stdout
    assert counted(effects) == before  # a replay runs no model request and no tool

    renamed = durable_cli("replay", APP, "notes-r", name="scribe")
    assert renamed.returncode == 1, renamed.stdout + renamed.stderr
    assert "scribe__model.request" in renamed.stdout


failures: list[int] = []


def flaky(status: int) -> FunctionModel:
    """A model that answers `status` twice, then text."""
    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        failures.append(status)
        if len(failures) <= 2:
            raise ModelHTTPError(status_code=status, model_name="flaky")
        return ModelResponse(parts=[TextPart("fine")])
    return FunctionModel(answer)


rate_limited = Agent(flaky(429), name="rate_limited", capabilities=[Durability()])
refused = Agent(flaky(400), name="refused", capabilities=[Durability()])


@workflow
async def ask_rate_limited(ctx: Context) -> str:
    return (await rate_limited.run("hi")).output


@workflow
async def ask_refused(ctx: Context) -> str:
    return (await refused.run("hi")).output


async def test_a_rate_limited_model_request_is_retried_with_a_durable_backoff(
        any_db: str) -> None:
    failures.clear()
    async with TestEnvironment(ask_rate_limited, db=any_db) as env:
        started = env.now
        handle = env.start(ask_rate_limited)
        assert await env.result(handle) == "fine"
        (request,) = [op for op in env.operations(handle.run_id)
                      if op.name == "rate_limited__model.request"]
        assert request.attempt == 3
        assert env.now - started >= 2.5  # 1 s then 2 s of backoff, less the jitter
    assert failures == [429, 429, 429]


async def test_a_refused_model_request_fails_at_once(any_db: str) -> None:
    failures.clear()
    async with TestEnvironment(ask_refused, db=any_db) as env:
        handle = env.start(ask_refused)
        with pytest.raises(durable.WorkflowFailed, match="status_code: 400"):
            await env.result(handle)
    assert failures == [400]


approved: list[str] = []
tokens: list[str] = []


def ask_a_person(ctx: RunContext[None], requests: DeferredToolRequests, token: str) -> None:
    tokens.append(token)  # an email or a chat message with the token, in real life


gated = Agent(TestModel(), name="gated",
              capabilities=[Durability(), RequestInput(ask_a_person, name="refund")])


@gated.tool_plain(requires_approval=True)
def refund(amount: int) -> str:
    approved.append(f"refund {amount}")
    return "refunded"


@workflow
async def handle_complaint(ctx: Context) -> str:
    return (await gated.run("refund me")).output


@pytest.mark.parametrize("approve", [True, False])
async def test_an_approval_waits_as_a_callback_and_the_decision_resumes_the_agent(
        any_db: str, approve: bool) -> None:
    approved.clear()
    tokens.clear()
    async with TestEnvironment(handle_complaint, db=any_db) as env:
        handle = env.start(handle_complaint)
        await env.settle()
        assert env.get(handle.run_id).status is ExecutionStatus.RUNNING
        (callback_id,) = env.pending_callbacks(handle.run_id)
        assert tokens == [callback_id]
        assert approved == []
        (call,) = [op for op in env.operations(handle.run_id)
                   if op.name == "gated__function_toolset__<agent>.call_tool:refund"] or [None]
        assert call is None  # nothing ran before the decision
        call_id = _pending_tool_call_id(env, handle.run_id)
        env.complete_callback(callback_id, {"approvals": {call_id: approve}})
        output = await env.result(handle)
    assert approved == (["refund 0"] if approve else [])
    assert tokens == [callback_id]  # the replay asked nobody again
    assert ("refunded" in output) is approve


def _pending_tool_call_id(env: TestEnvironment, run_id: str) -> str:
    """The tool call id the model asked for, from the recorded model response."""
    (response,) = [op for op in env.operations(run_id) if op.name == "gated__model.request"]
    assert response.result is not None
    parts = json.loads(response.result)["parts"]
    return str(next(p["tool_call_id"] for p in parts if p["part_kind"] == "tool-call"))


seen: list[str] = []


async def progress(ctx: RunContext[None], events: Any) -> None:
    async for event in events:
        seen.append(f"{workflow_context().run_id} {event.event_kind}")


streamed = Agent(TestModel(), name="streamed",
                 capabilities=[Durability(event_stream_handler=progress)])


@streamed.tool_plain
def ping() -> str:
    return "pong"


@workflow
async def watch(ctx: Context) -> str:
    return str((await streamed.run("go")).output)


async def test_the_event_stream_handler_runs_in_the_run_s_steps_and_knows_its_workflow(
        any_db: str) -> None:
    seen.clear()
    async with TestEnvironment(watch, db=any_db) as env:
        handle = env.start(watch, id="watch-1")
        await env.result(handle)
        names = step_names(env, handle.run_id)
    assert "streamed__event_stream_handler" in names
    assert "streamed__model.request_stream" in names
    assert seen and all(line.startswith("watch-1 ") for line in seen)
    assert {"function_tool_call", "function_tool_result"} <= {s.split()[1] for s in seen}


tides = FastMCP("tides")
tide_calls: list[str] = []


@tides.tool
def tide_at(port: str) -> str:
    tide_calls.append(port)
    return f"high tide at {port}: 06:12"


harbour = Agent(TestModel(), name="harbour", toolsets=[MCPToolset(tides, id="tides")],
                capabilities=[Durability()])


@workflow
async def ask_harbour(ctx: Context) -> str:
    output = str((await harbour.run("when is high tide?")).output)
    await ctx.sleep(1)  # the invocation after it replays the agent: no MCP call made again
    return output


async def test_mcp_tool_discovery_and_calls_are_steps_under_their_pinned_names(
        any_db: str) -> None:
    tide_calls.clear()
    async with TestEnvironment(ask_harbour, db=any_db) as env:
        handle = env.start(ask_harbour)
        assert "06:12" in await env.result(handle)
        assert step_names(env, handle.run_id) == [
            "uuid4", "harbour__mcp_server__tides.get_tools", "harbour__model.request",
            "harbour__mcp_server__tides.call_tool", "harbour__model.request"]
    assert tide_calls == ["a"]


def test_outside_a_workflow_the_agent_runs_as_a_plain_agent(effects: Path) -> None:
    assert agent_app.agent.run_sync("research tides").output == "tides follow the moon"
    assert counted(effects)["model 0"] == 1


def test_a_tool_call_by_toolset_without_an_id_is_refused_with_what_to_do() -> None:
    from pydantic_ai.toolsets import FunctionToolset

    def noop() -> str:
        return ""
    with pytest.raises(UserError, match="unique `id`"):
        Agent(TestModel(), name="anonymous", toolsets=[FunctionToolset([noop])],
              capabilities=[Durability()])


def test_an_agent_without_a_name_is_refused_with_what_to_do() -> None:
    with pytest.raises(UserError, match="unique `name`"):
        Agent(TestModel(), capabilities=[Durability()])


async def test_the_agents_own_wait_between_polls_of_a_model_response_is_a_durable_timer(
        any_db: str, effects: Path) -> None:
    async with TestEnvironment(agent_app.background_job, db=any_db) as env:
        handle = env.start(agent_app.background_job)
        assert await env.result(handle) == "the job is done"
        ops = sorted(env.operations(handle.run_id), key=lambda op: op.started_at or 0)
    assert [(op.type, op.name) for op in ops] == [
        (OperationType.STEP, "uuid4"), (OperationType.STEP, "poller__model.request"),
        (OperationType.WAIT, "poller__sleep"), (OperationType.STEP, "poller__model.request")]
    assert counted(effects) == Counter({"segment 1": 1, "segment 2": 1})


@pytest.mark.crash
def test_a_worker_killed_while_the_agent_waits_on_a_model_job_resumes_the_same_wait(
        any_db: str, tmp_path: Path, effects: Path) -> None:
    client = durable.Client(any_db)
    with Procs(tmp_path) as procs:
        first = worker(procs, any_db, effects, tmp_path / "hold", AGENT_POLL_SECONDS="3")
        run_id = client.start(agent_app.background_job, id="job-1").run_id
        wait = wait_until(lambda: next((op for op in client.operations(run_id)
                                        if op.name == "poller__sleep"), None),
                          "the wait between polls to start")
        first.kill()
        worker(procs, any_db, effects, tmp_path / "hold", AGENT_POLL_SECONDS="3")
        assert client.result(run_id, timeout=30) == "the job is done"
        (after,) = [op for op in client.operations(run_id) if op.name == "poller__sleep"]
    client.close()
    assert after.due_at == wait.due_at  # resumed, not begun again
    assert counted(effects) == Counter({"segment 1": 1, "segment 2": 1})
