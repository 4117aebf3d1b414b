"""What a type checker makes of `Client.start` and `AsyncClient.start` (checked by mypy --strict
and pyright; nothing here runs under pytest: the functions are only read by the checkers).

Each `# type: ignore[...]` marks a call the checkers must refuse: with `warn_unused_ignores`
(part of --strict), an ignore that no longer matches an error fails the check too.
"""

from __future__ import annotations

from typing import Any, assert_type

from durable import AsyncClient, AsyncRunHandle, Client, Context, RunHandle, workflow
from durable.model import RunInfo


@workflow
async def nothing(ctx: Context) -> None:
    return None


@workflow
async def greet(ctx: Context, name: str) -> str:
    return f"hello {name}"


@workflow
async def add(ctx: Context, a: int, b: int) -> int:
    return a + b


@workflow(name="typed.named")
async def sizes(ctx: Context, words: list[str], upper: bool, limit: int) -> dict[str, int]:
    return {w.upper() if upper else w: len(w) for w in words[:limit]}


@workflow
async def five(ctx: Context, a: int, b: int, c: int, d: int, e: int) -> int:
    return a + b + c + d + e


def check_sync(client: Client) -> None:
    assert_type(client.start(nothing), RunHandle[None])
    assert_type(client.start(greet, "ada", id="greet-ada"), RunHandle[str])
    assert_type(client.start(add, 1, 2, priority=None), RunHandle[int])
    assert_type(client.start(sizes, ["a"], True, 3), RunHandle[dict[str, int]])
    assert_type(client.start(greet, "ada").result(timeout=5), str)
    assert_type(client.start(five, 1, 2, 3, 4, 5), RunHandle[int])  # not checked past three
    assert_type(client.get("run").result_value, Any)
    assert_type(client.events("run"), dict[str, Any])
    assert_type(client.pending_callbacks("run"), list[str])

    client.start(greet, 42)  # type: ignore[arg-type]
    client.start(greet)  # type: ignore[arg-type]
    client.start(add, 1, "2")  # type: ignore[arg-type]
    client.start(greet, "ada", idd="x")  # type: ignore[call-overload]


async def check_async(client: AsyncClient) -> None:
    handle = await client.start(greet, "ada", id="greet-ada")
    assert_type(handle, AsyncRunHandle[str])
    assert_type(await handle.result(), str)
    assert_type(await client.start(add, 1, 2), AsyncRunHandle[int])
    assert_type(await client.get("run"), RunInfo)
    assert_type(await client.events("run"), dict[str, Any])
    assert_type(await client.pending_callbacks("run"), list[str])
    assert_type(await client.list(status="RUNNING"), list[RunInfo])
    assert_type(await client.signal("run", "go", {"ok": True}), None)

    await client.start(greet, 42)  # type: ignore[arg-type]
    await client.start(add, 1)  # type: ignore[arg-type]
    await client.signal("run")  # type: ignore[call-arg]
