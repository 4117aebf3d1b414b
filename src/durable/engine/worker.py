"""The invocation loop: claim runs that have work, invoke their workflows, record how it ended.

Many runs execute as asyncio tasks in one process. A worker sleeps until the earliest due time it
knows of or until the store reports a commit from anyone (a new run, a signal, a callback), so
resume latency has no polling floor. Leases are renewed while invocations run; a worker that dies
stops renewing and its runs are taken over when the leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from durable.engine import machine
from durable.errors import StaleToken
from durable.model import (
    CheckpointResult,
    ErrorObject,
    InvocationOutput,
    InvocationStatus,
    OperationUpdate,
    WorkflowHandler,
)
from durable.store import Store, open_store

log = logging.getLogger("durable.worker")

SAFETY_NAP = 5.0
"""Longest sleep without looking at the store: only matters if a wake-up was lost."""


class Servable(Protocol):
    """Anything with a name and a handler the engine can invoke, e.g. an SDK `Workflow`."""

    @property
    def name(self) -> str: ...

    @property
    def handler(self) -> WorkflowHandler: ...


@dataclass
class WorkerStats:
    invocations: int = 0
    completed: int = 0
    stale: int = 0


class Worker:
    def __init__(self, workflows: Iterable[Servable], db: str | Store | None = None, *,
                 concurrency: int = 100, lease_seconds: float = 30.0,
                 clock: Callable[[], float] = time.time, drain_seconds: float = 30.0) -> None:
        self.handlers: dict[str, WorkflowHandler] = {w.name: w.handler for w in workflows}
        self.store = db if isinstance(db, Store) else open_store(db)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.drain_seconds = drain_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = WorkerStats()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._on_finish: list[Callable[[str], None]] = []

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
        heartbeat = asyncio.create_task(self._heartbeat())
        names = self.names
        parked = self.store.read(lambda tx: tx.parked_runs(names))
        if parked:  # new code may fit their history now
            await self.store.awrite(lambda tx: machine.unpark(tx, parked, self.clock()))
        try:
            while not self._stopping and not (until and until()):
                wake.clear()
                timeout = await self._claim_and_start()
                if timeout is None or timeout > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), min(timeout or SAFETY_NAP,
                                                                SAFETY_NAP))
        finally:
            unsubscribe()
            await self._drain()
            heartbeat.cancel()
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def run_due(self) -> float | None:
        """Run every invocation due now, and what they make due now, until nothing is; return
        when the next one falls due (None: nothing will without the outside world)."""
        while True:
            timeout = await self._claim_and_start()
            if self._inflight:
                await asyncio.wait(list(self._inflight.values()))
            elif timeout is None:
                return None
            elif timeout > 0.001:
                return self.clock() + timeout

    async def _claim_and_start(self) -> float | None:
        """Start what is due; return how long to sleep (None: until woken, 0: look again)."""
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return None
        names = self.names
        now = self.clock()
        due = self.store.read(lambda tx: tx.next_due(names))
        if due is None:
            return None
        if due > now:
            return due - now
        claimed = await self.store.awrite(
            lambda tx: machine.claim(tx, self.owner, now, free, self.lease_seconds, names))
        for c in claimed:
            run_id = c.invocation.run_id
            self._inflight[run_id] = asyncio.create_task(self._invoke(c))
        return 0 if len(claimed) == free else None if claimed else 0.001

    async def _invoke(self, c: machine.Claimed) -> None:
        inv, token = c.invocation, c.token
        store, clock = self.store, self.clock

        def checkpointer(updates: list[OperationUpdate]) -> asyncio.Future[CheckpointResult]:
            return store.awrite(
                lambda tx: machine.checkpoint(tx, inv.run_id, token, updates, clock()))

        started = time.perf_counter()
        self.stats.invocations += 1
        try:
            try:
                out = await self.handlers[inv.workflow](inv, checkpointer)
            except StaleToken:
                self.stats.stale += 1
                log.info("run %s: lease lost mid-invocation, stopping it", inv.run_id)
                return
            except Exception as e:  # a fault outside user code: record it, keep serving
                log.exception("run %s: invocation crashed", inv.run_id)
                out = InvocationOutput(InvocationStatus.FAILED, error=ErrorObject.from_exception(e))
            duration = time.perf_counter() - started
            try:
                await store.awrite(lambda tx: machine.finish_invocation(
                    tx, inv.run_id, token, out, clock(), duration))
            except StaleToken:
                self.stats.stale += 1
                return
            if out.status is not InvocationStatus.PENDING:
                self.stats.completed += 1
        finally:
            self._inflight.pop(inv.run_id, None)
            for cb in self._on_finish:
                cb(inv.run_id)
            if self._wake is not None:
                self._wake.set()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if self._inflight:
                await self.store.awrite(functools.partial(
                    machine.heartbeat, owner=self.owner, run_ids=list(self._inflight),
                    until=self.clock() + self.lease_seconds))

    async def _drain(self) -> None:
        if not self._inflight:
            return
        log.info("draining %d in-flight invocation(s)", len(self._inflight))
        _, pending = await asyncio.wait(list(self._inflight.values()), timeout=self.drain_seconds)
        for task in pending:  # their leases expire and another worker takes over
            task.cancel()
