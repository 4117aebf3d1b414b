"""A query is answered with the code the worker runs, as in Temporal, not with the version of
the workflow module the caller happened to import.

Two versions of one module file: the test process (the caller) imports version 1; a worker
process, serving with Temporal's `async with Worker(...)`, imports version 2, whose query handler
answers differently. While that worker serves, the caller's query gets version 2's answer; with
no worker serving, the caller's own class answers, as before.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from durable.temporal._queries import served
from durable.temporal.client import Client
from tests.kit import Procs, wait_until

VERSION = textwrap.dedent("""
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


def import_version(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("versioned_workflow", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["versioned_workflow"] = module
    spec.loader.exec_module(module)
    return module


def test_a_query_is_answered_by_the_serving_workers_code(any_db: str, tmp_path: Path) -> None:
    old, new = tmp_path / "v1" / "versioned_workflow.py", tmp_path / "v2" / "versioned_workflow.py"
    for path, answer in ((old, 'f"v1: {self.count}"'), (new, 'f"v2 saw {self.count} bumps"')):
        path.parent.mkdir()
        path.write_text(VERSION.format(answer=answer))
    worker_script = tmp_path / "worker.py"
    worker_script.write_text(WORKER)
    caller = import_version(old)
    client = Client(any_db)
    procs = Procs(tmp_path)
    try:
        handle = asyncio.run(client.start_workflow(caller.Versioned.run, id="v", task_queue="q"))
        asyncio.run(handle.signal(caller.Versioned.bump))
        # no worker serves it: this process's class answers, replaying the history
        assert asyncio.run(handle.query(caller.Versioned.describe)) == "v1: 1"

        worker = procs.start(sys.executable, str(worker_script), any_db, str(new),
                             log=tmp_path / "worker.log", env={**os.environ})

        def serving() -> bool:
            assert worker.alive, worker.output()
            return asyncio.run(served(client.durable, "Versioned"))

        wait_until(serving, "the worker to announce that it serves Versioned")
        asyncio.run(handle.signal(caller.Versioned.bump))
        assert asyncio.run(handle.query(caller.Versioned.describe)) == "v2 saw 2 bumps"
        asyncio.run(handle.signal(caller.Versioned.finish))
        assert asyncio.run(handle.result()) == 2
        assert asyncio.run(handle.query("describe")) == "v2 saw 2 bumps"  # ended runs too
        assert client.durable.kv.keys("temporal.query/") == []  # each request cleaned up
    finally:
        procs.close()
        client.durable.close()
        sys.modules.pop("versioned_workflow", None)
