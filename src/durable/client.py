"""The way in from outside a workflow: start runs, signal them, resolve callbacks, read results.

`Client` is the one command surface of the outside world: the CLI, the server's routes and
applications all reach the engine through it, and every state change it makes takes its time from
the client's one `clock` (a virtual one under `durable.testing`). A command a caller on an event
loop needs has an `*_async` twin; both run the same transaction function, built once by a private
method, so the two forms cannot drift apart.

`durable.run` is the one-shot form: start a run and serve it in this process until it ends.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

from durable.engine import bulk, events, machine, schedules, telemetry
from durable.engine.metrics import (
    FunctionHealth,
    QueueStats,
    Snapshot,
    function_health,
    queue_stats,
    snapshot,
)
from durable.engine.worker import Worker, serving_here
from durable.errors import OperationNotFound, RunNotFound, UsageError, WorkflowFailed
from durable.model import (
    ChildPolicy,
    ErrorObject,
    ExecutionStatus,
    HistoryEvent,
    Invocation,
    LogLine,
    Operation,
    RunInfo,
)
from durable.model import attributes as _attrs
from durable.model.bulk import DRY_RUN, FILTER_KEYS, RUNNING, BulkJob, checked_action
from durable.model.events import Delivery, Event
from durable.model.listing import Cursor, RunFilter, listed_status, run_filter
from durable.model.queues import PRIORITY_MAX, Enqueue, ServedQueue
from durable.model.schedule import Missed, Schedule, ScheduleInfo
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import Store, Tx, open_store

R = TypeVar("R")

Attributes = Mapping[str, str | float | datetime] | None
"""Searchable attributes given to a run (model/attributes.py says what each type means)."""
EVERY_RUN = RunFilter()
PAGE_LIMIT = 1000
"""Runs a listing page holds at most."""
HISTORY_PAGE = 10_000
"""Events `Client.history` returns at most unless told otherwise."""
PURGE_BATCH = 500
"""Runs a purge deletes per transaction unless told otherwise: see benchmarks/purge.py for
how long one batch holds the write lock."""
BULK_BATCH = 200
"""Runs a bulk job lists per read (each is then acted on in a transaction of its own)."""
LOOK_AGAIN = 1.0
"""Longest a wait for a run's end goes without reading the run (seconds)."""


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
    """Talks to the store directly: no server needed. `db` is a URL, a Store, or DURABLE_DB.
    `clock` gives every time the client writes (a run's start, a signal's arrival, a callback's
    resolution): inject a virtual one and all its callers, the server's routes too, run on it."""

    def __init__(self, db: str | Store | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = db if isinstance(db, Store) else open_store(db)
        self.clock = clock

    def close(self) -> None:
        self.store.close()

    # -- starting runs -----------------------------------------------------------------------
    def start(self, workflow: Workflow[R], *args: Any, id: str | None = None,
              attributes: Attributes = None, existing: bool = False,
              priority: int | None = None, dedup_id: str | None = None) -> RunHandle[R]:
        """Start a run; with `id`, starting again with the same input returns the same run
        (idempotent), with another input is refused (`RunIdTaken`) unless `existing` asks
        for the run that has the id, whatever its input. `attributes`: searchable ones the run
        starts with (`Context.set_attributes`). A run of a workflow on a queue waits ENQUEUED
        for a slot: `priority` (higher first, default 0) orders it among the waiting runs, and
        while a run of the queue with `dedup_id` is live, starting another with it returns
        that run."""
        run, _ = self.start_run(workflow.name, workflow.encode_input(args), id,
                                attributes=attributes, existing=existing, priority=priority,
                                dedup_id=dedup_id)
        return RunHandle(self, run.run_id, workflow)

    async def start_async(self, workflow: Workflow[R], *args: Any, id: str | None = None,
                          attributes: Attributes = None, existing: bool = False,
                          priority: int | None = None,
                          dedup_id: str | None = None) -> RunHandle[R]:
        """`start`, for callers on an event loop (see `start_run_async`)."""
        run, _ = await self.start_run_async(workflow.name, workflow.encode_input(args), id,
                                            attributes=attributes, existing=existing,
                                            priority=priority, dedup_id=dedup_id)
        return RunHandle(self, run.run_id, workflow)

    def start_by_name(self, workflow: str, input_json: str | None, id: str | None = None,
                      attributes: Attributes = None, existing: bool = False,
                      priority: int | None = None,
                      dedup_id: str | None = None) -> RunHandle[Any]:
        """Start from already-encoded JSON input (the CLI and the HTTP API use this)."""
        run, _ = self.start_run(workflow, input_json, id, attributes=attributes,
                                existing=existing, priority=priority, dedup_id=dedup_id)
        return RunHandle(self, run.run_id, REGISTRY.get(workflow))

    def start_run(self, workflow: str, input_json: str | None, id: str | None = None,
                  headers: Mapping[str, str] | None = None,
                  attributes: Attributes = None, existing: bool = False, *,
                  priority: int | None = None,
                  dedup_id: str | None = None) -> tuple[RunInfo, bool]:
        """Start from encoded input; also says whether the run is new (False: the id existed,
        or a live run of its queue has `dedup_id`, and that is the run returned). With
        tracing on, the caller's trace (or the one `headers` carry) goes into the run.
        `attributes` are given to a new run only: starting an existing id changes nothing."""
        run_id, checked = _chosen_or_new(id), _attrs.attributes(attributes)
        enqueue = _enqueue(workflow, priority, dedup_id)
        with telemetry.starting(workflow, run_id, headers) as trace:
            run, created, _ = self.store.write_sync(
                self._start(run_id, workflow, input_json, trace, None, checked, existing,
                            enqueue))
        return run, created

    async def start_run_async(self, workflow: str, input_json: str | None,
                              id: str | None = None, headers: Mapping[str, str] | None = None,
                              attributes: Attributes = None, existing: bool = False,
                              *, priority: int | None = None, dedup_id: str | None = None,
                              ) -> tuple[RunInfo, bool]:
        """`start_run`, for callers on an event loop. Where a worker on this same loop serves
        the workflow with a slot free, the new run is leased to it in the start's transaction
        and runs there at once, without a claim (`Worker.reserve`)."""
        run_id, checked = _chosen_or_new(id), _attrs.attributes(attributes)
        enqueue = _enqueue(workflow, priority, dedup_id)
        worker = serving_here(self.store.url, workflow)
        lease = None if worker is None else worker.reserve()
        claimed = None
        try:
            with telemetry.starting(workflow, run_id, headers) as trace:
                run, created, claimed = await self.store.awrite(
                    self._start(run_id, workflow, input_json, trace, lease, checked,
                                existing, enqueue))
        finally:
            if worker is not None and claimed is None:  # the id existed, or the write failed
                worker.unreserve()
        if worker is not None and claimed is not None:
            assert lease is not None
            await worker.adopt(claimed, lease)
        return run, created

    def _start(self, run_id: str, workflow: str, input_json: str | None, trace: str | None,
               lease: tuple[str, float] | None, attributes: builtins.list[_attrs.Attribute],
               existing: bool, enqueue: Enqueue | None,
               ) -> Callable[[Tx], tuple[RunInfo, bool, machine.Claimed | None]]:
        """The start's transaction: the run, whether it is new, and, when it was created
        leased, the invocation to hand to the worker holding the lease. A workflow whose code
        this process has gets its execution timeout now (a worker leased it: no claim will);
        one known by name only gets it from the worker that first claims the run."""
        declared = REGISTRY.get(workflow)
        timeout = None if declared is None else declared.execution_timeout

        def start(tx: Tx) -> tuple[RunInfo, bool, machine.Claimed | None]:
            now = self.clock()
            run, created = machine.start_run(tx, run_id, workflow, input_json, now, lease=lease,
                                             any_input=existing, enqueue=enqueue,
                                             timeout=timeout)
            if created:
                telemetry.save(tx, run_id, trace, now)
                tx.set_attributes(run_id, attributes)
            claimed = machine.invocation_of(run) if lease is not None and created else None
            return _placed(tx, run), created, claimed
        return start

    # -- reading runs ------------------------------------------------------------------------
    def handle(self, run_id: str) -> RunHandle[Any]:
        run = self.get(run_id)
        return RunHandle(self, run_id, REGISTRY.get(run.workflow))

    def get(self, run_id: str) -> RunInfo:
        return self.store.read(lambda tx: _existing(tx, run_id))

    async def get_async(self, run_id: str) -> RunInfo:
        return await self.store.aread(lambda tx: _existing(tx, run_id))

    def list(self, status: str | None = None, workflow: str | None = None,
             limit: int = 100, offset: int = 0,
             search: str | None = None,
             preview: int | None = None) -> builtins.list[RunInfo]:
        """Runs, newest first; `search`: only those whose id or workflow contains it.
        `preview`: input and result cut to about that many characters, for listings that show
        them rather than decode them. `runs` filters by more, and pages by cursor."""
        chosen = RunFilter(status=listed_status(status), workflow=workflow, search=search)
        return self.store.read(lambda tx: [_placed(tx, run) for run in tx.list_runs(
            chosen, limit, offset, preview=preview)])

    def runs(self, filter: RunFilter = EVERY_RUN, limit: int = 100, cursor: str | None = None,
             offset: int = 0, preview: int | None = None) -> RunListing:
        """A page of the runs `filter` selects (`model.listing.run_filter` makes one from
        text), newest first, from after `cursor` (the previous page's `next_cursor`) on, then
        skipping `offset`; each with its attributes, and how many runs it started."""
        after = None if cursor is None else Cursor.decode(cursor)

        def read(tx: Tx) -> RunListing:
            runs = tx.list_runs(filter, limit + 1, offset, after, preview)
            return _listing(tx, runs[:limit], more=len(runs) > limit)
        return self.store.read(read)

    def runs_changed(self, run_ids: Sequence[str], since: float, newer: RunFilter | None,
                     preview: int | None = None) -> RunListing:
        """What a listing showing `run_ids` needs to stay current: the runs `newer` selects
        (give it `since` too, as a lower bound on creation; None: none), newest first, then
        those of `run_ids` updated at or after `since`. Reads what changed, not the listing."""
        def read(tx: Tx) -> RunListing:
            fresh = [] if newer is None else tx.list_runs(newer, PAGE_LIMIT, preview=preview)
            shown = {r.run_id for r in fresh}
            changed = [r for r in tx.changed_runs(run_ids, since, preview)
                       if r.run_id not in shown]
            return _listing(tx, [*fresh, *changed], more=False)
        return self.store.read(read)

    def attributes(self, run_id: str) -> builtins.list[_attrs.Attribute]:
        """The run's searchable attributes, by key."""
        def read(tx: Tx) -> builtins.list[_attrs.Attribute]:
            _existing(tx, run_id)
            return tx.attributes_of([run_id]).get(run_id, [])
        return self.store.read(read)

    def history(self, run_id: str, after: int = 0,
                limit: int = HISTORY_PAGE) -> builtins.list[HistoryEvent]:
        """The run's events in order, those after event id `after`, at most `limit`."""
        def read(tx: Tx) -> builtins.list[HistoryEvent]:
            _existing(tx, run_id)
            return tx.history(run_id, after, limit)
        return self.store.read(read)

    def history_watermark(self, run_id: str) -> int:
        """The id of the run's newest event (0: none): where a viewer tailing it starts."""
        def read(tx: Tx) -> int:
            _existing(tx, run_id)
            return tx.history_watermark(run_id)
        return self.store.read(read)

    def history_with_operations(self, run_id: str, after: int = 0,
                                ) -> builtins.list[tuple[HistoryEvent, Operation | None]]:
        """`history`, each event with the operation it is about as that operation is now:
        what a viewer tailing a run needs to tell each new event, read in one transaction."""
        def read(tx: Tx) -> builtins.list[tuple[HistoryEvent, Operation | None]]:
            _existing(tx, run_id)
            return [(e, tx.get_operation(run_id, e.operation_id) if e.operation_id else None)
                    for e in tx.history(run_id, after)]
        return self.store.read(read)

    def logs(self, run_id: str, after: int = 0) -> builtins.list[tuple[int, LogLine]]:
        """What the run's workflow logged through `ctx.logger` (the newest lines, bounded by
        LOG_LINES_KEPT), oldest first, each numbered: those numbered after `after`."""
        def read(tx: Tx) -> builtins.list[tuple[int, LogLine]]:
            _existing(tx, run_id)
            return tx.logs(run_id, after)
        return self.store.read(read)

    def metrics(self, queues: Sequence[ServedQueue] = ()) -> Snapshot:
        """What the store holds, for `/metrics`: runs started and ended, the depth of `queues`,
        timers due."""
        return self.store.read(lambda tx: snapshot(tx, self.clock(), queues))

    async def metrics_async(self, queues: Sequence[ServedQueue] = ()) -> Snapshot:
        return await self.store.aread(lambda tx: snapshot(tx, self.clock(), queues))

    def queues(self, queues: Sequence[ServedQueue],
               window: float = 600.0) -> builtins.list[QueueStats]:
        """Each of `queues` as it stands: runs waiting and running, runs admitted over the last
        `window` seconds, since when the oldest waits."""
        return self.store.read(lambda tx: queue_stats(tx, self.clock(), queues, window))

    def function_health(self, names: Sequence[str],
                        window: float = 86400.0) -> dict[str, FunctionHealth]:
        """How invoking each function (by name) went over the last `window` seconds: from its
        runs' history, so every server's invocations count, and a restart loses nothing."""
        return self.store.read(lambda tx: function_health(tx, names, self.clock(), window))

    def operations(self, run_id: str, inputs: bool = False) -> builtins.list[Operation]:
        """The run's operations in order; with `inputs`, with the inputs recorded for them."""
        def read(tx: Tx) -> builtins.list[Operation]:
            _existing(tx, run_id)
            return tx.operations(run_id, inputs)
        return self.store.read(read)

    def operation(self, run_id: str, op_id: str) -> Operation:
        """One operation of the run with its input: by its id, or the start of it that
        `durable show` prints if no other operation's id starts so."""
        def read(tx: Tx) -> Operation:
            _existing(tx, run_id)
            found = tx.get_operation(run_id, op_id, inputs=True)
            if found is not None:
                return found
            matches = [op.id for op in tx.operations(run_id) if op.id.startswith(op_id)]
            if len(matches) != 1 or not op_id:
                raise OperationNotFound(run_id, op_id, len(matches))
            found = tx.get_operation(run_id, matches[0], inputs=True)
            assert found is not None  # read in the same transaction
            return found
        return self.store.read(read)

    def get_event(self, run_id: str, key: str, default: Any = None) -> Any:
        """The value the run last published under `key` with ctx.set_event."""
        def read(tx: Tx) -> tuple[str | None] | None:
            _existing(tx, run_id)
            return tx.get_published(run_id, key)
        found = self.store.read(read)
        if found is None or found[0] is None:
            return default
        return json.loads(found[0])

    # -- waiting for the end -----------------------------------------------------------------
    def wait_ended(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """The run once it has ended, or as it stands after `timeout` seconds (None: no
        limit). Woken by the store's commit notifications, not by polling. The timeout is
        real time whatever the client's clock: it bounds how long the caller is held."""
        with _Commits(self.store, timeout) as commits:
            while (pause := commits.pause(self.get(run_id))) is not None:
                commits.wait(pause)
            return commits.run

    async def wait_ended_async(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """`wait_ended`, for callers on an event loop: holds no thread while it waits."""
        with _Commits(self.store, timeout, asyncio.get_running_loop()) as commits:
            while (pause := commits.pause(await self.get_async(run_id))) is not None:
                await commits.wait_async(pause)
            return commits.run

    def wait(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """Block until the run has ended; TimeoutError after `timeout` seconds."""
        run = self.wait_ended(run_id, timeout)
        if run.status.live:
            raise TimeoutError(f"run {run_id!r} is still {run.status} after {timeout}s")
        return run

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        return self.handle(run_id).result(timeout)

    # -- talking to runs ---------------------------------------------------------------------
    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        data = DEFAULT_SERIALIZER.encode(payload)
        self.store.write_sync(lambda tx: machine.signal(tx, run_id, name, data, self.clock()))

    # -- events ------------------------------------------------------------------------------
    def publish(self, topic: str, data: Any = None, *, id: str | None = None) -> Event:
        """Publish `data` (JSON-encodable) on `topic`: it starts the runs of the workflows
        triggered by it (`@workflow(on_event=topic)`) and reaches the runs subscribed to it.
        Publishing an `id` again returns the event stored first and starts nothing: a
        publisher retrying after a crash gives it the same id. Without one, a fresh id."""
        return self.publish_json(topic, DEFAULT_SERIALIZER.encode(data), id=id)[0]

    def publish_json(self, topic: str, data: str, *, id: str | None = None
                     ) -> tuple[Event, bool]:
        """`publish` of data already JSON text; returns the event and whether it is new."""
        event_id = id if id is not None else uuid.uuid4().hex
        return self.store.write_sync(
            lambda tx: events.publish(tx, topic, event_id, data, self.clock()))

    def events(self, topic: str | None = None, limit: int = 100,
               before: int | None = None) -> builtins.list[Event]:
        """Stored events, newest first; `before`: older than that event number (a page)."""
        return self.store.read(lambda tx: tx.list_events(topic, limit, before))

    def event(self, seq: int) -> tuple[Event, builtins.list[Delivery]]:
        """An event by its number, with what each trigger made of each dispatch of it."""
        return self.store.read(lambda tx: events.show(tx, seq))

    def redispatch(self, seq: int) -> Event:
        """Dispatch the event again: each trigger of its topic starts a new run of it."""
        return self.store.write_sync(lambda tx: events.redispatch(tx, seq))

    def purge_events(self, published_before: float, batch: int = 1000) -> int:
        """Delete the events published before then (epoch seconds); returns how many."""
        deleted = 0
        while True:
            n = self.store.write_sync(lambda tx: tx.delete_events(published_before, batch))
            deleted += n
            if n < batch:
                return deleted

    def complete_callback(self, callback_id: str, result: Any = None) -> None:
        """Resolve a callback with `result`, encoded as JSON."""
        self.resolve_callback(callback_id, DEFAULT_SERIALIZER.encode(result))

    def fail_callback(self, callback_id: str, error: str | BaseException | ErrorObject) -> None:
        """Resolve a callback with an error: the run's wait raises CallbackFailed. A string
        is the message of a `CallbackError`; an ErrorObject carries its own type and data."""
        self.resolve_callback(callback_id, error=_as_error(error, "CallbackError"))

    def resolve_callback(self, callback_id: str, payload: str | None = None,
                         error: ErrorObject | None = None) -> None:
        """Resolve a callback with an already-encoded `payload`, or with `error` if given."""
        self.store.write_sync(self._resolve(callback_id, payload, error))

    async def resolve_callback_async(self, callback_id: str, payload: str | None = None,
                                     error: ErrorObject | None = None) -> None:
        await self.store.awrite(self._resolve(callback_id, payload, error))

    def _resolve(self, callback_id: str, payload: str | None,
                 error: ErrorObject | None) -> Callable[[Tx], str]:
        return lambda tx: machine.complete_callback(tx, callback_id, payload, error,
                                                    self.clock())

    def heartbeat_callback(self, callback_id: str) -> None:
        """Say that whoever holds the callback is still at work: recorded in the run's
        history, and for a callback with a heartbeat timeout, its deadline moves out."""
        self.store.write_sync(self._heartbeat(callback_id))

    async def heartbeat_callback_async(self, callback_id: str) -> None:
        await self.store.awrite(self._heartbeat(callback_id))

    def _heartbeat(self, callback_id: str) -> Callable[[Tx], None]:
        return lambda tx: machine.heartbeat_callback(tx, callback_id, self.clock())

    def cancel(self, run_id: str) -> RunInfo:
        """Ask the run to stop: `Cancelled` is raised in it at its next durable await."""
        return self.store.write_sync(lambda tx: machine.cancel(tx, run_id, self.clock()))

    def terminate(self, run_id: str, reason: str | None = None,
                  children: ChildPolicy = ChildPolicy.TERMINATE,
                  error: ErrorObject | None = None) -> float:
        """End the run STOPPED now, whatever it is doing, without running its handlers or
        compensations (unlike `cancel`); the invocation in flight, if any, is fenced out and
        its running children go as `children` says. `reason` (or `error`, AWS's form) is the
        error the run ends with. Returns when it stopped, or when it had ended already."""
        return self.store.write_sync(self._terminate(run_id, reason, children, error))

    async def terminate_async(self, run_id: str, reason: str | None = None,
                              children: ChildPolicy = ChildPolicy.TERMINATE,
                              error: ErrorObject | None = None) -> float:
        return await self.store.awrite(self._terminate(run_id, reason, children, error))

    def _terminate(self, run_id: str, reason: str | None, children: ChildPolicy,
                   error: ErrorObject | None) -> Callable[[Tx], float]:
        if reason is not None:
            error = ErrorObject("Execution.Stopped", reason)
        return lambda tx: machine.terminate(tx, run_id, error, self.clock(), children)

    # -- deleting runs -------------------------------------------------------------------------
    def delete(self, run_id: str) -> RunInfo:
        """Delete an ended run with its operations, history, signals, published events and
        logs; returns the run as it was. A running run is refused (`RunNotEnded`)."""
        return self.store.write_sync(self._delete(run_id))

    async def delete_async(self, run_id: str) -> RunInfo:
        return await self.store.awrite(self._delete(run_id))

    def _delete(self, run_id: str) -> Callable[[Tx], RunInfo]:
        return lambda tx: machine.delete(tx, run_id)

    def purge(self, ended_before: float, *, workflow: str | None = None,
              batch: int = PURGE_BATCH, limit: int | None = None) -> int:
        """Delete the runs that ended before `ended_before` (of `workflow` only, if given),
        `batch` runs per transaction, so that running work waits for the write lock at most
        one short batch at a time; at most `limit` runs in all (None: every one). Returns how
        many were deleted."""
        if batch < 1:
            raise UsageError(f"a purge batch must hold at least 1 run, not {batch}")
        deleted = 0
        while limit is None or deleted < limit:
            size = batch if limit is None else min(batch, limit - deleted)
            done = self.store.write_sync(self._purge(ended_before, size, workflow))
            deleted += done
            if done < size:
                break
        return deleted

    def _purge(self, ended_before: float, size: int,
               workflow: str | None) -> Callable[[Tx], int]:
        return lambda tx: machine.purge(tx, ended_before, size, workflow)

    # -- operating a run in place: pause, edit, resume ---------------------------------------
    def pause(self, run_id: str, *, by: str = "client") -> RunInfo:
        """Stop invoking the run: a step in flight finishes and is checkpointed, then the run
        holds at its next durable await, PAUSED, until `resume`. `by` is recorded in its
        history as who paused it."""
        return self.store.write_sync(lambda tx: machine.pause(tx, run_id, by, self.clock()))

    def resume(self, run_id: str, *, by: str = "client") -> RunInfo:
        """Run a paused (or parked) run on: what fell due meanwhile takes effect now."""
        return self.store.write_sync(lambda tx: machine.resume(tx, run_id, by, self.clock()))

    def edit_operation(self, run_id: str, operation: str, result: Any = None, *,
                       result_json: str | None = None,
                       error: str | BaseException | ErrorObject | None = None,
                       by: str = "client") -> Operation:
        """Set the recorded outcome of a step (by operation id or name) of a paused or
        parked run: SUCCEEDED with `result` (or `result_json`, already encoded), or FAILED
        with `error` (a string is the message of an `Edited` error). The run's next replay
        sees it; the history records the change, `by` whom and when."""
        payload = result_json if result_json is not None else DEFAULT_SERIALIZER.encode(result)
        failure = None if error is None else _as_error(error, "Edited")
        return self.store.write_sync(lambda tx: machine.edit_operation(
            tx, run_id, operation, None if failure else payload, failure, by, self.clock()))

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
        new_id = _chosen_or_new(id)
        self.store.write_sync(lambda tx: machine.rerun(tx, run_id, new_id, from_step,
                                                       input_json, self.clock()))
        return RunHandle(self, new_id, wf)

    # -- bulk actions ----------------------------------------------------------------------------
    def bulk(self, action: str, *, from_step: str | None = None, reason: str | None = None,
             dry_run: bool = False, batch: int = BULK_BATCH, **filter: Any) -> BulkJob:
        """Apply `action` (model.bulk.ACTIONS; a rerun `from_step`) to every run `filter`
        selects (the keywords of `model.listing.run_filter`, as `durable ls` takes them),
        skipping those it no longer applies to. The job's progress is stored as it goes:
        `bulk_resume` finishes one interrupted. `dry_run`: count what it would do, storing and
        changing nothing."""
        job = self.bulk_create(action, from_step=from_step, reason=reason, dry_run=dry_run,
                               **filter)
        return self._bulk_count(job, batch) if dry_run else self.bulk_resume(job.job_id, batch)

    def bulk_create(self, action: str, *, from_step: str | None = None,
                    reason: str | None = None, dry_run: bool = False,
                    **filter: Any) -> BulkJob:
        """The job `bulk` runs, stored (unless `dry_run`) but not begun: `bulk_resume` runs
        it. Its filter is checked here, before anything is stored."""
        checked_action(action, from_step)
        unknown = sorted(set(filter) - set(FILTER_KEYS))
        if unknown:
            raise UsageError(f"unknown filter {', '.join(unknown)}; a bulk filter takes "
                             f"{', '.join(FILTER_KEYS)}")
        now = self.clock()
        chosen = run_filter(**filter, now=now)
        kept = {**filter, "status": chosen.status, "since": chosen.since, "until": chosen.until}
        job = BulkJob("" if dry_run else f"bulk-{uuid.uuid4().hex[:16]}", action,
                      {k: v for k, v in kept.items() if v not in (None, "", False)},
                      from_step, reason, DRY_RUN if dry_run else RUNNING, now, now)
        if not dry_run:
            self.store.write_sync(lambda tx: tx.insert_bulk_job(job))
        return job

    def bulk_resume(self, job_id: str, batch: int = BULK_BATCH) -> BulkJob:
        """Go on with a bulk job from where it got to (a finished one changes nothing).
        Several callers may go on with one job at once: each run is acted on by the first to
        reach it, the job's row held while it does (`engine.bulk.step`)."""
        job = self.bulk_job(job_id)
        chosen = bulk.job_filter(job)
        while job.status == RUNNING:
            page = self.store.read(partial(bulk.listed, chosen, batch, job.cursor))
            for run in page:
                at = Cursor(run.created_at, run.run_id)
                job = self.store.write_sync(partial(bulk.step, job_id=job_id, at=at,
                                                    now=self.clock()))
            if len(page) < batch:
                job = self.store.write_sync(partial(bulk.finish, job_id=job_id,
                                                    now=self.clock()))
        return job

    def bulk_job(self, job_id: str) -> BulkJob:
        return self.store.read(lambda tx: bulk.get_job(tx, job_id))

    def bulk_jobs(self, limit: int = 100) -> builtins.list[BulkJob]:
        """The newest bulk jobs first."""
        return self.store.read(lambda tx: tx.bulk_jobs(limit))

    def _bulk_count(self, job: BulkJob, batch: int) -> BulkJob:
        chosen = bulk.job_filter(job)
        acted = skipped = 0
        after: Cursor | None = None
        while True:
            page, applying = self.store.read(partial(bulk.page, job, chosen, batch, after))
            acted, skipped = acted + applying, skipped + len(page) - applying
            if len(page) < batch:
                return replace(job, acted=acted, skipped=skipped)
            after = Cursor(page[-1].created_at, page[-1].run_id)

    # -- checking code against histories, schedules ------------------------------------------
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

    def schedules(self, workflows: Iterable[Workflow[Any]] | None = None,
                  ) -> builtins.list[ScheduleInfo]:
        """The schedules of those `workflows` that have one, in the order given: each with its
        next fire time and the last tick fired (what `durable schedules TARGET...` prints).
        Without `workflows`, every schedule stored, by workflow: those declared in code that a
        worker has registered, and those created through `create_schedule`."""
        now = self.clock()
        if workflows is None:
            return self.store.read(lambda tx: schedules.stored_schedules(tx, now))
        scheduled = [(w.name, w.schedule) for w in workflows if w.schedule is not None]
        return self.store.read(lambda tx: [schedules.schedule_info(tx, name, schedule, now)
                                           for name, schedule in scheduled])

    def pause_schedule(self, workflow: str) -> ScheduleInfo:
        """Stop the schedule firing; the ticks that fall while paused never run (see
        `backfill_schedule`). ScheduleNotFound if `workflow` has no stored schedule."""
        return self._schedule_change(workflow, lambda tx, now: schedules.pause(
            tx, workflow, True, now))

    def resume_schedule(self, workflow: str) -> ScheduleInfo:
        """Fire the schedule again from its next tick on."""
        return self._schedule_change(workflow, lambda tx, now: schedules.pause(
            tx, workflow, False, now))

    def create_schedule(self, workflow: str, cron: str, timezone: str = "UTC",
                        missed: str = "skip") -> ScheduleInfo:
        """Give `workflow` a schedule without changing its code (ScheduleExists if it has one):
        a worker serving the workflow, which must have its code, fires it from its next tick,
        taking it up within a few seconds. Bad cron, time zone or policy: UsageError."""
        schedule = Schedule(cron, timezone, cast(Missed, missed))
        return self._schedule_change(workflow, lambda tx, now: schedules.create(
            tx, workflow, schedule, now))

    def delete_schedule(self, workflow: str) -> ScheduleInfo:
        """Delete a schedule made by `create_schedule`; returns it as it was."""
        def delete(tx: Tx) -> ScheduleInfo:
            gone = schedules.stored_info(tx, workflow, self.clock())
            schedules.delete(tx, workflow)
            return gone
        return self.store.write_sync(delete)

    def trigger_schedule(self, workflow: str) -> RunInfo:
        """Start a run of the scheduled workflow now, as if a tick fell now."""
        encode = _tick_encoder(workflow)
        run, _ = self.store.write_sync(lambda tx: schedules.trigger(
            tx, workflow, self.clock(), encode))
        return run

    def backfill_schedule(self, workflow: str, start: float,
                          end: float) -> builtins.list[tuple[RunInfo, bool]]:
        """Start the run of each past tick from `start` to `end` (epoch seconds, included)
        that has none, under the id the schedule gives that tick: a tick already fired, or
        fired meanwhile by a worker, is not run twice. Returns each tick's run and whether this
        call created it."""
        encode = _tick_encoder(workflow)
        return self.store.write_sync(lambda tx: schedules.backfill(
            tx, workflow, start, end, self.clock(), encode))

    def _schedule_change(self, workflow: str,
                         change: Callable[[Tx, float], object]) -> ScheduleInfo:
        def write(tx: Tx) -> ScheduleInfo:
            now = self.clock()
            change(tx, now)
            return schedules.stored_info(tx, workflow, now)
        return self.store.write_sync(write)


@dataclass(frozen=True, slots=True)
class RunListing:
    """A page of runs; `next_cursor` (None: no more) asks `Client.runs` for the next."""

    runs: builtins.list[RunInfo]
    next_cursor: str | None
    attributes: dict[str, builtins.list[_attrs.Attribute]]
    children: dict[str, int]


def _listing(tx: Tx, runs: builtins.list[RunInfo], more: bool) -> RunListing:
    runs = [_placed(tx, run) for run in runs]
    ids = [r.run_id for r in runs]
    last = runs[-1] if runs and more else None
    return RunListing(runs, None if last is None else Cursor(last.created_at, last.run_id).encode(),
                      tx.attributes_of(ids), tx.child_counts(ids))


def _chosen_or_new(run_id: str | None) -> str:
    """The id a new run gets: the caller's (an empty one too, which the id rule refuses, rather
    than a random id the caller did not ask for), else a random one."""
    return uuid.uuid4().hex if run_id is None else run_id


def _as_error(error: str | BaseException | ErrorObject, kind: str) -> ErrorObject:
    """An error as given to a client call; a string is the message of an error of `kind`."""
    if isinstance(error, BaseException):
        return ErrorObject.from_exception(error)
    if isinstance(error, str):
        return ErrorObject(kind, error)
    return error


def _existing(tx: Tx, run_id: str) -> RunInfo:
    run = tx.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return _placed(tx, run)


def _placed(tx: Tx, run: RunInfo) -> RunInfo:
    """The run with its position in its queue, if it is ENQUEUED."""
    if run.status is not ExecutionStatus.ENQUEUED:
        return run
    return replace(run, position=tx.queue_position(run))


def _tick_encoder(workflow: str) -> schedules.Encode:
    """How a tick becomes the input of its run: as the workflow's code says where it is loaded
    here, else as the worker serving it last recorded (`tick_input`), in the default JSON."""
    wf = REGISTRY.get(workflow)
    if wf is not None:
        return lambda state, moment: wf.schedule_input(moment)
    return lambda state, moment: DEFAULT_SERIALIZER.encode(moment) if state.tick_input else None


def _enqueue(workflow: str, priority: int | None, dedup_id: str | None) -> Enqueue | None:
    """How a new run of `workflow` waits for its queue: on the queue the workflow's code,
    loaded in this process, declares; not loaded here, on the one a worker serving it
    recorded (`Tx.workflow_queue`), if any."""
    wf = REGISTRY.get(workflow)
    queue = None if wf is None else wf.queue
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)
                                 or not -PRIORITY_MAX - 1 <= priority <= PRIORITY_MAX):
        raise UsageError(f"priority={priority!r} must be an integer from {-PRIORITY_MAX - 1} to "
                         f"{PRIORITY_MAX} (higher is admitted first)")
    if dedup_id is not None and (not isinstance(dedup_id, str) or not dedup_id):
        raise UsageError(f"dedup_id={dedup_id!r} must be a non-empty string")
    if wf is None:  # the engine finds the queue a worker recorded, or refuses
        return None if priority is None and dedup_id is None else Enqueue(None, priority or 0,
                                                                          dedup_id)
    if queue is None:
        if priority is not None or dedup_id is not None:
            raise UsageError(f"workflow {workflow!r} is on no queue: priority and dedup_id "
                             "order and deduplicate the runs waiting for a queue; declare it "
                             "with @workflow(queue=...)")
        return None
    return Enqueue(queue.name, priority or 0, dedup_id)


class _Commits:
    """One wait for a run to end: the store's commit notifications, received on a thread or on
    an event loop, and the decision, made the same for both, of whether to read the run again.

    Every wait is also bounded by `LOOK_AGAIN`, so a notification lost (a LISTEN connection
    dropped, say) costs at most that long. The event is cleared right after each wake-up and
    before the run is read again, so a commit landing between the read and the next wait is
    never missed."""

    def __init__(self, store: Store, timeout: float | None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._store, self._loop = store, loop
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._changed = threading.Event()  # for a waiting thread
        self._changed_async = asyncio.Event()  # for a waiting task on `loop`
        self.run: RunInfo

    def __enter__(self) -> _Commits:
        self._unsubscribe = self._store.subscribe(self._notify)
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._unsubscribe()

    def _notify(self) -> None:
        if self._loop is None:
            self._changed.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            self._loop.call_soon_threadsafe(self._changed_async.set)

    def pause(self, run: RunInfo) -> float | None:
        """Given the run as just read: None when the wait is over (the run has ended, or time
        is up; `self.run` is the answer), else how long to wait for a commit before reading
        it again."""
        self.run = run
        if not run.status.live:
            return None
        if self._deadline is None:
            return LOOK_AGAIN
        left = self._deadline - time.monotonic()
        return None if left <= 0 else min(left, LOOK_AGAIN)

    def wait(self, seconds: float) -> None:
        self._changed.wait(seconds)
        self._changed.clear()

    async def wait_async(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed_async.wait(), seconds)
        self._changed_async.clear()


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
            return not client.get(handle.run_id).status.live
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
