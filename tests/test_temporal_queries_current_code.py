"""A query is answered with the code the worker runs, as in Temporal, not with the version of
the workflow module the caller happened to import.

Two versions of one module file: the test process (the caller) imports version 1; a worker
process, serving with Temporal's `async with Worker(...)`, imports version 2, whose query handler
answers differently. While that worker serves, the caller's query gets version 2's answer; with
no worker serving, or once the serving worker is gone, the caller's own class answers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from durable.temporal import workflow
from durable.temporal._queries import ANSWER_SECONDS, served
from durable.temporal.client import Client, WorkflowHandle
from durable.temporal.worker import Worker
from tests.kit import DEADLINE, Procs, Subprocess, wait_until, wait_until_async

VERSION = textwrap.dedent("""
    import os, pathlib, time

    from durable.temporal import workflow


    @workflow.defn(name="Versioned")
    class Versioned:
        def __init__(self) -> None:
            self.count = 0
            self.done = False

        @workflow.run
        async def run(self) -> int:
            await workflow.wait_condition(lambda: self.done)
            return self.count

        @workflow.signal
        def bump(self) -> None:
            self.count += 1

        @workflow.signal
        def finish(self) -> None:
            self.done = True

        @workflow.query
        def describe(self) -> str:
            stall = os.environ.get("VERSIONED_STALL")  # a file: say "asked" there, never answer
            if stall:
                pathlib.Path(stall).write_text("asked")
                time.sleep(3600)
            return {answer}
""")

WORKER = textwrap.dedent("""
    import asyncio, importlib.util, signal, sys

    from durable.temporal.client import Client
    from durable.temporal.worker import Worker

    spec = importlib.util.spec_from_file_location("versioned_workflow", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


    async def main() -> None:
        client = await Client.connect(sys.argv[1])
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        async with Worker(client, task_queue="q", workflows=[module.Versioned]):
            await stop.wait()


    asyncio.run(main())
""")


@dataclass
class Versions:
    """The caller's client and its version-1 class; `serve` starts a version-2 worker."""
    db: str
    dir: Path
    procs: Procs
    client: Client
    caller: ModuleType

    def serve(self, **env: str) -> Subprocess:
        worker = self.procs.start(sys.executable, str(self.dir / "worker.py"), self.db,
                                  str(self.dir / "v2" / "versioned_workflow.py"),
                                  name="worker", env={**os.environ, **env})

        def serving() -> bool:
            assert worker.alive, worker.output()
            return asyncio.run(served(self.client.durable, "Versioned"))

        wait_until(serving, "the worker to announce that it serves Versioned")
        return worker

    def start(self) -> WorkflowHandle[int]:
        handle = asyncio.run(self.client.start_workflow(self.caller.Versioned.run, id="v",
                                                        task_queue="q"))
        asyncio.run(handle.signal(self.caller.Versioned.bump))
        return handle

    def describe(self, handle: WorkflowHandle[int]) -> str:
        answer: str = asyncio.run(handle.query(self.caller.Versioned.describe))
        return answer


@pytest.fixture
def versions(any_db: str, tmp_path: Path, procs: Procs) -> Iterator[Versions]:
    for version, answer in (("v1", 'f"v1: {self.count}"'), ("v2", 'f"v2 saw {self.count} bumps"')):
        (tmp_path / version).mkdir()
        (tmp_path / version / "versioned_workflow.py").write_text(VERSION.format(answer=answer))
    (tmp_path / "worker.py").write_text(WORKER)
    spec = importlib.util.spec_from_file_location("versioned_workflow",
                                                  tmp_path / "v1" / "versioned_workflow.py")
    assert spec is not None and spec.loader is not None
    caller = importlib.util.module_from_spec(spec)
    sys.modules["versioned_workflow"] = caller
    spec.loader.exec_module(caller)
    client = Client(any_db)
    try:
        yield Versions(any_db, tmp_path, procs, client, caller)
    finally:
        client.durable.close()
        sys.modules.pop("versioned_workflow", None)


def test_with_no_worker_serving_the_callers_own_class_answers(versions: Versions) -> None:
    handle = versions.start()
    assert versions.describe(handle) == "v1: 1"
    assert versions.client.durable.kv.keys("temporal.query/") == []  # nobody was asked


def test_a_query_is_answered_by_the_serving_workers_code(versions: Versions) -> None:
    handle = versions.start()
    versions.serve()
    asyncio.run(handle.signal(versions.caller.Versioned.bump))
    assert versions.describe(handle) == "v2 saw 2 bumps"
    asyncio.run(handle.signal(versions.caller.Versioned.finish))
    assert asyncio.run(handle.result()) == 2
    assert asyncio.run(handle.query("describe")) == "v2 saw 2 bumps"  # ended runs too
    assert versions.client.durable.kv.keys("temporal.query/") == []  # each request cleaned up


def test_a_worker_killed_while_answering_leaves_the_caller_answering_itself(
        versions: Versions) -> None:
    handle = versions.start()
    asked = versions.dir / "asked"
    worker = versions.serve(VERSIONED_STALL=str(asked))
    with ThreadPoolExecutor(1) as pool:
        query = pool.submit(versions.describe, handle)
        wait_until(asked.exists, "the worker to take the query")
        worker.kill()
        # bounded: the caller notices the worker's announcement age out, well before it would
        # give up waiting for an answer
        assert query.result(timeout=ANSWER_SECONDS + DEADLINE) == "v1: 1"
    assert versions.client.durable.kv.keys("temporal.query/") == []
    # the run lost nothing: another worker takes it on and completes it once
    versions.serve()
    asyncio.run(handle.signal(versions.caller.Versioned.bump))
    assert versions.describe(handle) == "v2 saw 2 bumps"
    asyncio.run(handle.signal(versions.caller.Versioned.finish))
    assert asyncio.run(handle.result()) == 2


def test_a_serving_worker_removes_what_killed_workers_and_callers_left(any_db: str) -> None:
    long_ago = time.time() - 3600
    client = Client(any_db)
    try:
        kv = client.durable.kv
        kv.set("temporal.worker/Versioned/killed", str(long_ago))
        kv.set("temporal.query/r/abandoned", {"workflow": "Versioned", "name": "describe",
                                              "args": [], "asked": long_ago})
        kv.set("temporal.query/r/other", {"workflow": "Other", "name": "q", "args": [],
                                          "asked": long_ago})

        @workflow.defn(name="Versioned")
        class Versioned:
            @workflow.run
            async def run(self) -> None:
                pass

        async def serve_until_swept() -> None:
            async with Worker(client, task_queue="q", workflows=[Versioned]):
                await wait_until_async(lambda: kv.keys("temporal.query/r/abandoned") == [],
                                       "the worker to sweep the stale keys")

        asyncio.run(serve_until_swept())
        assert "temporal.worker/Versioned/killed" not in kv.keys("temporal.worker/")
        # another workflow's request is for the workers serving it to judge
        assert kv.keys("temporal.query/") == ["temporal.query/r/other"]
    finally:
        client.durable.close()
