"""A research agent on pydantic-ai: it searches, reads, and asks a person before it publishes.

    durable run examples/agents/research.py:research --input '"tides"'      # a scripted model
    RESEARCH_MODEL=openai:gpt-4o durable worker examples/agents/research.py  # a real one

Every model request and tool call is a step (`Durability`), so a crash resumes the research
where it was. Publishing needs approval: the run waits on a callback, holding no process, until
`durable callback succeed CALLBACK_ID --payload '{"approvals": {"TOOL_CALL_ID": true}}'`.
Progress goes to the run's log (`durable show RUN_ID`) and to its "progress" stream
(`durable stream RUN_ID progress --follow`, the server's SSE route, the UI): each tool call from
the event stream handler, which runs inside the agent's steps, and what `read` reads from inside
its own step.

Without RESEARCH_MODEL the model is a script (pydantic-ai's FunctionModel), so the example
runs offline, as tests/test_agent_examples.py runs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, AsyncIterator

from pydantic_ai import Agent
from pydantic_ai.capabilities import RequestInput
from pydantic_ai.messages import (
    AgentStreamEvent,
    FunctionToolCallEvent,
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, DeltaToolCall, DeltaToolCalls, FunctionModel
from pydantic_ai.tools import DeferredToolRequests, RunContext

from durable import Context, workflow
from durable.integrations.pydantic_ai import Durability, workflow_context


class Newsroom:
    """What the tools call: a stand-in for a search API, a document store and a CMS, with a
    two-page library. Swap `newsroom` for real services; the agent does not change."""

    library = {
        "tides": "Tides are raised by the moon's and the sun's gravity.",
        "moon": "The moon is 384,400 km away on average.",
    }

    def __init__(self) -> None:
        self.published: list[str] = []

    def search(self, query: str) -> str:
        return next((topic for topic in self.library if topic in query.lower()), "moon")

    def read(self, topic: str) -> str:
        return self.library.get(topic, "nothing known")

    def publish(self, summary: str) -> None:
        self.published.append(summary)


newsroom = Newsroom()


def scripted(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """A stand-in model: search, read what was found, publish, then answer."""
    returns = [p for m in messages for p in m.parts if isinstance(p, ToolReturnPart)]
    if not returns:
        return ModelResponse(parts=[ToolCallPart("search", {"query": "tides"})])
    last = returns[-1]
    if last.tool_name == "search":
        return ModelResponse(parts=[ToolCallPart("read", {"topic": str(last.content)})])
    if last.tool_name == "read":
        return ModelResponse(parts=[ToolCallPart("publish", {"summary": str(last.content)})])
    return ModelResponse(parts=[TextPart(f"Done: {last.content}")])


async def scripted_stream(messages: list[ModelMessage], info: AgentInfo
                          ) -> AsyncIterator[str | DeltaToolCalls]:
    """The script, streamed: with an event stream handler, requests are streamed."""
    for part in scripted(messages, info).parts:
        if isinstance(part, ToolCallPart):
            yield {0: DeltaToolCall(part.tool_name, part.args_as_json_str())}
        elif isinstance(part, TextPart):
            yield part.content


async def report_progress(ctx: RunContext[None], events: AsyncIterable[AgentStreamEvent]) -> None:
    async for event in events:
        if isinstance(event, FunctionToolCallEvent):
            ctx_ = workflow_context()
            ctx_.logger.info("calling %s(%s)", event.part.tool_name,
                             event.part.args_as_json_str())
            # Live to whoever follows the run's "progress" stream (`durable stream RUN
            # progress --follow`, the UI, SSE); an attempt cut short is marked abandoned.
            ctx_.stream("progress").write({"tool": event.part.tool_name,
                                           "args": event.part.args_as_dict()})


def ask_editor(ctx: RunContext[None], requests: DeferredToolRequests, token: str) -> None:
    calls = ", ".join(f"{c.tool_name} ({c.tool_call_id})" for c in requests.approvals)
    print(f"approval needed for {calls}: durable callback succeed {token} --payload "
          "'{\"approvals\": {\"<tool_call_id>\": true}}'")


agent = Agent(
    os.environ.get("RESEARCH_MODEL") or FunctionModel(scripted, stream_function=scripted_stream),
    name="research",
    instructions="Research the topic with the tools, then publish a summary.",
    capabilities=[Durability(event_stream_handler=report_progress),
                  RequestInput(ask_editor, name="publish")],
)


@agent.tool_plain
def search(query: str) -> str:
    """Find the best topic for a query."""
    return newsroom.search(query)


@agent.tool_plain
def read(topic: str) -> str:
    """Read what the library says about a topic."""
    # From inside the tool's step: live, and struck out if this attempt does not finish.
    workflow_context().stream("progress").write({"reading": topic})
    return newsroom.read(topic)


@agent.tool_plain(requires_approval=True)
def publish(summary: str) -> str:
    """Publish a summary (an editor approves it first)."""
    newsroom.publish(summary)
    return f"published {len(summary)} characters"


@workflow
async def research(ctx: Context, topic: str) -> str:
    result = await agent.run(f"Research: {topic}")
    return str(result.output)
