"""A pydantic-ai agent in a workflow, for tests/test_pydantic_ai.py's worker processes.

The model is a `FunctionModel` that plays a fixed script: look a fact up, then write it down,
then answer. Every model request and every tool body appends a line to the effects file
($AGENT_EFFECTS), so a test counts what really ran, across processes. While the file
$AGENT_HOLD exists, `write_down` waits in its body: the moment a test kills the worker.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel

from durable import Context, RetryPolicy, workflow
from durable.integrations.pydantic_ai import Durability, StepOptions


def effect(line: str) -> None:
    with open(os.environ["AGENT_EFFECTS"], "a") as f:
        f.write(line + "\n")


def returned(messages: list[ModelMessage]) -> list[str]:
    return [part.tool_name for m in messages for part in m.parts
            if isinstance(part, ToolReturnPart)]


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    done = returned(messages)
    effect(f"model {len(done)}")
    if not done:
        return ModelResponse(parts=[ToolCallPart("look_up", {"topic": "tides"})])
    if done == ["look_up"]:
        return ModelResponse(parts=[ToolCallPart("write_down", {"note": "moon"})])
    return ModelResponse(parts=[TextPart("tides follow the moon")])


# With $AGENT_AT_MOST_ONCE, a tool call that a crash interrupted is never run again.
AT_MOST_ONCE = StepOptions(semantics="at_most_once", retry=RetryPolicy(max_attempts=1))
agent = Agent(FunctionModel(script), name=os.environ.get("AGENT_NAME", "notes"),
              capabilities=[Durability(tool_step=AT_MOST_ONCE if os.environ.get(
                  "AGENT_AT_MOST_ONCE") else None)])


@agent.tool_plain
def look_up(topic: str) -> str:
    effect(f"look_up {topic}")
    return "the moon"


@agent.tool_plain
async def write_down(note: str) -> str:
    effect(f"write_down {note}")
    while Path(os.environ.get("AGENT_HOLD", "/nonexistent")).exists():
        await asyncio.sleep(0.05)
    effect(f"written {note}")
    return "noted"


@workflow
async def take_notes(ctx: Context, topic: str) -> str:
    result = await agent.run(f"research {topic}")
    return result.output


# -- a model response the provider keeps working on (tests/test_pydantic_ai.py) -------------
# The first request answers "suspended", as OpenAI's background mode does; pydantic-ai waits
# $AGENT_POLL_SECONDS (the model's `continuation_delay`) before it asks again, and the second
# request gets the answer.

def polled(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    suspended = [m for m in messages if isinstance(m, ModelResponse) and m.state == "suspended"]
    effect(f"segment {len(suspended) + 1}")
    if not suspended:
        return ModelResponse(parts=[], state="suspended", provider_response_id="job-1")
    return ModelResponse(parts=[TextPart("the job is done")])


class BackgroundModel(FunctionModel):
    def continuation_delay(self, response: ModelResponse) -> float | None:
        return float(os.environ.get("AGENT_POLL_SECONDS", "0.1")) \
            if response.state == "suspended" else None


poller = Agent(BackgroundModel(polled), name="poller", capabilities=[Durability()])


@workflow
async def background_job(ctx: Context) -> str:
    result = await poller.run("run the long job")
    return result.output
