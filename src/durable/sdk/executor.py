"""The machinery behind `Context`: replay of one invocation.

An `Executor` holds the operations the engine handed over, gives every durable call its
deterministic id, answers recorded calls from history, sends new ones to the engine in checkpoints,
and decides when the invocation must end because everything left is waiting on the engine
(a sleep, a retry backoff, a callback, a signal): then every waiter is thrown `Suspend` and the
invocation returns PENDING. Nothing of the run stays in memory after that.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from durable.errors import Cancelled, NonDeterminismError, StaleToken, UsageError
from durable.model import (
    LOG_LINE_CHARS,
    Checkpointer,
    Invocation,
    LogLine,
    Operation,
    OperationAction,
    OperationType,
    OperationUpdate,
    operation_id,
)
from durable.model.streams import StreamChunk
from durable.sdk.serializer import Serializer

if TYPE_CHECKING:
    from durable.sdk.heartbeat import Heartbeat

SETTLE_ROUNDS = 8
"""Loop rounds every live branch must go on waiting on the engine before the invocation
suspends: more than the hops of a wakeup (future, the wait on it, the task it resumes)."""


class Suspend(BaseException):
    """Unwinds a workflow whose every live branch waits on the engine. Never user-visible."""


class _Fenced(BaseException):
    """Another invocation owns the run now: this one must stop without writing or running
    anything more. Never user-visible; the engine sees StaleToken."""


class ContinueAsNew(BaseException):
    """Raised by ctx.continue_as_new: ends this run's history and starts it afresh."""

    def __init__(self, args: tuple[object, ...]) -> None:
        super().__init__()
        self.args_ = args


@dataclass(slots=True)
class Scope:
    """A sequence of operations: the workflow body, or one parallel branch. Ids count within it."""

    executor: Executor
    parent_id: str | None
    counter: int = 0
    busy: bool = False

    def next_id(self) -> tuple[str, int]:
        self.counter += 1
        return operation_id(self.parent_id, self.counter), self.counter

    def exclusive(self, what: str) -> Scope:
        """One durable await at a time per scope: concurrent ones would race for ids. For
        `with scope.exclusive(what):`, which frees the scope when it ends; the scope is its own
        context manager, as a generator-based one costs every step several calls more."""
        if self.busy:
            raise UsageError(
                f"{what} was started while another durable operation of the same scope was still "
                "running (plain asyncio.gather or create_task over durable calls?): use "
                "ctx.gather(...) so each branch gets its own deterministic scope")
        self.busy = True
        return self

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.busy = False


@dataclass(frozen=True, slots=True)
class StepRun:
    """What a step body can know about itself."""

    run_id: str
    operation_id: str
    attempt: int
    heartbeat: Heartbeat | None = None  # None: a body that cannot report progress (a check)


class Deferred:
    """An update checkpointed in the background after a delay, unless settled first: nearly
    every step settles before it is due, and a START then travels with the step's outcome.

    A timer, not a task asleep: a task would cost every short step a start and a cancellation
    on the loop."""

    def __init__(self, ex: Executor, update: Callable[[], OperationUpdate], after: float) -> None:
        self._ex = ex
        self._update = update
        self._sent: list[asyncio.Task[list[Operation]]] = []
        self._timer = asyncio.get_running_loop().call_later(after, self._send)

    def _send(self) -> None:
        self._timer.cancel()
        if not self._sent:
            self._sent.append(asyncio.get_running_loop().create_task(
                self._ex.checkpoint(self._update())))

    async def settle(self) -> None:
        """Before anything that must follow the update is checkpointed: call it off if not yet
        on its way, else wait for it (a refusal then fences the invocation as usual)."""
        if not self._sent:
            self._timer.cancel()
            return
        await self._sent[0]

    async def send_now(self) -> None:
        """Something must follow it that cannot travel with it: send it now, if not yet."""
        self._send()
        await self._sent[0]


CURRENT_SCOPE: ContextVar[Scope] = ContextVar("durable_scope")
WALL_CLOCK: ContextVar[Callable[[], float]] = ContextVar("durable_wall_clock", default=time.time)
"""Where now() and step timestamps read the time; durable.testing swaps in a virtual clock."""
CURRENT_STEP: ContextVar[StepRun | None] = ContextVar("durable_step", default=None)


class Executor:
    def __init__(self, invocation: Invocation, checkpointer: Checkpointer,
                 serializer: Serializer, replay_only: bool = False,
                 record_inputs: bool = True) -> None:
        self.run_id = invocation.run_id
        self.workflow = invocation.workflow
        self.ops = invocation.operations
        self.serializer = serializer
        self.record_inputs = record_inputs  # of steps and child runs, unless a step says
        self.cancel_requested = invocation.cancel_requested
        self._leased = invocation.leased
        self._invocation = invocation
        self._log_ranks: dict[str, int] = {}  # where in the code -> lines logged there so far
        self.cancel_raised = False
        self.paused = False  # as the last checkpoint's answer said: hold at the next new operation
        self.responded = False  # ctx.respond was reached: the webhook request has its one answer
        self.root = Scope(self, None)
        self._checkpointer = checkpointer
        # Completeness and the replaying flag follow the workflow body's own operations: inner
        # operations of a branch that a completion policy abandoned are never reached again.
        self._recorded = {op.id for op in self.ops.values() if op.parent_id is None}
        self._unvisited = len(self._recorded)
        self._buffer: list[OperationUpdate] = []
        self._unsaved_values = False
        self.patches: dict[str, bool] = {}
        self._live = 1
        self._waiters: list[asyncio.Future[None]] = []
        self._settling = False  # a suspension check is on its way round the loop
        self.suspending = False
        self.fenced = False
        self.replay_only = replay_only  # stop at the first operation history does not hold
        self.closed_streams: set[str] = set()
        # Streams each step attempt (operation id, attempt) wrote to, and attempts whose
        # values were declared void: a body timed out goes on in its thread, unheard.
        self._streamed: dict[tuple[str, int], set[str]] = {}
        self._void: set[tuple[str, int]] = set()

    # -- replay ------------------------------------------------------------------------------
    @property
    def replaying(self) -> bool:
        """True until the code has passed every recorded operation: what it does now, it did."""
        return self._unvisited > 0

    def begin(self, scope: Scope, type: OperationType, name: str | None,
              sub_type: str | None = None,
              interruptible: bool = True) -> tuple[str, Operation | None]:
        """Allocate the next id in `scope` and return what history recorded there, if anything.

        A new, interruptible operation in a run asked to cancel raises `Cancelled` instead (once).
        """
        if self.suspending:
            raise Suspend
        if self.fenced:
            raise _Fenced
        op_id, position = scope.next_id()
        recorded = self.ops.get(op_id)
        if recorded is None:
            if self.replay_only or self.paused:
                raise Suspend  # paused: ends this branch; gather lets its others finish first
            if interruptible and self.cancel_requested and not self.cancel_raised:
                self.cancel_raised = True
                raise Cancelled
            return op_id, None
        if op_id in self._recorded:
            self._recorded.discard(op_id)
            self._unvisited -= 1
        if recorded.type is not type or recorded.name != name or recorded.sub_type != sub_type:
            where = "the workflow body" if scope.parent_id is None else f"scope {scope.parent_id}"
            raise NonDeterminismError(
                f"run {self.run_id!r} ({self.workflow}): operation #{position} of {where} was "
                f"recorded as {recorded.type} {recorded.name!r}, but the code now calls "
                f"{type} {name!r}. The code changed under a run in flight: restore the old "
                "order, or guard the change with ctx.patched(...). The run is parked until then.")
        if self.replay_only and not recorded.status.is_final:
            raise Suspend
        return op_id, recorded

    def cancelled(self) -> NoReturn:
        """Raise `Cancelled` where the code awaits an operation the engine cancelled."""
        self.cancel_raised = True
        raise Cancelled

    def check_complete(self) -> None:
        """A workflow that finishes without reaching operations it once recorded has diverged."""
        if self._recorded:
            missing = self.ops[next(iter(self._recorded))]
            raise NonDeterminismError(
                f"run {self.run_id!r} ({self.workflow}): the workflow finished, but its history "
                f"has {len(self._recorded)} operation(s) the code no longer reaches, first "
                f"{missing.type} {missing.name!r}. Restore the old code for runs in flight.")

    # -- ctx.logger lines kept with the run ---------------------------------------------------
    def keep_log(self, level: int, render: Callable[[], str]) -> None:
        """Hand a `ctx.logger` line at INFO or above to the engine, to be kept with the run.

        Its key is where it was logged (the step attempt whose body logged it, else the scope
        and how many operations it had begun) and its rank among the lines logged there, so
        a replay that logs it again gives it the same key: the store keeps it once. Lines
        logged while replaying are dropped here already, as the console drops them, except in
        a step body: a body runs only when it runs for real."""
        step = CURRENT_STEP.get()
        op_id: str | None
        attempt: int | None
        if step is not None and step.run_id == self.run_id:
            in_body, op_id, attempt = True, step.operation_id, step.attempt
            where = f"s{op_id}:{attempt}"
        else:
            scope = CURRENT_SCOPE.get(None)
            scope = scope if scope is not None and scope.executor is self else self.root
            in_body, op_id, attempt = False, scope.parent_id, None
            where = f"c{op_id or ''}:{scope.counter}"
        rank = self._log_ranks[where] = self._log_ranks.get(where, 0) + 1
        if level < logging.INFO or (self.replaying and not in_body):
            return
        key = hashlib.blake2b(f"{where}:{rank}".encode(), digest_size=12).hexdigest()
        self._invocation.logs.append(LogLine(
            key, WALL_CLOCK.get()(), logging.getLevelName(level), render()[:LOG_LINE_CHARS],
            op_id, attempt))

    # -- stream chunks of step bodies ---------------------------------------------------------
    def stream_chunk(self, name: str, payload: str, step: StepRun) -> None:
        """Hand the engine a value a step body wrote to stream `name`, now (from any thread)."""
        notify = self._invocation.chunk_written
        if notify is None:
            raise UsageError(
                f"run {self.run_id!r}: stream {name!r} was written from a step body, but this "
                "invocation runs where chunks of a running step cannot be kept (a function "
                "checkpointing to AWS itself, which has no stream channel): write to streams "
                "from workflow code there")
        attempt = (step.operation_id, step.attempt)
        if attempt in self._void:
            return
        self._streamed.setdefault(attempt, set()).add(name)
        self._invocation.chunks.append(StreamChunk(name, payload, step.operation_id,
                                                   step.attempt, WALL_CLOCK.get()()))
        notify()

    def abandon_chunks(self, op_id: str, attempt: int) -> None:
        """The attempt failed: void what it wrote to streams, before its failure is recorded."""
        self._void.add((op_id, attempt))
        names = self._streamed.pop((op_id, attempt), set())
        notify = self._invocation.chunk_written
        if not names or notify is None:
            return
        now = WALL_CLOCK.get()()
        for name in sorted(names):
            self._invocation.chunks.append(StreamChunk(name, None, op_id, attempt, now,
                                                       abandoned=True))
        notify()

    # -- talking to the engine ---------------------------------------------------------------
    def buffer(self, update: OperationUpdate, op: Operation, *, value: bool = False) -> None:
        """Record without waiting: the update travels with the next checkpoint. A `value` (now(),
        uuid4(), a published event...) is something code may act on: `save_values` makes it
        durable before any step body runs, since a body runs before its own checkpoint."""
        self.ops[op.id] = op
        self._buffer.append(update)
        self._unsaved_values = self._unsaved_values or value

    async def save_values(self) -> None:
        """Checkpoint buffered values now, if any: free when there are none (the usual step)."""
        if self._unsaved_values:
            await self.checkpoint()

    def require_lease(self) -> None:
        """Before a step body runs: stop here, as a refused checkpoint would, if the invoking
        process can tell it no longer holds the run's lease (`Invocation.leased`)."""
        if self.fenced or (self._leased is not None and not self._leased()):
            self.fenced = True
            raise _Fenced

    async def checkpoint(self, *updates: OperationUpdate) -> list[Operation]:
        if self.fenced:
            raise _Fenced
        batch = [*self._buffer, *updates]
        self._buffer.clear()
        self._unsaved_values = False
        try:
            result = await self._checkpointer(batch)
        except StaleToken:
            self.fenced = True  # user code may catch Exception: no durable call gets past this
            raise _Fenced from None
        for op in result.operations:
            self.ops[op.id] = op
        self.cancel_requested = self.cancel_requested or result.cancel_requested
        self.paused = result.paused
        return result.operations[len(batch) - len(updates):]

    def checkpoint_later(self, update: Callable[[], OperationUpdate], after: float) -> Deferred:
        """Checkpoint the update `update()` makes in the background once `after` seconds have
        passed (see `Deferred` for how to settle it or send it at once): built only if sent,
        which nearly no step's is."""
        return Deferred(self, update, after)

    async def flush(self) -> None:
        if self._buffer:
            await self.checkpoint()

    # -- suspension --------------------------------------------------------------------------
    async def wait_for_engine(self, op: Operation | None = None) -> None:
        """Block this branch until the engine moves `op`; suspends the invocation once every
        live branch is blocked. Never returns normally in this invocation.

        If the run was cancelled after `op` started (the cancel raced its START), `op` is
        cancelled durably first, so every replay raises `Cancelled` right here too.
        """
        if self.suspending:
            raise Suspend
        if op is not None and self.cancel_requested and not self.cancel_raised:
            await self.checkpoint(OperationUpdate(op.id, op.type, OperationAction.CANCEL,
                                                  name=op.name, parent_id=op.parent_id,
                                                  sub_type=op.sub_type))
            self.cancelled()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._suspend_once_settled()
        try:
            await fut
        finally:
            self._waiters.remove(fut)

    def _all_waiting(self) -> bool:
        return bool(self._waiters) and len(self._waiters) >= self._live

    def _suspend_once_settled(self) -> None:
        """Suspend if every live branch waits on the engine, and still does a few loop rounds
        later. A branch woken in memory (a future's result set by another branch: an
        asyncio.Event, a task it awaits) still counts as waiting until its wakeup has travelled
        through the loop's callbacks and it runs; suspending at once would unwind it although it
        has work to do, and a replay would meet the same moment again."""
        if self._settling or not self._all_waiting():
            return
        self._settling = True
        loop = asyncio.get_running_loop()
        rounds = 0

        def check() -> None:
            nonlocal rounds
            if self.suspending or not self._all_waiting():
                self._settling = False
                return
            rounds += 1
            if rounds < SETTLE_ROUNDS:
                loop.call_soon(check)
                return
            self._settling = False
            self._suspend_all()
        loop.call_soon(check)

    def _suspend_all(self) -> None:
        self.suspending = True
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(Suspend())

    def live_changed(self, delta: int) -> None:
        """Branches started (+) or ended (-), or a parent began (-) or ended (+) waiting on
        them. If what remains live is all waiting on the engine, the invocation suspends."""
        self._live += delta
        if delta < 0:
            self._suspend_once_settled()
