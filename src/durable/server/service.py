"""What the API, the webhooks and the UI do alike: start a run from JSON, wait for one to end.

Starting checks input against the workflow when the server has it loaded (`--worker` targets),
exactly as `durable start --input` does, so input that cannot fit is refused with a 400 instead
of becoming a FAILED run. A workflow the server has not loaded is started by name with the JSON
taken as its encoded input: the worker that serves it decodes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from typing import Any

from durable.errors import RunNotFound
from durable.model import ExecutionStatus, RunInfo
from durable.server.deps import ServerState
from durable.store import Store
from durable.views.jsonio import JsonValue, workflow_args


def start(state: ServerState, workflow: str, given: JsonValue | None, run_id: str | None,
          headers: Mapping[str, str] | None = None) -> tuple[RunInfo, bool]:
    """Start (or find, by id) a run; returns it and whether it is new."""
    wf = state.workflows.get(workflow)
    if wf is not None:
        payload = wf.encode_input(workflow_args(wf, given))
    else:
        payload = None if given is None else json.dumps(given.value)
    return state.client.start_run(workflow, payload, run_id, headers)


async def wait_ended(store: Store, run_id: str, timeout: float) -> RunInfo:
    """The run once it has ended, or as it stands after `timeout` seconds. Wakes on the store's
    commit notifications rather than polling, and holds no thread while it waits."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()

    def on_commit() -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(changed.set)
    unsubscribe = store.subscribe(on_commit)
    deadline = loop.time() + timeout
    try:
        while True:
            changed.clear()
            run = await store.aread(lambda tx: tx.get_run(run_id))
            if run is None:
                raise RunNotFound(run_id)
            left = deadline - loop.time()
            if run.status is not ExecutionStatus.RUNNING or left <= 0:
                return run
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 1.0))
    finally:
        unsubscribe()


def given(fields: set[str], value: Any) -> JsonValue | None:
    """`input` as the CLI's `--input`: absent is no input, `null` is the value null."""
    return JsonValue(value) if "input" in fields else None
