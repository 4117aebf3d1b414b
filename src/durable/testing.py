"""Test workflows in process, on a virtual clock: a seven-day sleep takes milliseconds.

    async with durable.testing.TestEnvironment(checkout) as env:
        handle = env.start(checkout, order)
        await env.settle()                        # run what is due now; no time passes
        env.complete_callback(env.pending_callbacks(handle.run_id)[0], {"ok": True})
        assert await env.result(handle) == ...    # time skips to each next due time

The engine, the store (a fresh SQLite file by default) and the SDK are the real ones; only the
clock is virtual. It advances only when nothing is due now, straight to the next due time, so
sleeps, retry backoffs, schedules and callback or signal timeouts complete in order, instantly.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from durable.client import Client, RunHandle
from durable.engine.worker import Worker
from durable.errors import DurableError
from durable.model import Operation, OperationStatus, OperationType, RunInfo
from durable.sdk.executor import WALL_CLOCK
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import Store, open_store

R = TypeVar("R")

__all__ = ["Stuck", "TestEnvironment", "VirtualClock"]


class Stuck(DurableError):
    """The run waits on the outside world (a signal, a callback) and nothing else is due."""


class VirtualClock:
    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the virtual clock only moves forward")
        self._now += seconds

    def advance_to(self, when: float) -> None:
        self._now = max(self._now, when)


class TestEnvironment:
    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, *workflows: Workflow[..., Any], db: str | Store | None = None,
                 start: float | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="durable-test-") if db is None else None
        if self._tmp is not None:
            db = f"sqlite:///{Path(self._tmp.name) / 'test.db'}"
        self.clock = VirtualClock(start)
        self.store = db if isinstance(db, Store) else open_store(db)
        self.client = Client(self.store, clock=self.clock)
        self.worker = Worker(workflows or REGISTRY.values(), self.store, clock=self.clock)
        self._clock_token = WALL_CLOCK.set(self.clock)

    async def __aenter__(self) -> TestEnvironment:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        WALL_CLOCK.reset(self._clock_token)
        self.store.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    @property
    def now(self) -> float:
        return self.clock()

    # -- driving -----------------------------------------------------------------------------
    def start(self, workflow: Workflow[..., R], *args: Any, id: str | None = None) -> RunHandle[R]:
        return self.client.start(workflow, *args, id=id)

    async def settle(self) -> None:
        """Run everything due at the current virtual time; no time passes."""
        await self.worker.run_due()

    async def skip(self, seconds: float) -> None:
        """Let `seconds` of virtual time pass, running everything that falls due meanwhile."""
        target = self.clock() + seconds
        while True:
            due = await self.worker.run_due()
            if due is None or due > target:
                break
            self.clock.advance_to(due)
        self.clock.advance_to(target)
        await self.worker.run_due()

    async def result(self, handle: RunHandle[R]) -> R:
        """Drive the run to its end, skipping time whenever nothing is due, and return its
        result (raising WorkflowFailed as `handle.result()` does)."""
        await self.run_until(lambda: not self.get(handle.run_id).status.live,
                             handle.run_id)
        return handle.result()

    async def run(self, workflow: Workflow[..., R], *args: Any, id: str | None = None) -> R:
        return await self.result(self.start(workflow, *args, id=id))

    async def run_until(self, done: Callable[[], bool], run_id: str | None = None) -> None:
        """Drive the worker, skipping time, until `done()` holds."""
        while not done():
            due = await self.worker.run_due()
            if done():
                return
            if due is None:
                waiting = self._describe_waits(run_id) if run_id else "outside input"
                raise Stuck(f"nothing is due and the condition does not hold: waiting on "
                            f"{waiting}; send it with env.signal / env.complete_callback")
            self.clock.advance_to(due)

    # -- the outside world -------------------------------------------------------------------
    def signal(self, run_id: str, name: str, payload: Any = None) -> None:
        self.client.signal(run_id, name, payload)

    def complete_callback(self, callback_id: str, result: Any = None) -> None:
        self.client.complete_callback(callback_id, result)

    def fail_callback(self, callback_id: str, error: str | BaseException) -> None:
        self.client.fail_callback(callback_id, error)

    def heartbeat_callback(self, callback_id: str) -> None:
        self.client.heartbeat_callback(callback_id)

    def cancel(self, run_id: str) -> RunInfo:
        return self.client.cancel(run_id)

    # -- inspection --------------------------------------------------------------------------
    def get(self, run_id: str) -> RunInfo:
        return self.client.get(run_id)

    def operations(self, run_id: str) -> list[Operation]:
        return self.client.operations(run_id)

    def pending_callbacks(self, run_id: str) -> list[str]:
        """Ids of the run's callbacks still waiting to be resolved, oldest first."""
        return self.client.pending_callbacks(run_id)

    def _describe_waits(self, run_id: str) -> str:
        waits = [f"{op.sub_type} {op.name or op.callback_id!r}" for op in self.operations(run_id)
                 if op.type is OperationType.CALLBACK and op.status is OperationStatus.STARTED]
        return ", ".join(waits) or "nothing the engine can see"
