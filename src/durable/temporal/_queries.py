"""Queries answered by the worker serving the workflow, with the code it runs.

In Temporal a query is executed by a worker, so it is answered with the code deployed, whatever
version of the workflow module the caller imported. Here the client and the workers share only
the database, so a query is a request in the shared key-value store: a `Worker` of this package
announces the workflows it serves (`PRESENCE`, refreshed while it serves), takes requests for
them (`REQUESTS`), answers each with its own registered class (replaying the run read-only, as
`_runtime.evaluate_query` does) and writes the answer back; the caller waits for it. Without a
worker announcing the workflow (a test environment, `durable worker`, a serverless deployment
between calls), the caller answers from its own class, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from durable.client import Client as DurableClient
from durable.model import Invocation
from durable.temporal._definition import Definition
from durable.temporal._runtime import CHANNEL, evaluate_query
from durable.temporal.exceptions import WorkflowQueryFailedError

log = logging.getLogger("durable.temporal")

REQUESTS = "temporal.query/"
"""Key prefix of query requests: REQUESTS + run id + "/" + request id."""
PRESENCE = "temporal.worker/"
"""Key prefix of workers' announcements: PRESENCE + workflow name + "/" + worker id -> time."""
PRESENCE_SECONDS = 10.0
"""An announcement older than this is a worker gone (killed, stopped): not waited for."""
POLL_SECONDS = 0.1
ANSWER_SECONDS = 30.0
"""How long a caller waits for a present worker's answer before answering itself."""


async def answer_here(durable: DurableClient, defn: Definition, run_id: str, name: str,
                      args: Sequence[Any]) -> Any:
    """Answer with `defn`, this process's class: the run's history replayed read-only, plus the
    signals delivered but not yet taken. In a thread: the replay runs on a loop of its own."""
    run = durable.get(run_id)
    ops, buffered = durable.store.read(lambda tx: (tx.operations(run_id),
                                                   tx.buffered_signals(run_id, CHANNEL)))
    invocation = Invocation(run.run_id, run.workflow, run.input, {op.id: op for op in ops},
                            run.cancel_requested)
    work = evaluate_query(defn, invocation, buffered, name, list(args))
    return await asyncio.to_thread(asyncio.run, work)


async def _entries(durable: DurableClient, prefix: str) -> AsyncIterator[tuple[str, Any]]:
    """Every key under `prefix` with its value, page by page."""
    after: str | None = None
    while True:
        page = await durable.kv.entries_async(prefix, after)
        for entry in page:
            yield entry.key, json.loads(entry.value)
        if len(page) < 100:
            return
        after = page[-1].key


async def served(durable: DurableClient, workflow: str) -> bool:
    """Whether a worker announced `workflow` recently enough to be waited for."""
    now = time.time()
    async for _, announced in _entries(durable, f"{PRESENCE}{workflow}/"):
        if isinstance(announced, str) and now - float(announced) < PRESENCE_SECONDS:
            return True
    return False


async def ask(durable: DurableClient, defn: Definition, run_id: str, name: str,
              args: Sequence[Any]) -> Any:
    """The answer of a worker serving the workflow if one is present, else this process's.
    A worker that stops announcing itself while asked (killed, cut off) or gives no answer
    within ANSWER_SECONDS is not waited for: this process answers, with a warning, because a
    query answered by older code beats a caller hanging on a worker that will never reply."""
    if not await served(durable, defn.name):
        return await answer_here(durable, defn, run_id, name, args)
    key = f"{REQUESTS}{run_id}/{uuid.uuid4().hex}"
    await durable.kv.set_async(key, {"workflow": defn.name, "name": name, "args": list(args),
                                     "asked": time.time()})
    try:
        deadline = time.monotonic() + ANSWER_SECONDS
        checked = time.monotonic()
        while time.monotonic() < deadline:
            request = await durable.kv.get_async(key)
            if isinstance(request, dict) and "error" in request:
                raise WorkflowQueryFailedError(request["error"])
            if isinstance(request, dict) and "answer" in request:
                return request["answer"]
            if time.monotonic() - checked > PRESENCE_SECONDS / 3:
                checked = time.monotonic()
                if not await served(durable, defn.name):
                    log.warning("run %s: the worker serving %r went away before answering "
                                "query %r; answering with this process's code", run_id,
                                defn.name, name)
                    break
            await asyncio.sleep(POLL_SECONDS)
        else:
            log.warning("run %s: no worker serving %r answered query %r within %.0f s; "
                        "answering with this process's code", run_id, defn.name, name,
                        ANSWER_SECONDS)
    finally:
        await durable.kv.delete_async(key)
    return await answer_here(durable, defn, run_id, name, args)


class Answerer:
    """A worker's side: announce the workflows served and answer their queries, until
    cancelled. A database error is logged and retried after a pause: queries wait, the worker
    serves on."""

    def __init__(self, durable: DurableClient, definitions: Sequence[Definition]) -> None:
        self.durable = durable
        self.definitions = {d.name: d for d in definitions}
        self.worker_id = uuid.uuid4().hex

    async def run(self) -> None:
        announced = 0.0
        try:
            while True:
                try:
                    if time.monotonic() - announced > PRESENCE_SECONDS / 3:
                        await self._announce()
                        announced = time.monotonic()
                    await self._answer_pending()
                    await asyncio.sleep(POLL_SECONDS)
                except Exception:
                    log.exception("answering queries failed; retrying in %.0f s",
                                  PRESENCE_SECONDS / 3)
                    await asyncio.sleep(PRESENCE_SECONDS / 3)
        finally:
            await asyncio.shield(self._withdraw())

    async def _announce(self) -> None:
        for name in self.definitions:
            await self.durable.kv.set_async(f"{PRESENCE}{name}/{self.worker_id}",
                                            str(time.time()))
        await self._sweep()

    async def _sweep(self) -> None:
        """Remove what killed processes left: a worker's announcement, which it never
        withdrew, and a request whose caller stopped waiting without removing it. Only for
        long-stale keys, so a slow but live process keeps its own."""
        stale = time.time() - 3 * max(PRESENCE_SECONDS, ANSWER_SECONDS)
        for name in self.definitions:
            async for key, announced in _entries(self.durable, f"{PRESENCE}{name}/"):
                if isinstance(announced, str) and float(announced) < stale:
                    await self.durable.kv.delete_async(key)
        async for key, request in _entries(self.durable, REQUESTS):
            if (isinstance(request, dict) and request.get("workflow") in self.definitions
                    and float(request.get("asked", time.time())) < stale):
                await self.durable.kv.delete_async(key)

    async def _withdraw(self) -> None:
        for name in self.definitions:
            try:
                await self.durable.kv.delete_async(f"{PRESENCE}{name}/{self.worker_id}")
            except Exception:  # it ages out after PRESENCE_SECONDS anyway
                log.warning("could not withdraw worker %s's announcement", self.worker_id)

    async def _answer_pending(self) -> None:
        async for key, request in _entries(self.durable, REQUESTS):
            if not isinstance(request, dict) or "answer" in request or "error" in request:
                continue
            defn = self.definitions.get(str(request.get("workflow")))
            if defn is None:
                continue
            run_id = key[len(REQUESTS):].rpartition("/")[0]
            try:
                reply = {"answer": await answer_here(self.durable, defn, run_id,
                                                     str(request["name"]),
                                                     list(request.get("args") or []))}
            except Exception as e:
                log.info("run %s: query %r failed: %s", run_id, request.get("name"), e)
                reply = {"error": str(e) if isinstance(e, WorkflowQueryFailedError)
                         else f"{type(e).__name__}: {e}"}
            # only if still asked: another worker may have answered, the caller given up
            await self.durable.kv.check_and_set_async(key, request, {**request, **reply})
