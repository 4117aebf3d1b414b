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
from collections.abc import (
    AsyncGenerator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from types import TracebackType
from typing import (
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    TypedDict,
    TypeVar,
    Unpack,
    cast,
    overload,
)

from durable.engine import bulk, events, kv, machine, schedules, telemetry
from durable.engine.events import Answer, Responder
from durable.engine.metrics import (
    FunctionHealth,
    QueueStats,
    Snapshot,
    function_health,
    queue_stats,
    snapshot,
)
from durable.engine.worker import Worker, serving_here
from durable.errors import KeyNotFound, OperationNotFound, RunNotFound, UsageError, WorkflowFailed
from durable.model import (
    ChildPolicy,
    ErrorObject,
    ExecutionStatus,
    HistoryEvent,
    Invocation,
    LogLine,
    Operation,
    OperationStatus,
    RunInfo,
)
from durable.model import attributes as _attrs
from durable.model.bulk import DRY_RUN, FILTER_KEYS, RUNNING, BulkJob, checked_action
from durable.model.events import Delivery, Event
from durable.model.kv import (
    KvCommand,
    KvEntry,
    KvOp,
    KvOutcome,
    check_key,
    check_number,
    check_prefix,
)
from durable.model.listing import Cursor, RunFilter, listed_status, run_filter
from durable.model.queues import PRIORITY_MAX, Enqueue, ServedQueue
from durable.model.schedule import Missed, Schedule, ScheduleInfo
from durable.model.streams import StreamEntry, StreamInfo, StreamKind, check_stream_name
from durable.sdk import kv as _kv
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import Store, Tx, open_store

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")

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
STREAM_PAGE = 500
"""Stream entries read per transaction."""


@dataclass(frozen=True, slots=True)
class StreamPage:
    """Entries of a stream after some offset, and whether the stream is over after them: it
    was closed, or the run ended and nothing more is left (nothing can be written after)."""

    entries: list[StreamEntry]
    over: bool


@dataclass(frozen=True, slots=True)
class ReplayResult:
    run_id: str
    workflow: str
    status: str
    divergence: ErrorObject | None


class RunHandle(Generic[R]):
    def __init__(self, client: Client, run_id: str,
                 workflow: Workflow[..., R] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.workflow = workflow

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"

    def info(self) -> RunInfo:
        return self.client.get(self.run_id)

    def result(self, timeout: float | None = None) -> R:
        """The run's result once it has ended, decoded (as the workflow's return annotation
        says, where this process has its code); WorkflowFailed if it did not succeed."""
        return outcome(self.client.wait(self.run_id, timeout), self.workflow)

    def signal(self, name: str, payload: Any = None) -> None:
        self.client.signal(self.run_id, name, payload)

    def cancel(self) -> None:
        self.client.cancel(self.run_id)


def outcome(run: RunInfo, workflow: Workflow[..., R] | None) -> R:
    """What an ended run's handle hands back: its result decoded by the workflow's serializer
    where its code is known, else as plain JSON; WorkflowFailed if it did not succeed."""
    if run.status is not ExecutionStatus.SUCCEEDED:
        raise WorkflowFailed(run.run_id, run.status.value, run.error)
    if workflow is not None:
        return workflow.decode_result(run.result)
    return cast(R, run.result_value)


class StartOptions(TypedDict, total=False):
    """The keywords of `Client.start` (and `AsyncClient.start`), besides the input."""

    id: str | None
    attributes: Attributes
    existing: bool
    priority: int | None
    dedup_id: str | None
class KvClient:
    """`client.kv`: the key-value store shared by all runs, from outside a workflow; the same
    methods as `ctx.kv` (sdk/kv.py), each with an `*_async` twin running the same transaction.
    Each call is a transaction of its own, `mutate` too: its function runs inside it, on the
    value as it stands with the key locked, so it must be quick and may run more than once
    (a PostgreSQL transaction broken by a conflict is run again)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, key: str, default: Any = None, *, as_type: Any = Any) -> Any:
        return _kv.decode(self._read(self._get(key)).value, default, as_type)

    async def get_async(self, key: str, default: Any = None, *, as_type: Any = Any) -> Any:
        return _kv.decode((await self._aread(self._get(key))).value, default, as_type)

    def set(self, key: str, value: Any) -> None:
        self._write(self._set(key, value))

    async def set_async(self, key: str, value: Any) -> None:
        await self._client.store.awrite(self._set(key, value))

    def delete(self, key: str) -> bool:
        """Remove the key; whether it had a value."""
        return self._write(self._delete(key)).ok

    async def delete_async(self, key: str) -> bool:
        return (await self._client.store.awrite(self._delete(key))).ok

    def check_and_set(self, key: str, expected: Any, new: Any) -> bool:
        """Set the key to `new` only if its value equals `expected` (None: it has none)."""
        return self._write(self._check_and_set(key, expected, new)).ok

    async def check_and_set_async(self, key: str, expected: Any, new: Any) -> bool:
        return (await self._client.store.awrite(self._check_and_set(key, expected, new))).ok

    def add(self, key: str, n: int | float = 1) -> int | float:
        """Add `n` to the number the key holds (absent: 0); the new number."""
        return _kv.decode(self._write(self._add(key, n)).value)  # type: ignore[no-any-return]

    async def add_async(self, key: str, n: int | float = 1) -> int | float:
        return _kv.decode((await self._client.store.awrite(self._add(key, n))).value)  # type: ignore[no-any-return]

    def keys(self, prefix: str = "") -> builtins.list[str]:
        return self._read(self._keys(prefix)).keys

    async def keys_async(self, prefix: str = "") -> builtins.list[str]:
        return (await self._aread(self._keys(prefix))).keys

    def mutate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set the key to `fn(old value)` (None if it has none) atomically; the new value."""
        return _kv.decode(self._write(self._mutate(key, fn)).value)

    async def mutate_async(self, key: str, fn: Callable[[Any], Any]) -> Any:
        return _kv.decode((await self._client.store.awrite(self._mutate(key, fn))).value)

    def entry(self, key: str) -> KvEntry:
        """The key as stored (its value as JSON text, version, last write); `KeyNotFound` if
        it has no value."""
        return self._client.store.read(self._entry(key))

    async def entry_async(self, key: str) -> KvEntry:
        return await self._client.store.aread(self._entry(key))

    def entries(self, prefix: str = "", after: str | None = None,
                limit: int = 100) -> builtins.list[KvEntry]:
        """A page of the keys beginning with `prefix` that have a value, in key order, after
        key `after`: their values as JSON text, versions and times of the last write."""
        return self._client.store.read(lambda tx: tx.kv_entries(prefix, after, limit))

    async def entries_async(self, prefix: str = "", after: str | None = None,
                            limit: int = 100) -> builtins.list[KvEntry]:
        return await self._client.store.aread(lambda tx: tx.kv_entries(prefix, after, limit))

    # -- the transaction functions, built once for both forms --------------------------------
    def _read(self, fn: Callable[[Tx], KvOutcome]) -> KvOutcome:
        return self._client.store.read(fn)

    async def _aread(self, fn: Callable[[Tx], KvOutcome]) -> KvOutcome:
        return await self._client.store.aread(fn)

    def _write(self, fn: Callable[[Tx], KvOutcome]) -> KvOutcome:
        return self._client.store.write_sync(fn)

    def _apply(self, cmd: KvCommand) -> Callable[[Tx], KvOutcome]:
        return lambda tx: kv.apply(tx, cmd, self._client.clock())

    def _entry(self, key: str) -> Callable[[Tx], KvEntry]:
        key = check_key(key, "kv.entry")

        def read(tx: Tx) -> KvEntry:
            found = tx.kv_entry(key)
            if found is None:
                raise KeyNotFound(key)
            return found
        return read

    def _get(self, key: str) -> Callable[[Tx], KvOutcome]:
        return self._apply(KvCommand(KvOp.GET, check_key(key, "kv.get")))

    def _set(self, key: str, value: Any) -> Callable[[Tx], KvOutcome]:
        key = check_key(key, "kv.set")
        return self._apply(KvCommand(KvOp.SET, key, _kv.encode(key, value, "kv.set")))

    def _delete(self, key: str) -> Callable[[Tx], KvOutcome]:
        return self._apply(KvCommand(KvOp.DELETE, check_key(key, "kv.delete")))

    def _check_and_set(self, key: str, expected: Any, new: Any) -> Callable[[Tx], KvOutcome]:
        where = "kv.check_and_set"
        key = check_key(key, where)
        return self._apply(KvCommand(
            KvOp.CHECK_AND_SET, key, _kv.encode(key, new, where),
            expected=None if expected is None else _kv.encode(key, expected, where)))

    def _add(self, key: str, n: int | float) -> Callable[[Tx], KvOutcome]:
        return self._apply(KvCommand(KvOp.ADD, check_key(key, "kv.add"),
                                     n=check_number(n, "kv.add")))

    def _keys(self, prefix: str) -> Callable[[Tx], KvOutcome]:
        return self._apply(KvCommand(KvOp.KEYS, check_prefix(prefix, "kv.keys")))

    def _mutate(self, key: str, fn: Callable[[Any], Any]) -> Callable[[Tx], KvOutcome]:
        key = check_key(key, "kv.mutate")

        def new_value(old: str | None) -> str:
            return _kv.encode(key, fn(_kv.decode(old)), "kv.mutate")
        return lambda tx: kv.mutate(tx, key, new_value, self._client.clock())


class Client:
    """Talks to the store directly: no server needed. `db` is a URL, a Store, or DURABLE_DB.
    `clock` gives every time the client writes (a run's start, a signal's arrival, a callback's
    resolution): inject a virtual one and all its callers, the server's routes too, run on it."""

    def __init__(self, db: str | Store | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = db if isinstance(db, Store) else open_store(db)
        self.clock = clock
        self.kv = KvClient(self)

    def close(self) -> None:
        self.store.close()

    # -- starting runs -----------------------------------------------------------------------
    # One overload per input arity checks the arguments against the workflow's parameters
    # (a ParamSpec alone cannot: its *args would forbid the keyword options).
    @overload
    def start(self, workflow: Workflow[[], R], /,
              **options: Unpack[StartOptions]) -> RunHandle[R]: ...
    @overload
    def start(self, workflow: Workflow[[A], R], a: A, /,
              **options: Unpack[StartOptions]) -> RunHandle[R]: ...
    @overload
    def start(self, workflow: Workflow[[A, B], R], a: A, b: B, /,
              **options: Unpack[StartOptions]) -> RunHandle[R]: ...
    @overload
    def start(self, workflow: Workflow[[A, B, C], R], a: A, b: B, c: C, /,
              **options: Unpack[StartOptions]) -> RunHandle[R]: ...
    @overload  # four inputs or more: checked when the run starts
    def start(self, workflow: Workflow[..., R], a: Any, b: Any, c: Any, d: Any, /,
              *more: Any, **options: Unpack[StartOptions]) -> RunHandle[R]: ...

    def start(self, workflow: Workflow[..., R], /, *args: Any,
              **options: Unpack[StartOptions]) -> RunHandle[R]:
        """Start a run; with `id`, starting again with the same input returns the same run
        (idempotent), with another input is refused (`RunIdTaken`) unless `existing` asks
        for the run that has the id, whatever its input. `attributes`: searchable ones the run
        starts with (`Context.set_attributes`). A run of a workflow on a queue waits ENQUEUED
        for a slot: `priority` (higher first, default 0) orders it among the waiting runs, and
        while a run of the queue with `dedup_id` is live, starting another with it returns
        that run."""
        run, _ = self.start_run(workflow.name, workflow.encode_input(args), **options)
        return RunHandle(self, run.run_id, workflow)

    async def start_async(self, workflow: Workflow[..., R], /, *args: Any,
                          **options: Unpack[StartOptions]) -> RunHandle[R]:
        """`start`, for callers on an event loop (see `start_run_async`)."""
        run, _ = await self.start_run_async(workflow.name, workflow.encode_input(args),
                                            **options)
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

    def events(self, run_id: str) -> dict[str, Any]:
        """Everything the run published with ctx.set_event: the latest value per key, decoded."""
        def read(tx: Tx) -> dict[str, str | None]:
            _existing(tx, run_id)
            return tx.published(run_id)
        return {key: None if value is None else json.loads(value)
                for key, value in self.store.read(read).items()}

    def pending_callbacks(self, run_id: str) -> builtins.list[str]:
        """Ids of the run's callbacks still waiting to be resolved, oldest first: what to hand
        to `complete_callback` or `fail_callback`."""
        return [op.callback_id for op in self.operations(run_id)
                if op.callback_id and op.status is OperationStatus.STARTED]
    # -- streams -----------------------------------------------------------------------------
    def streams(self, run_id: str) -> builtins.list[StreamInfo]:
        """The run's streams, by name."""
        return self.store.read(partial(_streams_of, run_id))

    async def streams_async(self, run_id: str) -> builtins.list[StreamInfo]:
        return await self.store.aread(partial(_streams_of, run_id))

    def stream_page(self, run_id: str, name: str, after: int = 0, *,
                    with_abandoned: bool = False, limit: int = STREAM_PAGE) -> StreamPage:
        """One read of stream `name` of the run: the entries after offset `after`."""
        return self.store.read(_stream_page(run_id, name, after, with_abandoned, limit))

    def stream(self, run_id: str, name: str, after: int = 0, *, follow: bool = True,
               with_abandoned: bool = False) -> Iterator[StreamEntry]:
        """The entries of stream `name` of the run after offset `after`, oldest first; with
        `follow`, waiting for more until the stream is closed or the run has ended. Resume
        after a disconnect by passing the last offset seen.

        Values a step attempt wrote come as it writes them; if the attempt dies, an
        `abandoned` entry with the same `attempt_key` follows them: drop them then. Values of
        attempts already known dead when read are left out (`with_abandoned` keeps them).
        Woken by the store's commit notifications (PostgreSQL LISTEN/NOTIFY, SQLite's wake-up
        sockets), each wait bounded by LOOK_AGAIN; no polling in between."""
        read = _stream_reader(run_id, name, after, with_abandoned)
        with _Commits(self.store, None) as commits:
            while True:
                page = self.store.read(read())
                yield from page.entries
                if page.over or not follow:
                    return
                if not page.entries:
                    commits.wait(LOOK_AGAIN)

    async def stream_async(self, run_id: str, name: str, after: int = 0, *,
                           follow: bool = True,
                           with_abandoned: bool = False) -> AsyncGenerator[StreamEntry, None]:
        """`stream`, for callers on an event loop: holds no thread while it waits."""
        read = _stream_reader(run_id, name, after, with_abandoned)
        with _Commits(self.store, None, asyncio.get_running_loop()) as commits:
            while True:
                page = await self.store.aread(read())
                for entry in page.entries:
                    yield entry
                if page.over or not follow:
                    return
                if not page.entries:
                    await commits.wait_async(LOOK_AGAIN)

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
        return _ended(self.wait_ended(run_id, timeout), timeout)

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

    def publish_webhook(self, topic: str, data: str, id: str | None, request: str
                        ) -> tuple[Event, bool, Responder | None]:
        """Publish what a webhook posted (`request`: `WebhookRequest.request_json`), and say
        which trigger answers it, if any."""
        event_id = id if id is not None else uuid.uuid4().hex

        def publish(tx: Tx) -> tuple[Event, bool, Responder | None]:
            event, created = events.publish(tx, topic, event_id, data, self.clock(), request)
            return event, created, events.responder(tx, event)
        return self.store.write_sync(publish)

    async def webhook_answer_async(self, event: Event, responding: Responder,
                                   timeout: float) -> Answer:
        """The answer of the run `responding` names to the webhook request that posted
        `event`, once it has one, or as it stands after `timeout` seconds. Woken by the store's
        commit notifications (the RESPOND step and the run's end both notify), not polling."""
        with _Commits(self.store, timeout, asyncio.get_running_loop()) as commits:
            while True:
                found = await self.store.aread(lambda tx: events.answer(tx, event, responding))
                if found.response is not None or not found.started:
                    return found
                pause = commits.pause_left()
                if pause is None:
                    return found
                await commits.wait_async(pause)

    def list_events(self, topic: str | None = None, limit: int = 100,
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
              input_json: str | None = None, patch: Any = None) -> RunHandle[Any]:
        """Start a new run that reuses `run_id`'s recorded results before the step named
        `from_step` (or with that operation id) and executes from it: under new input if
        given (`args`, or `input_json` already encoded), else under the recorded input with
        `patch` applied as a JSON merge patch (RFC 7386: `{"qty": 2}` changes that field
        only, a null removes one), else under the recorded input. `id`: the new run's (a
        taken one is refused with RunIdTaken)."""
        source = self.get(run_id)
        wf = REGISTRY.get(source.workflow)
        if sum(given is not None for given in (args or None, input_json, patch)) > 1:
            raise UsageError("a rerun takes new input (args or input_json) or a patch of the "
                             "recorded input, not both")
        if args:
            if wf is None:
                raise UsageError(f"workflow {source.workflow!r} is not loaded in this process; "
                                 "pass the new input as input_json")
            input_json = wf.encode_input(args)
        new_id = _chosen_or_new(id)
        self.store.write_sync(lambda tx: machine.rerun(tx, run_id, new_id, from_step,
                                                       input_json, self.clock(), patch))
        return RunHandle(self, new_id, wf)

    # -- bulk actions ----------------------------------------------------------------------------
    def bulk(self, /, action: str, *, from_step: str | None = None, reason: str | None = None,
             dry_run: bool = False, batch: int = BULK_BATCH, **filter: Any) -> BulkJob:
        """Apply `action` (model.bulk.ACTIONS; a rerun `from_step`) to every run `filter`
        selects (the keywords of `model.listing.run_filter`, as `durable ls` takes them),
        skipping those it no longer applies to. The job's progress is stored as it goes:
        `bulk_resume` finishes one interrupted. `dry_run`: count what it would do, storing and
        changing nothing."""
        job = self.bulk_create(action, from_step=from_step, reason=reason, dry_run=dry_run,
                               **filter)
        return self._bulk_count(job, batch) if dry_run else self.bulk_resume(job.job_id, batch)

    def bulk_create(self, /, action: str, *, from_step: str | None = None,
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
    def replay(self, workflows: Sequence[Workflow[..., Any]],
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

    def schedules(self, workflows: Iterable[Workflow[..., Any]] | None = None,
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


def _ended(run: RunInfo, timeout: float | None) -> RunInfo:
    """The run a wait ended with: TimeoutError if it is still live, `timeout` having passed."""
    if run.status.live:
        raise TimeoutError(f"run {run.run_id!r} is still {run.status} after {timeout}s")
    return run


def _as_error(error: str | BaseException | ErrorObject, kind: str) -> ErrorObject:
    """An error as given to a client call; a string is the message of an error of `kind`."""
    if isinstance(error, BaseException):
        return ErrorObject.from_exception(error)
    if isinstance(error, str):
        return ErrorObject(kind, error)
    return error


def _stream_reader(run_id: str, name: str, after: int,
                   with_abandoned: bool) -> Callable[[], Callable[[Tx], StreamPage]]:
    """The reads of one follower of a stream, each after the last entry the previous one
    returned."""
    try:
        check_stream_name(name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise UsageError(f"after={after!r} must be an offset: an integer >= 0 (0: from the "
                         "start)")
    last = [after]

    def read() -> Callable[[Tx], StreamPage]:
        page_of = _stream_page(run_id, name, last[0], with_abandoned, STREAM_PAGE)

        def page(tx: Tx) -> StreamPage:
            found = page_of(tx)
            if found.entries:
                last[0] = found.entries[-1].offset
            return found
        return page
    return read


def _stream_page(run_id: str, name: str, after: int, with_abandoned: bool,
                 limit: int) -> Callable[[Tx], StreamPage]:
    def read(tx: Tx) -> StreamPage:
        # The run before its entries: if it had ended, every entry was written before.
        ended = not _existing(tx, run_id).status.live
        entries = tx.stream_entries(run_id, name, after, limit, with_abandoned)
        if entries:
            closed = entries[-1].kind is StreamKind.CLOSED
        else:  # asked after its end, or not written yet
            info = tx.stream_info(run_id, name)
            closed = info is not None and info.closed
        return StreamPage(entries, closed or (ended and len(entries) < limit))
    return read


def _streams_of(run_id: str, tx: Tx) -> list[StreamInfo]:
    _existing(tx, run_id)
    return tx.streams_of(run_id)


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
        return None if not run.status.live else self.pause_left()

    def pause_left(self) -> float | None:
        """How long to wait for a commit before looking again; None: time is up."""
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


class AsyncRunHandle(Generic[R]):
    """`RunHandle`, for callers on an event loop: every method is awaited."""

    def __init__(self, client: AsyncClient, run_id: str,
                 workflow: Workflow[..., R] | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self.workflow = workflow

    def __repr__(self) -> str:
        return f"<AsyncRunHandle {self.run_id}>"

    async def info(self) -> RunInfo:
        return await self.client.get(self.run_id)

    async def result(self, timeout: float | None = None) -> R:
        """The run's result once it has ended, decoded as `RunHandle.result` does; the wait
        holds no thread."""
        return outcome(await self.client.wait(self.run_id, timeout), self.workflow)

    async def signal(self, name: str, payload: Any = None) -> None:
        await self.client.signal(self.run_id, name, payload)

    async def cancel(self) -> None:
        await self.client.cancel(self.run_id)


class _Face(Generic[P, T]):
    """A `Client` method as a coroutine method of `AsyncClient`, bound to its `sync` client:
    `_native` for a method that has an async form, `_off_loop` for one that runs the very
    same code on a worker thread, so that the store's I/O never blocks the event loop."""

    def __init__(self, bind: Callable[[Client], Callable[P, Coroutine[Any, Any, T]]],
                 doc: str | None) -> None:
        self._bind = bind
        self.__doc__ = doc

    @overload
    def __get__(self, owner: None, kind: type[AsyncClient]) -> _Face[P, T]: ...
    @overload
    def __get__(self, owner: AsyncClient,
                kind: type[AsyncClient]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, owner: AsyncClient | None, kind: type[AsyncClient],
                ) -> _Face[P, T] | Callable[P, Coroutine[Any, Any, T]]:
        return self if owner is None else self._bind(owner.sync)


def _native(method: Callable[Concatenate[Client, P], Coroutine[Any, Any, T]]) -> _Face[P, T]:
    return _Face(lambda client: partial(method, client), method.__doc__)


def _off_loop(method: Callable[Concatenate[Client, P], T]) -> _Face[P, T]:
    def bind(client: Client) -> Callable[P, Coroutine[Any, Any, T]]:
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return await asyncio.to_thread(method, client, *args, **kwargs)
        return call
    return _Face(bind, method.__doc__)


class AsyncClient:
    """`Client`, for callers on an event loop (an async web handler, an agent): every method
    of `Client` under the same name, awaited. It drives the same `Client` (`sync`): the
    commands that have a native async path (start, get, wait, resolve a callback, terminate,
    delete) take it, and holding no thread while they wait; the others run the very same
    method on a worker thread. `async with AsyncClient(db) as client:` closes it after."""

    def __init__(self, db: str | Store | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.sync = Client(db, clock=clock)

    @property
    def store(self) -> Store:
        return self.sync.store

    @property
    def clock(self) -> Callable[[], float]:
        return self.sync.clock

    @property
    def kv(self) -> KvClient:
        """The key-value store: on a loop, await its `*_async` methods
        (`await client.kv.add_async("visits")`)."""
        return self.sync.kv

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, value: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    # -- starting runs: native async -----------------------------------------------------------
    @overload
    async def start(self, workflow: Workflow[[], R], /,
                    **options: Unpack[StartOptions]) -> AsyncRunHandle[R]: ...
    @overload
    async def start(self, workflow: Workflow[[A], R], a: A, /,
                    **options: Unpack[StartOptions]) -> AsyncRunHandle[R]: ...
    @overload
    async def start(self, workflow: Workflow[[A, B], R], a: A, b: B, /,
                    **options: Unpack[StartOptions]) -> AsyncRunHandle[R]: ...
    @overload
    async def start(self, workflow: Workflow[[A, B, C], R], a: A, b: B, c: C, /,
                    **options: Unpack[StartOptions]) -> AsyncRunHandle[R]: ...
    @overload  # four inputs or more: checked when the run starts
    async def start(self, workflow: Workflow[..., R], a: Any, b: Any, c: Any, d: Any, /,
                    *more: Any, **options: Unpack[StartOptions]) -> AsyncRunHandle[R]: ...

    async def start(self, workflow: Workflow[..., R], /, *args: Any,
                    **options: Unpack[StartOptions]) -> AsyncRunHandle[R]:
        """`Client.start`; a worker on this loop serving the workflow takes the run at once."""
        handle = await self.sync.start_async(workflow, *args, **options)
        return AsyncRunHandle(self, handle.run_id, workflow)

    async def start_by_name(self, workflow: str, input_json: str | None, id: str | None = None,
                            attributes: Attributes = None, existing: bool = False,
                            priority: int | None = None,
                            dedup_id: str | None = None) -> AsyncRunHandle[Any]:
        """`Client.start_by_name`: from already-encoded JSON input."""
        run, _ = await self.sync.start_run_async(workflow, input_json, id,
                                                 attributes=attributes, existing=existing,
                                                 priority=priority, dedup_id=dedup_id)
        return AsyncRunHandle(self, run.run_id, REGISTRY.get(workflow))

    start_run = _native(Client.start_run_async)

    # -- handles -------------------------------------------------------------------------------
    async def handle(self, run_id: str) -> AsyncRunHandle[Any]:
        run = await self.get(run_id)
        return AsyncRunHandle(self, run_id, REGISTRY.get(run.workflow))

    async def rerun(self, run_id: str, from_step: str, *args: Any, id: str | None = None,
                    input_json: str | None = None, patch: Any = None) -> AsyncRunHandle[Any]:
        """`Client.rerun`."""
        handle = await asyncio.to_thread(self.sync.rerun, run_id, from_step, *args, id=id,
                                         input_json=input_json, patch=patch)
        return AsyncRunHandle(self, handle.run_id, handle.workflow)

    # -- reading and waiting ---------------------------------------------------------------
    get = _native(Client.get_async)
    wait_ended = _native(Client.wait_ended_async)
    metrics = _native(Client.metrics_async)

    async def wait(self, run_id: str, timeout: float | None = None) -> RunInfo:
        """The run once it has ended; TimeoutError after `timeout` seconds."""
        return _ended(await self.wait_ended(run_id, timeout), timeout)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        return await (await self.handle(run_id)).result(timeout)

    # -- talking to runs ---------------------------------------------------------------------
    resolve_callback = _native(Client.resolve_callback_async)
    heartbeat_callback = _native(Client.heartbeat_callback_async)
    terminate = _native(Client.terminate_async)
    delete = _native(Client.delete_async)

    async def complete_callback(self, callback_id: str, result: Any = None) -> None:
        """Resolve a callback with `result`, encoded as JSON."""
        await self.resolve_callback(callback_id, DEFAULT_SERIALIZER.encode(result))

    async def fail_callback(self, callback_id: str,
                            error: str | BaseException | ErrorObject) -> None:
        """Resolve a callback with an error (see `Client.fail_callback`)."""
        await self.resolve_callback(callback_id, error=_as_error(error, "CallbackError"))

    # -- streams: native async -----------------------------------------------------------------
    def stream(self, run_id: str, name: str, after: int = 0, *, follow: bool = True,
               with_abandoned: bool = False) -> AsyncGenerator[StreamEntry, None]:
        """`Client.stream`, as an async iterator that holds no thread while it waits."""
        return self.sync.stream_async(run_id, name, after, follow=follow,
                                      with_abandoned=with_abandoned)

    streams = _native(Client.streams_async)

    # -- everything else: the Client's own method, off the loop --------------------------------
    list = _off_loop(Client.list)
    runs = _off_loop(Client.runs)
    runs_changed = _off_loop(Client.runs_changed)
    attributes = _off_loop(Client.attributes)
    history = _off_loop(Client.history)
    history_watermark = _off_loop(Client.history_watermark)
    history_with_operations = _off_loop(Client.history_with_operations)
    logs = _off_loop(Client.logs)
    queues = _off_loop(Client.queues)
    function_health = _off_loop(Client.function_health)
    operations = _off_loop(Client.operations)
    operation = _off_loop(Client.operation)
    get_event = _off_loop(Client.get_event)
    publish = _off_loop(Client.publish)
    publish_json = _off_loop(Client.publish_json)
    publish_webhook = _off_loop(Client.publish_webhook)
    list_events = _off_loop(Client.list_events)
    event = _off_loop(Client.event)
    redispatch = _off_loop(Client.redispatch)
    purge_events = _off_loop(Client.purge_events)
    events = _off_loop(Client.events)
    pending_callbacks = _off_loop(Client.pending_callbacks)
    stream_page = _off_loop(Client.stream_page)
    signal = _off_loop(Client.signal)
    cancel = _off_loop(Client.cancel)
    purge = _off_loop(Client.purge)
    pause = _off_loop(Client.pause)
    resume = _off_loop(Client.resume)
    edit_operation = _off_loop(Client.edit_operation)
    bulk = _off_loop(Client.bulk)
    bulk_create = _off_loop(Client.bulk_create)
    bulk_resume = _off_loop(Client.bulk_resume)
    bulk_job = _off_loop(Client.bulk_job)
    bulk_jobs = _off_loop(Client.bulk_jobs)
    replay = _off_loop(Client.replay)
    schedules = _off_loop(Client.schedules)
    pause_schedule = _off_loop(Client.pause_schedule)
    resume_schedule = _off_loop(Client.resume_schedule)
    create_schedule = _off_loop(Client.create_schedule)
    delete_schedule = _off_loop(Client.delete_schedule)
    trigger_schedule = _off_loop(Client.trigger_schedule)
    backfill_schedule = _off_loop(Client.backfill_schedule)


async def run_async(workflow: Workflow[..., R], *args: Any, id: str | None = None,
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


def run(workflow: Workflow[..., R], *args: Any, id: str | None = None,
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
