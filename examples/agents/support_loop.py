"""A support agent without a framework: the OpenAI SDK called as a step, its tool calls as
steps, a token and cost budget recorded as run attributes, and a refund held for a person's
approval on a callback.

    export OPENAI_API_KEY=...
    durable run examples/agents/support_loop.py:support --input '"order 17 came broken"'
    durable ls --where 'llm.cost_usd > 0.01'          # the runs that cost the most
    durable callback succeed CALLBACK_ID --payload '{"approved": true}'

A crash at any point resumes the conversation where it was: a finished model call or tool call
is never made again (tests/test_agent_examples.py kills it to check).
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from openai import AsyncOpenAI

from durable import Context, workflow
from durable.integrations.llm import (
    LLM_RETRY,
    ApprovalDenied,
    Budget,
    Prices,
    Usage,
    approval,
    call_tool,
)

MODEL = os.environ.get("SUPPORT_MODEL", "gpt-4o-mini")
PRICES = Prices(input=0.15, output=0.60)  # dollars per million tokens of MODEL
MAX_TURNS = 8

client: AsyncOpenAI | None = None
"""Made on first use, so the tests can hand in one whose HTTP goes to a fake server."""


def openai_client() -> AsyncOpenAI:
    global client
    if client is None:
        client = AsyncOpenAI()
    return client


def order_status(order_id: str) -> dict[str, Any]:
    return {"order_id": order_id, "status": "delivered", "amount": 42}


def refund(order_id: str, amount: int) -> dict[str, Any]:
    return {"order_id": order_id, "refunded": amount}


TOOLS = {"order_status": order_status, "refund": refund}
NEEDS_APPROVAL = {"refund"}
SCHEMAS = [
    {"type": "function", "function": {
        "name": "order_status", "description": "Look an order up.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"]}}},
    {"type": "function", "function": {
        "name": "refund", "description": "Refund an order (a person approves it first).",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"},
                                                        "amount": {"type": "integer"}},
                       "required": ["order_id", "amount"]}}},
]


async def chat(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One model call; its JSON form is what the step records."""
    completion = await openai_client().chat.completions.create(
        model=MODEL, messages=messages, tools=SCHEMAS)  # type: ignore[arg-type]
    return completion.model_dump(mode="json", exclude_none=True)


def ask_support_lead(callback_id: str) -> None:
    print(f"refund waiting for approval: durable callback succeed {callback_id} "
          "--payload '{\"approved\": true}'")


@workflow
async def support(ctx: Context, complaint: str) -> str:
    budget = Budget(max_tokens=20_000, max_cost=0.05, prices=PRICES)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a support agent. Use the tools."},
        {"role": "user", "content": complaint}]
    for _ in range(MAX_TURNS):
        reply = await ctx.step(chat, messages, name="llm.chat", retry=LLM_RETRY)
        budget.charge(ctx, Usage.from_openai(reply.get("usage")))
        message = reply["choices"][0]["message"]
        messages.append(message)
        if not message.get("tool_calls"):
            return str(message.get("content", ""))
        for call in message["tool_calls"]:
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            try:
                if name in NEEDS_APPROVAL:
                    await approval(ctx, name, ask_support_lead, timeout=timedelta(days=3))
                result = await call_tool(ctx, TOOLS, name, arguments)
            except ApprovalDenied as denied:
                result = {"error": f"not done: {denied}"}
            messages.append({"role": "tool", "tool_call_id": call["id"],
                             "content": json.dumps(result)})
    return "I could not finish within the turns allowed; a person will follow up."
