"""examples/agents/research.py for worker processes (tests/test_agent_examples.py): the example
as it is, its scripted model and its newsroom counted.

Every model request and every newsroom call the tools make appends a line to $AGENT_EFFECTS, so
a test counts what really ran across processes. While the file $AGENT_HOLD exists, `read` waits
in its step body, after it streamed what it reads: the moment a test kills the worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from pydantic_ai.messages import ModelMessage
from pydantic_ai.models.function import AgentInfo, DeltaToolCalls, FunctionModel

from tests.kit import load_module

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "agents" / "research.py"



example = load_module(EXAMPLE, "examples_agents_research")
research = example.research  # for `durable worker tests/apps/research_app.py:research`


def effect(line: str) -> None:
    with open(os.environ["AGENT_EFFECTS"], "a") as f:
        f.write(line + "\n")


def held() -> bool:
    return Path(os.environ.get("AGENT_HOLD", "/nonexistent")).exists()


class CountedNewsroom(example.Newsroom):  # type: ignore[misc]
    def search(self, query: str) -> str:
        effect(f"search {query}")
        return str(super().search(query))

    def read(self, topic: str) -> str:
        effect(f"read {topic}")
        while held():  # a sync tool runs in a thread: a sleep holds no loop
            time.sleep(0.05)
        return str(super().read(topic))

    def publish(self, summary: str) -> None:
        effect("publish")
        super().publish(summary)


def _counted_model(model: FunctionModel) -> None:
    script = model.stream_function
    assert script is not None

    async def counted(messages: list[ModelMessage], info: AgentInfo
                      ) -> AsyncIterator[str | DeltaToolCalls]:
        effect(f"model {sum(1 for m in messages if m.kind == 'request')}")
        async for part in script(messages, info):
            yield part
    model.stream_function = counted


example.newsroom = CountedNewsroom()
_counted_model(example.agent.model)
