"""A large run for the UI's scale tests and benchmarks/ui.py: `documents(n, fail_at)` fans out
over `n` documents, each a branch of four operations (fetch, a `convert` child run, store, index),
so `n=2000` makes a run of 10,000 operations (with the listing step and the gather, less
the two steps the failed document never reaches); document `fail_at` fails in its child run and,
tolerated, leaves the run SUCCEEDED with one failed item, as a real large batch does."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from durable import Completion, Context, RetryPolicy, step, workflow
from durable.testing import TestEnvironment

ONCE = RetryPolicy(max_attempts=1)


@step
def list_documents(n: int) -> int:
    return n


@step
def fetch(i: int) -> str:
    return f"doc-{i}"


@step(retry=ONCE)
def parse(doc: str, broken: bool) -> int:
    if broken:
        raise ValueError(f"{doc} is not a PDF")
    return len(doc)


@step
def save(doc: str, pages: int) -> str:
    return f"{doc}:{pages}"


@step
def index(key: str) -> str:
    return key.upper()


@workflow
async def convert(ctx: Context, doc: str, broken: bool) -> int:
    """The child run of one document."""
    return await parse(doc, broken)


@workflow
async def documents(ctx: Context, n: int, fail_at: int) -> int:
    count = await ctx.step(list_documents, n)

    async def one(i: int) -> str:
        doc = await fetch(i)
        pages = await ctx.invoke(convert, doc, i == fail_at, id=f"{ctx.run_id}-doc-{i}")
        return await index(await save(doc, pages))
    batch = await ctx.gather(*[one(i) for i in range(count)], name="documents",
                             completion=Completion(tolerated_failures=n))
    return batch.succeeded


def build(db: str, run_id: str, n: int, fail_at: int) -> None:
    """Run `documents` to its end through the engine and the SDK, on a virtual clock only so
    that nothing is waited for: every row is one the engine wrote. In a thread of its own, so
    that a caller with an event loop running (Playwright's) can call it too."""
    async def go() -> None:
        async with TestEnvironment(documents, convert, db=db) as env:
            await env.result(env.start(documents, n, fail_at, id=run_id))
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result()
