"""examples/agents/support_loop.py with a fake OpenAI behind the real SDK, for worker processes
(tests/test_agent_examples.py) and for in-process tests alike.

The fake answers as a model would: look order 17 up, refund it, then say how it went. Every
request it gets and every tool body appends a line to $AGENT_EFFECTS, so a test counts what
really ran across processes. While the file $AGENT_HOLD exists, the request that asks for the
refund is held unanswered: the moment a test kills the worker.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx2
from openai import AsyncOpenAI

from tests.kit import load_module

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "examples" / "agents" / "support_loop.py"



example = load_module(EXAMPLE, "examples_agents_support_loop")
support = example.support  # for `durable worker tests/apps/support_app.py:support`


def effect(line: str) -> None:
    path = os.environ.get("AGENT_EFFECTS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def completion(message: dict[str, Any]) -> dict[str, Any]:
    return {"id": "c", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}


def tool_call(id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": id, "type": "function",
         "function": {"name": name, "arguments": json.dumps(arguments)}}]}


def answer(body: dict[str, Any]) -> dict[str, Any]:
    """The scripted model's next message, from the conversation so far."""
    results = [m for m in body["messages"] if m["role"] == "tool"]
    if not results:
        return tool_call("c1", "order_status", {"order_id": "17"})
    if len(results) == 1:
        return tool_call("c2", "refund", {"order_id": "17", "amount": 42})
    last = json.loads(results[-1]["content"])
    return {"role": "assistant",
            "content": "Refunded 42." if "refunded" in last else "The refund was not approved."}


async def fake_openai(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    turn = len([m for m in body["messages"] if m["role"] == "tool"])
    effect(f"request {turn}")
    while turn == 1 and Path(os.environ.get("AGENT_HOLD", "/nonexistent")).exists():
        await asyncio.sleep(0.05)
    return httpx2.Response(200, json=completion(answer(body)))


def counting(name: str, fn: Any) -> Any:
    def tool(**kwargs: Any) -> Any:
        effect(f"tool {name}")
        return fn(**kwargs)
    return tool


def install(transport: httpx2.AsyncBaseTransport) -> None:
    """Point the example's OpenAI client at `transport` instead of the network."""
    example.client = AsyncOpenAI(api_key="test", max_retries=0,
                                 http_client=httpx2.AsyncClient(transport=transport))


example.TOOLS.update({name: counting(name, fn) for name, fn in example.TOOLS.items()})
install(httpx2.MockTransport(fake_openai))
