"""The invocation loop: claim runs that have work, invoke their workflows, record how it ended.

Many runs execute as asyncio tasks in one process. A worker sleeps until the earliest due time it
knows of or until the store reports a commit from anyone (a new run, a signal, a callback), so
resume latency has no polling floor. Leases are renewed while invocations run; a worker that dies
stops renewing and its runs are taken over when the leases expire.

Sooner where the database can tell that a worker is gone. On PostgreSQL each worker holds a
session whose end the server sees when the process dies (`Store.presence`), and its peers, which
look every PRESENCE_LOOK seconds, take its runs over at once: the lease is then only the
fallback for a worker alive but cut off, or frozen. On one host (SQLite), a worker that starts
takes over the runs of those of its host whose pids are gone. A worker that has lost its own
presence takes nothing new, and trusts no lease it holds, until it has it back: its peers may
be taking its runs.

Scheduled workflows: every worker serving one fires its ticks (the engine makes each tick one run
however many fire it) and sleeps no longer than until the next tick. Queued workflows: the worker
tells the engine each queue's limits as data at claim time, so limits hold across all workers.
All times come from the injected `clock`, so a virtual clock can drive timers, ticks and rate
windows.

The database going away (a PostgreSQL outage, an SQLite write lock held past the busy timeout, a
full disk) does not stop a worker: it says so (`_Outage`), claims nothing while its writes fail,
and carries on when one succeeds again. An invocation whose checkpoint could not be written
stops there, as one fenced out does; its lease is given back once the store answers, and the
run resumes from what is durable. Nor does user code stop it: `sys.exit()` in a step or a
workflow is their failure (`code_failure`); only SIGTERM or SIGINT stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, TypeVar

from durable.engine import events, machine, metrics, schedules, streams, telemetry
from durable.engine.retention import Retention
from durable.errors import DurableError, InvocationError, StaleToken, StoreUnavailable, UsageError
from durable.model import (
    RETRY_INVOCATIONS,
    CheckpointResult,
    ErrorObject,
    ExecutionStatus,
    Invocation,
    InvocationOutput,
    InvocationRetry,
    InvocationStatus,
    OperationAction,
    OperationType,
    OperationUpdate,
    RunInfo,
    WorkflowHandler,
    code_failure,
)
from durable.model.events import Event, Trigger, check_responders
from durable.model.queues import Queue, ServedQueue
from durable.model.schedule import Schedule
from durable.model.settings import WorkflowSettings
from durable.store import Store, Tx, open_store
from durable.store.base import Presence
from durable.store.runs import Fence

log = logging.getLogger("durable.worker")
T = TypeVar("T")

PRESENCE_LOOK = 0.25
"""How often a worker looks whether a peer's presence is gone: a dead peer's runs resume within
about two looks (it must be seen gone twice) and a claim."""
SAFETY_NAP = 5.0
"""Longest sleep without looking at the store: only matters if a wake-up was lost."""

OUTAGE_LOG_EVERY = 10.0
"""While the store stays unavailable, how often the worker says so again."""
OUTAGE_PAUSES = (0.05, 1.0)
"""The first and the longest pause between attempts while the store is unavailable."""

_SERVING: dict[asyncio.AbstractEventLoop, list[Worker]] = {}
"""The workers serving on each event loop, for `serving_here`."""


def serving_here(db_url: str, workflow: str) -> Worker | None:
    """A worker on the running event loop that serves `workflow` from the database `db_url`
    and has a slot free: a run started here may go straight to it (`Worker.reserve`)."""
    try:
        workers = _SERVING.get(asyncio.get_running_loop(), [])
    except RuntimeError:  # no loop: a synchronous caller
        return None
    return next((w for w in workers if w.takes(db_url, workflow)), None)


class Servable(Protocol):
    """Anything with a name and a handler the engine can invoke, e.g. an SDK `Workflow`.

    Optionally also (read with getattr, so wrappers that lack them still serve): `schedule`, a
    `Schedule` or None, with `schedule_input(tick: datetime) -> str | None` encoding a tick as the
    run's input; `queue`, a `Queue` or None; `retention`, seconds (`retention_seconds`) or
    None; and `execution_timeout`, seconds or None.
    """

    @property
    def name(self) -> str: ...

    @property
    def handler(self) -> WorkflowHandler: ...


@dataclass(frozen=True, slots=True)
class _Scheduled:
    workflow: str
    schedule: Schedule
    encode: Callable[[datetime], str | None]
    declared: bool = True  # in the workflow's code; else created through the API

    def fire(self, tx: Tx, now: float) -> str | None:
        """Fire the tick due at `now`, if it is due (see `schedules.fire_schedule`)."""
        tick = self.schedule.latest(now)
        data = None if tick is None else self.encode(self.schedule.moment(tick))
        return schedules.fire_schedule(tx, self.workflow, self.schedule, tick, data, now,
                                       self.declared)


@dataclass
class WorkerStats:
    invocations: int = 0
    completed: int = 0
    stale: int = 0


class Worker:
    def __init__(self, workflows: Iterable[Servable], db: str | Store | None = None, *,
                 concurrency: int = 100, lease_seconds: float = 30.0,
                 clock: Callable[[], float] = time.time, drain_seconds: float = 30.0,
                 fire_schedules: bool = True,
                 invocation_retry: InvocationRetry = RETRY_INVOCATIONS,
                 retention: float | None = None) -> None:
        """`fire_schedules=False` serves scheduled workflows' runs without firing their ticks:
        for one-shot runners (`durable.run`) that serve every registered workflow only so that
        child workflows can run.

        A handler raising `InvocationError` (a function that could not be reached, or crashed
        before answering) is invoked again as `invocation_retry` says, or as `retries` says
        for its workflow; the run never fails of it.

        With `retention` (seconds), the worker also deletes runs of any workflow that ended
        longer ago than that, in the background (`engine/retention.py`); a workflow's own
        `retention` (`@workflow(retention=...)`) overrides it for that workflow's runs, and
        makes the worker sweep even without a global one."""
        if not lease_seconds > 0:
            raise UsageError(f"lease_seconds must be more than 0, not {lease_seconds!r}")
        workflows = list(workflows)
        self.handlers: dict[str, WorkflowHandler] = {w.name: w.handler for w in workflows}
        self.timeouts: dict[str, float] = {
            w.name: t for w in workflows if (t := getattr(w, "execution_timeout", None))}
        self.schedules = [_Scheduled(w.name, s, getattr(w, "schedule_input", _no_input))
                          for w in workflows if fire_schedules
                          and (s := getattr(w, "schedule", None)) is not None]
        # Workflows without a schedule in their code, which one created through the API may
        # give them: read from the store every SAFETY_NAP (`_read_stored_schedules`).
        self._tick_inputs = {w.name: getattr(w, "schedule_input", _no_input) for w in workflows
                             if fire_schedules and getattr(w, "schedule", None) is None}
        # Event triggers (`engine/events.py`), with how each encodes an event as a run's input.
        self.triggers: dict[str, tuple[Trigger, Callable[[Event], str | None]]] = {
            w.name: (t, getattr(w, "trigger_input", _no_event_input)) for w in workflows
            if fire_schedules and (t := getattr(w, "trigger", None)) is not None}
        check_responders({name: t for name, (t, _) in self.triggers.items()})
        self._stored: list[_Scheduled] = []
        self._stored_read = -math.inf
        self.queues = served_queues(workflows)
        self.store = db if isinstance(db, Store) else _open(db)
        self.store.refuse_if_unwritable()  # damaged: nothing to serve until `durable doctor`
        self.handlers = telemetry.instrument(self.handlers, self.store)  # as is when tracing is off
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.drain_seconds = drain_seconds
        self.invocation_retry = invocation_retry
        self.settings = workflow_settings(workflows, self.queues)
        self.retention = (Retention(self.store, retention, clock)
                          if retention is not None or any(ws.retention for ws in self.settings)
                          else None)
        self.retries: dict[str, InvocationRetry] = {}  # by workflow, where not the default
        self._pid_scope = pid_scope()
        self.owner = (f"{self._pid_scope or host_name()}:{os.getpid()}:"
                      f"{uuid.uuid4().hex[:8]}")
        self.stats = WorkerStats()
        self._outage = _Outage(self.store.where)
        self._caught_up = False  # `_catch_up` done
        self._abandoned: dict[str, int] = {}  # run id -> token: invocations cut off by the store
        self._inflight: dict[str, asyncio.Task[None]] = {}
        # run id -> monotonic time by which its lease must have been renewed for this process
        # to go on believing it holds it: two thirds of a lease after the claim or renewal
        # began, a third of a lease short of when the store lets another worker take it.
        self._held_until: dict[str, float] = {}
        self._finishing = 0  # invocations whose outcome is being written
        self._reserved = 0  # slots promised to runs being started in this process (`reserve`)
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._on_finish: list[Callable[[str], None]] = []
        self._next_tick: dict[str, float] = {}  # by workflow; none yet: due at once
        self._absent = False  # its presence is not (yet, or no longer) shown: claim nothing

    @property
    def names(self) -> list[str]:
        return sorted(self.handlers)

    def run(self) -> None:
        """Run until SIGTERM or SIGINT, then drain: finish in-flight invocations, claim nothing."""
        asyncio.run(self.run_async(install_signals=True))

    def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def run_async(self, *, install_signals: bool = False,
                        until: Callable[[], bool] | None = None) -> None:
        """Serve until stopped, or until `until()` holds (checked after each invocation)."""
        loop = asyncio.get_running_loop()
        self._wake = wake = asyncio.Event()
        self._stopping = False
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)

        def on_commit() -> None:
            loop.call_soon_threadsafe(wake.set)
        unsubscribe = self.store.subscribe(on_commit)
        _SERVING.setdefault(loop, []).append(self)
        heartbeat = asyncio.create_task(self._heartbeat())
        presence = self.store.presence(self.owner)
        self._absent = presence is not None  # until the first look has shown it
        watch = None if presence is None else asyncio.create_task(self._watch(presence))
        sweeps = None if self.retention is None else asyncio.create_task(self.retention.run())
        try:  # whatever fails from here on, the worker stops listening and serving
            while not self._stopping and not (until and until()):
                wake.clear()
                try:
                    await self._catch_up()
                    timeout = await self._poll()
                except Exception as e:  # the store failed: say so, try again in a while
                    self._outage.failed("claiming runs", e)
                    timeout = self._outage.pause()
                if timeout is None or timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), min(timeout or SAFETY_NAP,
                                                                SAFETY_NAP))
        finally:
            _SERVING[loop].remove(self)
            if not _SERVING[loop]:
                del _SERVING[loop]
            unsubscribe()
            await self._drain()
            heartbeat.cancel()
            if watch is not None:
                watch.cancel()
                assert presence is not None
                await asyncio.to_thread(presence.close, holding=bool(self._inflight))
            if sweeps is not None:
                sweeps.cancel()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def register_triggers(self) -> None:
        """Record this worker's event triggers now, ahead of serving (`_catch_up` records them
        again). A server calls it before it takes requests: a trigger dispatches only events
        published after it was recorded, so a webhook delivered the moment the server is up
        would otherwise start nothing. A store not answering is left to the catch-up, which
        waits the outage out; the server starts all the same."""
        if not self.triggers:
            return
        triggers = {name: trigger for name, (trigger, _) in self.triggers.items()}
        try:
            await self._write(lambda tx: events.register_triggers(tx, triggers, self.clock()))
        except Exception:
            log.warning("could not record the event triggers of %s before serving; the "
                        "worker records them once the store answers", ", ".join(triggers),
                        exc_info=True)

    async def _catch_up(self) -> None:
        """What serving begins with, once the store answers, in one write (the writer, not
        the pool of readers, which may take a while to reconnect after an outage): record what
        the code says of its workflows for processes without it (their queues, retentions),
        take over the runs of dead workers of this host, and give parked runs another try."""
        if self._caught_up:
            return
        names, clock = self.names, self.clock

        settings = self.settings
        triggers = {name: trigger for name, (trigger, _) in self.triggers.items()}

        def catch_up(tx: Tx) -> list[RunInfo]:
            tx.register_workflows(settings, clock())
            events.register_triggers(tx, triggers, clock())
            taken = self._reclaim_from_dead_neighbours(tx, clock())
            parked = tx.parked_runs(names)
            if parked:  # new code may fit their history now
                machine.unpark(tx, parked, clock())
            return taken
        for run in await self._write(catch_up):  # counted once the write holds, not per try
            metrics.LEASE_TAKEOVERS.labels(run.workflow).inc()
        self._caught_up = True

    def _reclaim_from_dead_neighbours(self, tx: Tx, now: float) -> list[RunInfo]:
        """Leases held by workers of this host whose process is gone (killed, crashed) expire
        now, so a restarted worker resumes their runs at once instead of after the lease.

        Only where a pid names one process for sure (`pid_scope`): the same boot of the same
        host, and the same PID namespace. A worker in another container sharing the host name
        cannot see this one's processes, and must not take a pid it cannot see for a dead one;
        its runs come free when their leases run out, as on another machine."""
        if self._pid_scope is None:
            return []
        prefix, taken = f"{self._pid_scope}:", []
        for owner in tx.lease_owners(prefix):
            if owner != self.owner and not _process_alive(owner, prefix):
                log.warning("worker %s of this host is gone: taking over its runs now",
                            owner, extra={"lost_worker": owner})
                taken += machine.take_over(tx, owner, now, self.lease_seconds)
        return taken

    async def _write(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> T:
        """`store.awrite`, noting that the store answered (an outage is over when a write
        goes through, or is refused by the engine's rules)."""
        try:
            pending = self.store.awrite(fn, fence)
            if self.store.writer.last_flush_inline:
                # Its write commits in the next pass, in `_flush` queued before this resumes:
                # one pass per write instead of two (`BatchWriter.last_flush_inline`).
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError:
                    pending.cancel()  # as awaiting it would have
                    raise
            result = await pending
        except DurableError:
            self._outage.answered()
            raise
        self._outage.answered()
        return result

    async def run_due(self) -> float | None:
        """Run every invocation due now, and what they make due now, until nothing is; return
        when the next one falls due (None: nothing will without the outside world)."""
        await self._catch_up()
        while True:
            timeout = await self._poll()
            if self._inflight:
                await asyncio.wait(list(self._inflight.values()))
            elif timeout is None:
                return None
            elif timeout > 0:  # the caller waits it out: a virtual clock only moves there
                return self.clock() + timeout

    async def _poll(self) -> float | None:
        """Fire due schedule ticks and start what is due; return how long to sleep (None:
        until woken, 0: look again), never past the next tick."""
        next_tick = await self._fire_due_ticks()
        more_events = await self._dispatch_events()
        timeout = await self._claim_and_start()
        if more_events:
            timeout = 0.0
        if next_tick is None:
            return timeout
        to_tick = max(next_tick - self.clock(), 0.0)
        return to_tick if timeout is None else min(timeout, to_tick)

    async def _fire_due_ticks(self) -> float | None:
        """Fire the schedules whose next tick has come, in one transaction; return the earliest
        next tick of all (None: no schedules)."""
        now = self.clock()
        if self._tick_inputs and now - self._stored_read >= SAFETY_NAP:
            await self._read_stored_schedules(now)
        scheduled = [*self.schedules, *self._stored]
        if not scheduled:
            return None
        due = [s for s in scheduled if self._next_tick.get(s.workflow, now) <= now]
        if due:
            fired = await self._write(lambda tx: [s.fire(tx, now) for s in due])
            for s, run_id in zip(due, fired, strict=True):
                if run_id is not None:
                    metrics.SCHEDULE_TICKS.labels(s.workflow).inc()
                    log.info("schedule of %s fired: run %s", s.workflow, run_id,
                             extra={"run_id": run_id, "workflow": s.workflow})
            for s in due:
                self._next_tick[s.workflow] = s.schedule.next_after(now)
        return min(self._next_tick.values())

    async def _dispatch_events(self) -> bool:
        """Start the runs of the events this worker's triggers have not dispatched yet, one
        batch per trigger in one transaction; returns whether a batch was full (more wait)."""
        if not self.triggers:
            return False
        now, triggers = self.clock(), self.triggers

        def dispatch(tx: Tx) -> dict[str, list[tuple[Event, str | None]]]:
            return {name: events.dispatch(tx, name, trigger, encode, now)
                    for name, (trigger, encode) in triggers.items()}
        done = await self._write(dispatch)
        for workflow, dispatched in done.items():
            for event, run_id in dispatched:
                if run_id is not None:
                    log.info("event %s #%d (%s) started run %s of %s", event.topic, event.seq,
                             event.id, run_id, workflow,
                             extra={"run_id": run_id, "workflow": workflow})
        return any(len(d) == events.DISPATCH_BATCH for d in done.values())

    async def _read_stored_schedules(self, now: float) -> None:
        """Take up the schedules created through the API for workflows this worker serves, and
        drop those deleted: a change takes effect here within SAFETY_NAP. A schedule new or
        changed is evaluated at once."""
        states = await self.store.aread(lambda tx: tx.list_schedules("api"))
        self._stored_read = now
        known = {s.workflow: s.schedule for s in self._stored}
        self._stored = [_Scheduled(st.workflow, schedules.stored(st), encode, declared=False)
                        for st in states if (encode := self._tick_inputs.get(st.workflow))]
        for workflow in known.keys() | {s.workflow for s in self._stored}:
            if known.get(workflow) != next((s.schedule for s in self._stored
                                            if s.workflow == workflow), None):
                self._next_tick.pop(workflow, None)

    @property
    def next_tick(self) -> float | None:
        """When this worker fires a schedule next (clock time); None without schedules, or
        before it first looked at them."""
        return min(self._next_tick.values(), default=None)

    # -- runs started in this process: no claim, no wake-up through the database -------------
    def takes(self, db_url: str, workflow: str) -> bool:
        """Whether a run of `workflow` started from `db_url` may come straight here: this worker
        serves it from that database, is not stopping, has a slot free, and no queue must admit
        the run first."""
        return (not self._stopping and not self._absent and self.store.url == db_url
                and workflow in self.handlers
                and self._free() > 0 and all(workflow not in q.workflows for q in self.queues))

    def reserve(self) -> tuple[str, float]:
        """Hold a slot for a run being started in this process; returns the lease (owner,
        until) to create it with (`machine.start_run`). Hand its invocation to `adopt`, or call
        `unreserve` if the start made no new run.

        A start in the process that will run it then costs one transaction: the run is created
        already leased, so the worker neither hears of it through the database nor claims it,
        and no other worker can. Should this process die, the lease runs out like any other.
        """
        self._reserved += 1
        return self.owner, self.clock() + self.lease_seconds

    def unreserve(self) -> None:
        self._reserved -= 1

    async def adopt(self, claimed: machine.Claimed, lease: tuple[str, float]) -> None:
        """Run the invocation of a run started with the `lease` `reserve` gave."""
        self._reserved -= 1
        if not self._stopping:
            # Granted when `reserve` read the clock: as long ago as that clock says (never
            # less than nothing, whatever a virtual clock does meanwhile).
            waited = max(0.0, self.clock() - (lease[1] - self.lease_seconds))
            self._start([claimed], time.monotonic() - waited)
            return
        run_id, token, clock = claimed.invocation.run_id, claimed.token, self.clock
        await self._write(lambda tx: machine.release_unstarted(tx, run_id, token, clock()))

    def _free(self) -> int:
        return self.concurrency - len(self._inflight) - self._reserved

    async def _claim_and_start(self) -> float | None:
        """Start what is due; return how long to sleep (None: until woken, 0: look again)."""
        free = self._free()
        if free <= 0 or self._absent:
            return None
        names, queues, clock = self.names, self.queues, self.clock
        granted = time.monotonic()
        claim = self._claimer(clock(), free)
        abandoned = list(self._abandoned.items())

        def claim_and_look_ahead(tx: Tx) -> tuple[list[machine.Claimed], float | None]:
            for run_id, token in abandoned:  # free again at once, for this claim too
                machine.release_unstarted(tx, run_id, token, clock())
            claimed = claim(tx)
            if len(claimed) == free:
                return claimed, None
            # Fewer than we could take: when does the next run fall due, to sleep until then?
            # Asked in the same transaction, so the claim and the answer cost one round trip
            # to the writer and none to the pool.
            return claimed, machine.next_due(tx, clock(), names, queues)
        claimed, due = await self._write(claim_and_look_ahead)
        for run_id, _ in abandoned:
            del self._abandoned[run_id]
        self._start(claimed, granted)
        if len(claimed) == free:
            return 0
        return None if due is None else max(due - clock(), 0.001 if not claimed else 0.0)

    def _claimer(self, now: float, free: int) -> Callable[[Tx], list[machine.Claimed]]:
        names, queues, owner, lease = self.names, self.queues, self.owner, self.lease_seconds
        timeouts = self.timeouts
        return lambda tx: machine.claim(tx, owner, now, free, lease, names, queues, timeouts)

    def _start(self, claimed: list[machine.Claimed], granted: float) -> None:
        """Invoke the runs a claim leased; `granted`: the monotonic time the claim read the
        clock its leases run from. Trust runs from then, not from when the claim came back:
        a claim that waited behind other writes, or a process frozen before it heard the
        answer, must not believe in a lease for longer than the store grants it."""
        _note_takeovers(claimed)
        for c in claimed:
            _note_admission(c)
            self._held_until[c.invocation.run_id] = granted + self._trust()
            self._inflight[c.invocation.run_id] = asyncio.create_task(self._invoke(c))

    def _trust(self) -> float:
        return self.lease_seconds * 2 / 3

    def _holds(self, run_id: str) -> bool:
        """Whether this process may still take itself to hold the run's lease: false once it
        went unrenewed too long (the process was paused, or the store was away)."""
        return time.monotonic() < self._held_until.get(run_id, 0.0)

    async def _invoke(self, c: machine.Claimed) -> None:
        inv, token = c.invocation, c.token
        clock = self.clock

        store_failed: list[BaseException] = []
        inv.leased = functools.partial(self._holds, inv.run_id)
        # Whether the run may have a child run to stop when it ends (`finish_invocation`).
        invokes = any(op.type is OperationType.CHAINED_INVOKE for op in inv.operations.values())
        checkpoint_seconds = metrics.CHECKPOINT_SECONDS.labels(inv.workflow)
        chunks = streams.ChunkWriter(inv, token, self._write)

        async def checkpointer(updates: list[OperationUpdate]) -> CheckpointResult:
            nonlocal invokes
            invokes = invokes or any(u.type is OperationType.CHAINED_INVOKE for u in updates)
            began = time.perf_counter()
            try:
                await chunks.flush()  # a step's chunks are kept before its outcome is
                logs = inv.take_logs()
                result = await self._write(
                    lambda tx: machine.checkpoint(tx, inv.run_id, token, updates, clock(), logs),
                    machine.checkpoint_fence(inv.run_id, token, updates))
                checkpoint_seconds.observe(time.perf_counter() - began)
                metrics.step_attempts(inv.workflow, updates, clock())
                _log_step_failures(inv, updates, result)
                return result
            except DurableError:
                raise
            except Exception as e:  # the database failed, not the engine's rules
                # Whether it committed is unknown: the invocation stops here, as one fenced
                # out does (the SDK lets no user code catch that), and the run resumes from
                # what is durable.
                store_failed.append(e)
                raise StaleToken(f"run {inv.run_id!r}: a checkpoint could not be written") from e

        started = time.perf_counter()
        self.stats.invocations += 1
        try:
            try:
                out = await self.handlers[inv.workflow](inv, checkpointer)
            except StaleToken:
                if not store_failed and await self._terminated(inv):
                    self.stats.stale += 1
                    return
                if not store_failed and not self._holds(inv.run_id):
                    # Stopped before a step body, unsure of its lease (it went unrenewed):
                    # give the lease back at once if it is still ours, rather than let it run
                    # out, so the run resumes from what is durable.
                    log.info("run %s: lease went unrenewed for %.1fs, stopping the invocation "
                             "before its next step", inv.run_id, self._trust())
                    self._abandoned[inv.run_id] = token
                    return
                if not store_failed:
                    self.stats.stale += 1
                    log.info("run %s: lease lost mid-invocation, stopping it", inv.run_id)
                    return
                out = None
            except InvocationError as e:
                metrics.INVOCATION_FAILURES.labels(inv.workflow).inc()
                log.warning("run %s: invocation failed, will retry: %s", inv.run_id, e,
                            extra=fields(inv))
                await self._retry(inv, token, e, time.perf_counter() - started)
                return
            except BaseException as e:  # a fault outside user code, or sys.exit() in it
                if not code_failure(e):
                    raise  # this invocation was cancelled: the worker is shutting down
                log.exception("run %s: invocation crashed", inv.run_id)
                out = InvocationOutput(InvocationStatus.FAILED, error=ErrorObject.from_exception(e))
            if store_failed or out is None:  # not the workflow's outcome: leave the run as it is
                self._abandon(inv.run_id, token, "writing a checkpoint", store_failed[0])
                return
            duration = time.perf_counter() - started
            # Its slot frees now. Alone in finishing, it takes the next due runs in the same
            # transaction: one commit fewer per run. When others are finishing too (a burst,
            # such as many timers falling due at once), it leaves its slot to the loop, which
            # refills every slot freed meanwhile with one claim once they have committed: each
            # claim walks the head of runs_ready, past the rows the other workers just took,
            # so a claim per slot would make every run pay for a walk. Nor does it claim while
            # the store is failing: the loop finds out when it is back.
            free = 0 if (self._stopping or self._finishing or self._outage.down
                         or self._absent) else self._free() + 1
            try:
                await chunks.flush()  # what a body timed out but still running wrote last
            except StaleToken:
                self.stats.stale += 1
                return
            except Exception as e:
                self._abandon(inv.run_id, token, "writing stream chunks", e)
                return
            granted = time.monotonic()
            claim = self._claimer(clock(), free)
            logs = inv.take_logs()

            def finish_and_claim(tx: Tx) -> list[machine.Claimed]:
                machine.finish_invocation(tx, inv.run_id, token, out, clock(), duration, logs,
                                          children=invokes)
                return claim(tx) if free > 0 else []
            self._finishing += 1
            try:
                self._start(await self._write(finish_and_claim, machine.finish_fence(
                    inv.run_id, token, c.alone and not invokes and free == 0)), granted)
            except StaleToken:
                self.stats.stale += 1
                await self._terminated(inv)
                return
            except Exception as e:
                self._abandon(inv.run_id, token, "recording how an invocation ended", e)
                return
            finally:
                self._finishing -= 1
            if out.status is not InvocationStatus.PENDING:
                self.stats.completed += 1
            if out.parked is not None:
                log.warning("run %s: parked: %s: %s", inv.run_id, out.parked.type,
                            _one_line(out.parked.message), extra=fields(inv))
        finally:
            await chunks.close()
            if self._inflight.get(inv.run_id) is asyncio.current_task():
                del self._inflight[inv.run_id]  # not a newer invocation that re-claimed the run
                self._held_until.pop(inv.run_id, None)
            for cb in self._on_finish:
                cb(inv.run_id)
            if self._wake is not None:
                self._wake.set()

    async def _terminated(self, inv: Invocation) -> bool:
        """Whether the invocation was fenced out because its run was terminated (an operator's
        act, nothing wrong here, so said at info level), rather than taken over; asked only
        once fenced out, which is rare."""
        try:
            run = await self.store.aread(lambda tx: tx.get_run(inv.run_id))
        except Exception:  # the store is away: what it would say is unknown
            return False
        if run is None or run.status is not ExecutionStatus.STOPPED:
            return False
        log.info("run %s terminated while in flight: its invocation stopped, and nothing of it "
                 "after the stop was recorded", inv.run_id, extra=fields(inv))
        return True

    def _abandon(self, run_id: str, token: int, what: str, error: BaseException) -> None:
        """An invocation of `run_id` ended without its outcome written, the store failing:
        its lease is given back with the next claim that goes through (`_claim_and_start`),
        rather than left to run out."""
        self._outage.failed(f"{what} of run {run_id}", error)
        log.debug("run %s: left to be invoked again once the store answers: %s", run_id, error)
        self._abandoned[run_id] = token

    async def _retry(self, inv: Invocation, token: int, e: InvocationError,
                     duration: float) -> None:
        policy, clock = self.retries.get(inv.workflow, self.invocation_retry), self.clock
        try:
            await self._write(lambda tx: machine.retry_invocation(
                tx, inv.run_id, token, e.error, clock(), duration, policy))
        except StaleToken:
            self.stats.stale += 1
        except Exception as failed:
            self._abandon(inv.run_id, token, "recording a failed invocation", failed)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self._renew()

    async def _renew(self) -> None:
        """Renew the leases of the runs in flight, and trust again those still held."""
        if not self._inflight:
            return
        began = time.monotonic()
        try:
            renewed = await self._write(functools.partial(
                machine.heartbeat, owner=self.owner, run_ids=list(self._inflight),
                until=self.clock() + self.lease_seconds))
        except Exception as e:  # the database is away: try again next time round
            self._outage.failed("renewing leases", e)
            return
        for run_id in renewed & self._held_until.keys():
            self._held_until[run_id] = began + self._trust()

    async def _watch(self, presence: Presence) -> None:
        """Show this worker's presence, and take over the runs of peers whose presence is gone,
        every PRESENCE_LOOK seconds. Serving waits for the first look to succeed."""
        lost_at: float | None = None
        while True:
            try:
                seen = await asyncio.to_thread(presence.look)
            except Exception as e:
                if not self._absent or lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("worker %s cannot show it is alive (%s); taking no runs and "
                                "starting no step until it can", self.owner, _one_line(e))
                self._absent = True
                for run_id in self._held_until:  # peers may be taking them: trust none
                    self._held_until[run_id] = 0.0
                await asyncio.sleep(PRESENCE_LOOK)
                continue
            if self._absent:
                if lost_at is not None:
                    log.warning("worker %s shows it is alive again after %.1fs", self.owner,
                                time.monotonic() - lost_at)
                if seen.rejoined:  # leases its peers left it are trusted again
                    await self._renew()
                self._absent, lost_at = False, None
                self.wake()
            if seen.gone:
                await self._take_over_gone(seen.gone)
            await asyncio.sleep(PRESENCE_LOOK)

    async def _take_over_gone(self, gone: list[str]) -> None:
        """Take over, now, the runs of peers whose presence is gone, each once: whichever peer
        forgets it first (it is asked again in this transaction whether it is still gone)."""
        now, lease = self.clock(), self.lease_seconds

        def take(tx: Tx) -> dict[str, list[RunInfo]]:
            taken = {owner: machine.take_over(tx, owner, now, lease)
                     for owner in gone if tx.forget_worker(owner)}
            if any(taken.values()):
                tx.notify()  # every peer with a free slot helps take them
            return taken
        try:
            taken = await self._write(take)
        except Exception as e:
            self._outage.failed("taking over the runs of workers gone", e)
            return
        for owner, runs in taken.items():
            for run in runs:
                metrics.LEASE_TAKEOVERS.labels(run.workflow).inc()
            if runs:
                log.warning("worker %s is gone (its database session ended): taking over its "
                            "%d run(s) now: %s", owner, len(runs),
                            ", ".join(r.run_id for r in runs[:5]) + (", ..." if len(runs) > 5
                                                                     else ""),
                            extra={"lost_worker": owner, "run_ids": [r.run_id for r in runs]})
        if any(taken.values()):
            self.wake()

    async def _drain(self) -> None:
        if not self._inflight:
            return
        log.info("draining %d in-flight invocation(s)", len(self._inflight))
        _, pending = await asyncio.wait(list(self._inflight.values()), timeout=self.drain_seconds)
        for task in pending:  # their leases expire and another worker takes over
            task.cancel()


def fields(inv: Invocation, **more: object) -> dict[str, object]:
    """A record's structured fields for an invocation (`extra=`): see cli/logsetup.py."""
    return {"run_id": inv.run_id, "workflow": inv.workflow, **more}


def _note_takeovers(claimed: list[machine.Claimed]) -> None:
    """Count the runs a claim took over, and say so in one line per worker lost: a worker
    that dies holding a hundred runs is one event, not a hundred."""
    lost: dict[str, list[Invocation]] = {}
    for c in claimed:
        if c.lost_by is not None:
            metrics.LEASE_TAKEOVERS.labels(c.invocation.workflow).inc()
            lost.setdefault(c.lost_by, []).append(c.invocation)
    for owner, invs in lost.items():
        if len(invs) == 1:
            log.warning("run %s: taken over from %s, which stopped renewing its lease",
                        invs[0].run_id, owner, extra=fields(invs[0], lost_worker=owner))
            continue
        ids = [inv.run_id for inv in invs]
        log.warning("%d runs taken over from %s, which stopped renewing its leases: %s%s",
                    len(ids), owner, ", ".join(ids[:5]), ", ..." if len(ids) > 5 else "",
                    extra={"run_ids": ids, "lost_worker": owner})


def _note_admission(c: machine.Claimed) -> None:
    """Say and count that a claim admitted a run to its queue, and how long it waited."""
    inv = c.invocation
    if c.admitted is not None:
        queue, waited = c.admitted
        metrics.ADMISSION_WAIT.labels(queue).observe(waited)
        log.info("run %s: admitted by queue %s after %.3fs", inv.run_id, queue, waited,
                 extra=fields(inv, queue=queue))


def _log_step_failures(inv: Invocation, updates: list[OperationUpdate],
                       result: CheckpointResult) -> None:
    """A failed step attempt, retried or final, as one line with the run, step and attempt."""
    for u, op in zip(updates, result.operations, strict=False):
        if u.type is not OperationType.STEP or u.error is None or u.action not in (
                OperationAction.RETRY, OperationAction.FAIL):
            continue
        extra = fields(inv, operation=op.id, attempt=op.attempt, step=op.name)
        what = f"{u.error.type}: {_one_line(u.error.message)}"
        if u.action is OperationAction.RETRY:
            log.warning("run %s: step %s attempt %d failed, retrying in %.3gs: %s",
                        inv.run_id, op.name, op.attempt, u.delay or 0.0, what, extra=extra)
        else:
            log.error("run %s: step %s failed after attempt %d: %s", inv.run_id, op.name,
                      op.attempt, what, extra=extra)


def pid_scope() -> str | None:
    """Where a pid names one process: this host (its name, for people to read), this boot of it
    (pids are reused after a reboot) and this PID namespace (containers on one host each count
    their own pids, and see none of the others'). A worker's lease owner name starts with it:
    `<scope>:<pid>:<nonce>`. None where the kernel does not say (not Linux): then no worker is
    ever judged dead by its pid."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{host_name()}/{boot[:12]}/{namespace}"


HOST_ENV = "DURABLE_WORKER_HOST"


def host_name() -> str:
    """The host a worker's id names: $DURABLE_WORKER_HOST, else the machine's name. Workers
    named for different hosts never judge each other by pid (`pid_scope` differs), as if on
    different machines: what a deployment whose containers share a host name, or a test of
    takeover across hosts, sets it for."""
    return os.environ.get(HOST_ENV) or socket.gethostname()


def _process_alive(owner: str, prefix: str) -> bool:
    """Whether the process named in a lease owner `<prefix><pid>:<nonce>` of this pid scope
    still exists. Unknown shapes count as alive: only a certainly dead owner loses its leases
    early."""
    try:
        pid = int(owner.removeprefix(prefix).split(":")[0])
        os.kill(pid, 0)
    except (ValueError, PermissionError):
        return True
    except ProcessLookupError:
        return False
    return True


def _open(url: str | None) -> Store:
    """The worker's store, waited for while the database cannot be opened for now (not
    reachable, dropping connections, locked, full): a worker is a service, and may well start
    before its database or while it restarts. Bad input (a malformed URL, a role the server
    does not know) still raises at once."""
    outage: _Outage | None = None
    while True:
        try:
            store = open_store(url)
        except StoreUnavailable as e:
            outage = outage or _Outage(e.where)
            outage.failed("opening the database", e)
            time.sleep(outage.pause())
            continue
        if outage is not None:
            outage.answered()
        return store


class _Outage:
    """Whether the store answers the worker's writes, since when not, and what to say about
    it: the first failure at once (what failed, with its run id where it has one), then one
    line every OUTAGE_LOG_EVERY seconds however many writes fail meanwhile, and one line when
    a write goes through again. Measured on the monotonic clock: an outage is real time, even
    under a virtual `clock`."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None
        self._logged = 0.0
        self._failures = 0
        self._pause = OUTAGE_PAUSES[0]

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, what: str, error: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        if self.since is None:
            self.since = self._logged = now
            log.warning("store %s unavailable (%s: %s); not claiming runs until it answers",
                        self.where, what, _one_line(error))
        elif now - self._logged >= OUTAGE_LOG_EVERY:
            self._logged = now
            log.warning("store %s still unavailable after %.0fs (%d attempts failed, the last "
                        "%s: %s)", self.where, now - self.since, self._failures, what,
                        _one_line(error))

    def answered(self) -> None:
        if self.since is not None:
            log.warning("store %s available again after %.1fs; claiming runs again",
                        self.where, time.monotonic() - self.since)
        self.since = None
        self._failures = 0
        self._pause = OUTAGE_PAUSES[0]

    def pause(self) -> float:
        """How long to wait before trying again: doubling up to OUTAGE_PAUSES[1]."""
        pause, self._pause = self._pause, min(self._pause * 2, OUTAGE_PAUSES[1])
        return pause


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _no_event_input(event: Event) -> str | None:
    return None


def _no_input(tick: datetime) -> str | None:
    return None


def workflow_settings(workflows: Iterable[Servable],
                      queues: Iterable[ServedQueue]) -> list[WorkflowSettings]:
    """What the code says of each workflow (its queue, its own retention), for the store."""
    queue_of = {wf: q.queue.name for q in queues for wf in q.workflows}
    return [WorkflowSettings(w.name, queue_of.get(w.name), getattr(w, "retention", None))
            for w in workflows]


def served_queues(workflows: Iterable[Servable]) -> list[ServedQueue]:
    """Group the workflows by the queue they are on; one definition per queue name. Sorted by
    name, so that every worker takes queue locks in the same order (no deadlock between them
    where a dialect locks queues, see `Tx.lock_queue`)."""
    queues: dict[str, Queue] = {}
    members: dict[str, list[str]] = {}
    for w in workflows:
        q: Queue | None = getattr(w, "queue", None)
        if q is None:
            continue
        if queues.setdefault(q.name, q) != q:
            raise UsageError(f"queue {q.name!r} has different limits on workflow {w.name!r} "
                             f"than on {members[q.name][0]!r}; declare each queue once")
        members.setdefault(q.name, []).append(w.name)
    return [ServedQueue(queues[name], tuple(members[name])) for name in sorted(queues)]
