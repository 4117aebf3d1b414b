"""The way in from outside a workflow: start runs, signal them, resolve callbacks, read results.

`durable.run` is the one-shot form: start a run and serve it in this process until it ends.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from durable.engine import machine, telemetry
from durable.engine.schedules import schedule_info
from durable.engine.worker import Worker, serving_here
from durable.errors import RunNotFound, UsageError, WorkflowFailed
from durable.model import (
    ErrorObject,
    ExecutionStatus,
    HistoryEvent,
    Invocation,
    Operation,
    RunInfo,
)
from durable.model.schedule import ScheduleInfo
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import Store, Tx, open_store

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    workflow: str
    status: str
    divergence: ErrorObject | None


class RunHandle(Generic[R]):
    def __init__(self, client: Client, run_id: str, workflow: Workflow[R] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.workflow = workflow

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"

    def info(self) -> RunInfo:
        return self.client.get(self.run_id)

    def result(self, timeout: float | None = None) -> R:
        run = self.client.wait(self.run_id, timeout)
        if run.status is not ExecutionStatus.SUCCEEDED:
            raise WorkflowFailed(run.run_id, run.status.value, run.error)
        if self.workflow is not None:
            return self.workflow.decode_result(run.result)
        return None if run.result is None else json.loads(run.result)  # type: ignore[return-value]

    def signal(self, name: str, payload: Any = None) -> None:
        self.client.signal(self.run_id, name, payload)

    def cancel(self) -> None:
        self.client.cancel(self.run_id)


class Client:
    """Talks to the store directly: no server needed. `db` is a URL, a Store, or DURABLE_DB."""

    def __init__(self, db: str | Store | None = None, *, clock: Any = time.time) -> None:
        self.store = db if isinstance(db, Store) else open_store(db)
        self.clock = clock

    def close(self) -> None:
        self.store.close()

    # -- runs --------------------------------------------------------------------------------
    def start(self, workflow: Workflow[R], *args: Any, id: str | None = None) -> RunHandle[R]:
        """Start a run; with `id`, starting again returns the same run (idempotent)."""
        run, _ = self.start_run(workflow.name, workflow.encode_input(args), id)
        return RunHandle(self, run.run_id, workflow)

    async def start_async(self, workflow: Workflow[R], *args: Any,
                          id: str | None = None) -> RunHandle[R]:
        """`start`, for callers on an event loop. Where a worker on this same loop serves the
        workflow with a slot free, the new run is leased to it in the start's transaction and
        runs there at once, without a claim (`Worker.reserve`)."""
        run_id = id or uuid.uuid4().hex
        payload = workflow.encode_input(args)
        worker = serving_here(self.store.url, workflow.name)
        lease = None if worker is None else worker.reserve()

        def start(tx: Tx) -> machine.Claimed | None:
            run, created = _start(tx, run_id, workflow.name, payload, self.clock(), trace, lease)
            return machine.invocation_of(run) if lease is not None and created else None
        claimed = None
        try:
            with telemetry.starting(workflow.name, run_id) as trace:
                claimed = await self.store.awrite(start)
        finally:
            if worker is not None and claimed is None:  # the id existed, or the write failed
                worker.unreserve()
        if worker is not None and claimed is not None:
            await worker.adopt(claimed)
        return RunHandle(self, run_id, workflow)

    def start_by_name(self, workflow: str, input_json: str | None,
                      id: str | None = None) -> RunHandle[Any]:
        """Start from already-encoded JSON input (the CLI and the HTTP API use this)."""
        run, _ = self.start_run(workflow, input_json, id)
        return RunHandle(self, run.run_id, REGISTRY.get(workflow))

    def start_run(self, workflow: str, input_json: str | None, id: str | None = None,
                  headers: Mapping[str, str] | None = None) -> tuple[RunInfo, bool]:
        """Start from encoded input; also says whether the run is new (False: the id existed).
        With tracing on, the caller's trace (or the one `headers` carry) goes into the run."""
        run_id = id or uuid.uuid4().hex
        with telemetry.starting(workflow, run_id, headers) as trace:
            return self.store.write_sync(
                lambda tx: _start(tx, run_id, workflow, input_json, self.clock(), trace))

    def handle(self, run_id: str) -> RunHandle[Any]:
        run = self.get(run_id)
        return RunHandle(self, run_id, REGISTRY.get(run.workflow))

    def get(self, run_id: str) -> RunInfo:
        run = self.store.read(lambda tx: tx.get_run(run_id))
        if run is None:
            raise RunNotFound(run_id)
        return run

    def list(self, status: str | None = None, workflow: str | None = None,
             limit: int = 100, offset: int = 0) -> builtins.list[RunInfo]:
        if status is not None and status not in ExecutionStatus.__members__:
            raise UsageError(f"unknown status {status!r}; use one of "
                             f"{', '.join(ExecutionStatus.__members__)}")
        return self.store.read(lambda tx: tx.list_runs(status, workflow, limit, offset))

    def history(self, run_id: str) -> builtins.list[HistoryEvent]:
        self.get(run_id)
        return self.store.read(lambda tx: tx.history(run_id))

    def operations(self, run_id: str) -> builtins.list[Operation]:
        self.get(run_id)
        return self.store.read(lambda tx: tx.operations(run_id))

    def wait(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """Block until the run has ended; TimeoutError after `timeout` seconds."""
        changed = threading.Event()
        unsubscribe = self.store.subscribe(changed.set)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                changed.clear()
                run = self.get(run_id)
                if run.status is not ExecutionStatus.RUNNING:
                    return run
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"run {run_id!r} is still {run.status} after {timeout}s")
                changed.wait(1.0 if left is None else min(left, 1.0))
        finally:
            unsubscribe()

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        return self.handle(run_id).result(timeout)

    def rerun(self, run_id: str, from_step: str, *args: Any, id: str | None = None,
              input_json: str | None = None) -> RunHandle[Any]:
        """Start a new run that reuses `run_id`'s recorded results before the step named
        `from_step` (or with that operation id) and executes from it; with `args` (or
        `input_json`), under edited input."""
        source = self.get(run_id)
        wf = REGISTRY.get(source.workflow)
        if args:
            if wf is None:
                raise UsageError(f"workflow {source.workflow!r} is not loaded in this process; "
                                 "pass the new input as input_json")
            input_json = wf.encode_input(args)
        new_id = id or uuid.uuid4().hex
        self.store.write_sync(lambda tx: machine.rerun(tx, run_id, new_id, from_step,
                                                       input_json, self.clock()))
        return RunHandle(self, new_id, wf)

    def replay(self, workflows: Sequence[Workflow[Any]],
               run_ids: Sequence[str] = ()) -> builtins.list[ReplayResult]:
        """Replay stored histories against the current code (all runs of `workflows` unless
        `run_ids` are given) and report where each diverges: the check to run before a
        deploy. Nothing is executed or written."""
        by_name = {w.name: w for w in workflows}
        runs = ([self.get(r) for r in run_ids] if run_ids else
                [r for name in by_name for r in self.list(workflow=name, limit=10**9)])
        for run in runs:
            if run.workflow not in by_name:
                raise UsageError(f"run {run.run_id!r} is of workflow {run.workflow!r}, which "
                                 f"is not among the targets ({', '.join(by_name)})")

        async def check_all() -> builtins.list[ReplayResult]:
            out = []
            for run in runs:
                ops = {op.id: op for op in self.operations(run.run_id)}
                invocation = Invocation(run.run_id, run.workflow, run.input, ops,
                                        run.cancel_requested)
                divergence = await by_name[run.workflow].check_history(invocation)
                out.append(ReplayResult(run.run_id, run.workflow, run.status.value, divergence))
            return out
        return asyncio.run(check_all())

    def schedules(self, workflows: Iterable[Workflow[Any]]) -> builtins.list[ScheduleInfo]:
        """The schedules of those `workflows` that have one, in the order given: each with its
        next fire time and the last tick fired (what `durable schedules TARGET...` prints)."""
        scheduled = [(w.name, w.schedule) for w in workflows if w.schedule is not None]
        now = self.clock()
        return self.store.read(lambda tx: [schedule_info(tx, name, schedule, now)
                                           for name, schedule in scheduled])

    # -- talking to runs ---------------------------------------------------------------------
    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        data = DEFAULT_SERIALIZER.encode(payload)
        self.store.write_sync(lambda tx: machine.signal(tx, run_id, name, data, self.clock()))

    def complete_callback(self, callback_id: str, result: Any = None) -> None:
        data = DEFAULT_SERIALIZER.encode(result)
        self.store.write_sync(
            lambda tx: machine.complete_callback(tx, callback_id, data, None, self.clock()))

    def fail_callback(self, callback_id: str, error: str | BaseException) -> None:
        err = (ErrorObject.from_exception(error) if isinstance(error, BaseException)
               else ErrorObject("CallbackError", error))
        self.store.write_sync(
            lambda tx: machine.complete_callback(tx, callback_id, None, err, self.clock()))

    def cancel(self, run_id: str) -> RunInfo:
        return self.store.write_sync(lambda tx: machine.cancel(tx, run_id, self.clock()))

    def get_event(self, run_id: str, key: str, default: Any = None) -> Any:
        """The value the run last published under `key` with ctx.set_event."""
        self.get(run_id)
        found = self.store.read(lambda tx: tx.get_published(run_id, key))
        if found is None or found[0] is None:
            return default
        return json.loads(found[0])


def _start(tx: Tx, run_id: str, workflow: str, input_json: str | None, now: float,
           trace: str | None, lease: tuple[str, float] | None = None) -> tuple[RunInfo, bool]:
    run, created = machine.start_run(tx, run_id, workflow, input_json, now, lease=lease)
    if created:
        telemetry.save(tx, run_id, trace, now)
    return run, created


async def run_async(workflow: Workflow[R], *args: Any, id: str | None = None,
                    db: str | Store | None = None) -> R:
    """Start `workflow` and serve it in this event loop until the run ends; return its result."""
    client = Client(db)
    try:
        handle = await client.start_async(workflow, *args, id=id)
        # Every registered workflow, so that children run; but no schedule ticks: a one-shot
        # run must not start the runs of unrelated schedules that happen to be imported.
        worker = Worker([*REGISTRY.values(), workflow], client.store, fire_schedules=False)

        def ended() -> bool:
            return client.get(handle.run_id).status is not ExecutionStatus.RUNNING
        await worker.run_async(until=ended)
        return handle.result()
    finally:
        if not isinstance(db, Store):
            client.close()


def run(workflow: Workflow[R], *args: Any, id: str | None = None,
        db: str | Store | None = None) -> R:
    """One shot, blocking: start the run on the embedded default store and run it to the end."""
    if _loop_running():
        raise UsageError("durable.run() blocks; inside an event loop use "
                         "`await durable.run_async()`")
    return asyncio.run(run_async(workflow, *args, id=id, db=db))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
