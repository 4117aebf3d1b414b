"""The key-value store shared by runs: `ctx.kv` in workflows (recorded, so a replay sees the
same values and writes nothing again) and `client.kv` outside, on both stores."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

import durable
from durable.errors import KvTypeError, SerializationError, UsageError
from durable.model import OperationStatus, SubType
from durable.testing import TestEnvironment


@pytest.fixture
def kv_client(any_db: str) -> Iterator[durable.Client]:
    client = durable.Client(any_db)
    yield client
    client.close()


@durable.workflow(name="kv-every-command")
async def every_command(ctx: durable.Context, prefix: str) -> dict[str, Any]:
    await ctx.kv.set(f"{prefix}/a", {"n": 1})
    await ctx.kv.set(f"{prefix}/b", [1, 2])
    first = await ctx.kv.get(f"{prefix}/a")
    await ctx.sleep(60)  # the invocation ends here: all after it runs in a replay
    swapped = await ctx.kv.check_and_set(f"{prefix}/a", {"n": 1}, {"n": 2})
    refused = await ctx.kv.check_and_set(f"{prefix}/a", {"n": 1}, {"n": 3})
    created = await ctx.kv.check_and_set(f"{prefix}/new", None, "made")
    total = await ctx.kv.add(f"{prefix}/count", 5)
    total = await ctx.kv.add(f"{prefix}/count", 2.5)
    doubled = await ctx.kv.mutate(f"{prefix}/b", lambda old: [*old, len(old) + 1])
    gone = await ctx.kv.delete(f"{prefix}/new")
    gone_again = await ctx.kv.delete(f"{prefix}/new")
    return {"first": first, "swapped": swapped, "refused": refused, "created": created,
            "total": total, "mutated": doubled, "gone": gone, "gone_again": gone_again,
            "keys": await ctx.kv.keys(prefix + "/"), "missing": await ctx.kv.get("nope", 7)}


def test_every_command_answers_from_the_shared_store_and_survives_a_replay(
        any_db: str, kv_client: durable.Client) -> None:
    kv_client.kv.set("other/x", 1)  # another prefix: not listed

    async def scenario() -> dict[str, Any]:
        async with TestEnvironment(every_command, db=any_db) as env:
            return await env.run(every_command, "p")

    out = asyncio.run(scenario())
    assert out == {"first": {"n": 1}, "swapped": True, "refused": False, "created": True,
                   "total": 7.5, "mutated": [1, 2, 3], "gone": True, "gone_again": False,
                   "keys": ["p/a", "p/b", "p/count"], "missing": 7}
    kv = kv_client.kv
    assert (kv.get("p/a"), kv.get("p/b"), kv.get("p/count")) == ({"n": 2}, [1, 2, 3], 7.5)
    assert kv.get("p/new") is None and kv.keys("p/") == ["p/a", "p/b", "p/count"]


@durable.workflow(name="kv-count-twice")
async def count_twice(ctx: durable.Context) -> list[int | float]:
    seen = [await ctx.kv.add("hits")]
    await ctx.sleep(3600)
    seen.append(await ctx.kv.add("hits"))
    return seen


def test_a_replayed_add_is_read_from_history_not_applied_again(
        any_db: str, kv_client: durable.Client) -> None:
    async def scenario() -> tuple[list[int | float], str]:
        async with TestEnvironment(count_twice, db=any_db) as env:
            handle = env.start(count_twice)
            result = await env.result(handle)
            ops = [op for op in env.operations(handle.run_id) if op.sub_type == SubType.KV]
            assert [(op.name, op.status) for op in ops] == [
                ("kv.add hits", OperationStatus.SUCCEEDED)] * 2
            return result, handle.run_id

    result, run_id = asyncio.run(scenario())
    assert result == [1, 2]
    assert kv_client.kv.get("hits") == 2
    # `durable replay` runs the whole history against the code: it reads, never writes.
    (checked,) = kv_client.replay([count_twice], [run_id])
    assert checked.divergence is None
    assert kv_client.kv.get("hits") == 2


@durable.workflow(name="kv-add-to-text")
async def add_to_text(ctx: durable.Context) -> str:
    await ctx.kv.set("name", "ada")
    try:
        await ctx.kv.add("name", 1)
    except KvTypeError as e:
        return str(e)
    return "added"


def test_adding_to_a_value_that_is_not_a_number_raises_into_the_workflow(
        any_db: str, kv_client: durable.Client) -> None:
    async def scenario() -> str:
        async with TestEnvironment(add_to_text, db=any_db) as env:
            return await env.run(add_to_text)

    message = asyncio.run(scenario())
    assert "'name'" in message and "not a number" in message and "mutate" in message
    assert kv_client.kv.get("name") == "ada"
    with pytest.raises(KvTypeError, match="not a number"):
        kv_client.kv.add("name", 1)


class Opaque:
    """Nothing JSON can encode."""


@durable.workflow(name="kv-set-opaque")
async def set_opaque(ctx: durable.Context) -> str:
    try:
        await ctx.kv.set("thing", Opaque())
    except SerializationError as e:
        return str(e)
    return "stored"


def test_a_value_json_cannot_encode_is_refused_naming_the_key_and_the_fix(
        kv_client: durable.Client) -> None:
    with pytest.raises(SerializationError) as raised:
        kv_client.kv.set("thing", Opaque())
    assert "'thing'" in str(raised.value) and "dataclass or a pydantic model" in str(raised.value)

    async def scenario() -> str:
        async with TestEnvironment(set_opaque) as env:
            return await env.run(set_opaque)

    message = asyncio.run(scenario())
    assert "ctx.kv.set" in message and "'thing'" in message
    assert kv_client.kv.keys() == []


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_the_client_reads_and_writes_typed_values_and_mutates_atomically(
        kv_client: durable.Client) -> None:
    kv = kv_client.kv
    kv.set("pt", Point(1, 2))
    assert kv.get("pt") == {"x": 1, "y": 2}
    assert kv.get("pt", as_type=Point) == Point(1, 2)
    assert kv.mutate("pt", lambda p: {**p, "x": p["x"] + 10}) == {"x": 11, "y": 2}
    assert kv.mutate("list", lambda old: (old or []) + ["a"]) == ["a"]
    assert kv.check_and_set("pt", {"x": 11, "y": 2}, None) and kv.get("pt", "dflt") is None
    assert [e.key for e in kv.entries()] == ["list", "pt"]
    assert kv.delete("pt") and not kv.delete("pt")
    versions = {e.key: e.version for e in kv.entries()}
    assert versions == {"list": 1}

    async def twins() -> list[Any]:
        await kv.set_async("a", 1)
        return [await kv.add_async("a", 2), await kv.get_async("a"),
                await kv.keys_async(), await kv.mutate_async("a", lambda n: n * 10),
                await kv.check_and_set_async("a", 30, 31), await kv.delete_async("a"),
                [e.key for e in await kv.entries_async()]]

    assert asyncio.run(twins()) == [3, 3, ["a", "list"], 30, True, True, ["list"]]


def test_a_deleted_key_never_reuses_a_version_a_mutate_may_have_read(
        kv_client: durable.Client) -> None:
    kv = kv_client.kv
    kv.set("k", "v1")
    (before,) = kv.entries()
    kv.delete("k")
    kv.set("k", "v2")
    (after,) = kv.entries()
    assert after.version > before.version + 1


@pytest.mark.parametrize("key", ["", 17, "x" * 1025])
def test_a_bad_key_is_one_clear_error(kv_client: durable.Client, key: Any) -> None:
    with pytest.raises(UsageError, match=r"kv\.set: .*key"):
        kv_client.kv.set(key, 1)


@pytest.mark.parametrize("n", ["1", True, float("nan"), float("inf")])
def test_add_takes_only_a_finite_number(kv_client: durable.Client, n: Any) -> None:
    with pytest.raises(UsageError, match="add takes a finite number"):
        kv_client.kv.add("n", n)
    assert kv_client.kv.keys() == []


@durable.workflow(name="kv-gather")
async def gather_adds(ctx: durable.Context, branches: int) -> tuple[list[Any], list[Any]]:
    async def branch(ctx: durable.Context) -> Any:
        return await ctx.kv.add("fan")
    first = await ctx.gather(*(branch(ctx) for _ in range(branches)))
    await ctx.sleep(60)  # what follows replays `first` from history
    again = await ctx.gather(*(branch(ctx) for _ in range(branches)))
    return list(first), list(again)


def test_parallel_branches_each_add_once_and_replay_their_own_answers(
        any_db: str, kv_client: durable.Client) -> None:
    async def scenario() -> tuple[list[Any], list[Any]]:
        async with TestEnvironment(gather_adds, db=any_db) as env:
            return await env.run(gather_adds, 5)

    first, again = asyncio.run(scenario())
    assert sorted(first) == [1, 2, 3, 4, 5] and sorted(again) == [6, 7, 8, 9, 10]
    assert kv_client.kv.get("fan") == 10
