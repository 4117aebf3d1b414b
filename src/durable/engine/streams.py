"""Durable streams in the engine: appending what workflow code and step bodies write, marking
the values of dead attempts, and the writer that keeps a running step's chunks as they come.

Each entry is written with its run's fencing token checked, so an invocation whose run was
taken over writes nothing more; and a claim, which hands the run a new token, marks in the
same transaction every earlier attempt that did not succeed as abandoned. Together: an attempt's
values all have lower offsets than its `abandoned` marker (model/streams.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from itertools import groupby

from durable.errors import StaleToken
from durable.model import Invocation, Operation, OperationStatus, OperationType
from durable.model.streams import StreamChunk, StreamKind
from durable.store.streams import AttemptKey, NewEntry
from durable.store.tx import Tx

log = logging.getLogger(__name__)

CHUNKS_PER_WRITE = 1000
"""Most chunks one transaction appends: a body streaming faster than they are written never
holds the write lock (SQLite's, one stream's row) for long."""


def record_write(tx: Tx, run_id: str, name: str, payload: str | None, op_id: str,
                 now: float) -> None:
    """Workflow code wrote `payload` to stream `name`: append it, in the transaction that
    records the operation, so that it is written once however often the run replays."""
    _append(tx, run_id, name, [NewEntry(StreamKind.VALUE, payload, op_id, None, None, now)])


def record_close(tx: Tx, run_id: str, name: str, op_id: str, now: float) -> None:
    _append(tx, run_id, name, [NewEntry(StreamKind.CLOSED, None, op_id, None, None, now)])


def write_chunks(tx: Tx, run_id: str, token: int, chunks: Sequence[StreamChunk]) -> None:
    """Append what step bodies of the invocation holding `token` wrote; StaleToken if it no
    longer holds the run (it must write nothing more: its attempts are abandoned)."""
    if not chunks:
        return
    if tx.fenced_run(run_id, token) is None:
        raise StaleToken(f"run {run_id!r}: stream chunks rejected, their invocation is no "
                         "longer current")
    for name, group in groupby(chunks, key=lambda c: c.stream):
        batch = list(group)
        keys = [AttemptKey(run_id, name, c.operation_id, c.attempt, token) for c in batch]
        tx.add_stream_attempts(list(dict.fromkeys(
            k for k, c in zip(keys, batch, strict=True) if not c.abandoned)))
        _append(tx, run_id, name, [
            NewEntry(StreamKind.ABANDONED if c.abandoned else StreamKind.VALUE, c.value,
                     c.operation_id, c.attempt, token, c.at) for c in batch])
        tx.settle_stream_attempts(
            [k for k, c in zip(keys, batch, strict=True) if c.abandoned], abandoned=True)


def abandon_lost(tx: Tx, operations: Mapping[str, Sequence[Operation]], now: float) -> None:
    """At a claim of these runs (by run id, with their operations): every attempt of an
    earlier invocation that wrote values is over. One whose step succeeded is settled; any
    other was lost with its invocation (a crash, a lease taken over, a refused checkpoint),
    and its streams get its `abandoned` marker."""
    live = tx.live_stream_attempts(list(operations))
    if not live:
        return
    succeeded = {(run_id, op.id) for run_id, ops in operations.items() for op in ops
                 if op.type is OperationType.STEP and op.status is OperationStatus.SUCCEEDED}
    done = [k for k in live if (k.run_id, k.op_id) in succeeded]
    lost = [k for k in live if (k.run_id, k.op_id) not in succeeded]
    tx.settle_stream_attempts(done, abandoned=False)
    tx.settle_stream_attempts(lost, abandoned=True)
    for k in lost:
        _append(tx, k.run_id, k.name, [NewEntry(StreamKind.ABANDONED, None, k.op_id, k.attempt,
                                                k.token, now)])


def abandon_at_end(tx: Tx, run_id: str, now: float) -> None:
    """The run is terminated, maybe with a step running: that attempt is lost with it, as at a
    claim, for no claim comes after. Its invocation, fenced out now, can write nothing after
    the marker. (A run times out only where no invocation is in flight: at a claim, or as its
    invocation ends.)"""
    if tx.live_stream_attempts([run_id]):
        abandon_lost(tx, {run_id: tx.operations(run_id)}, now)


def _append(tx: Tx, run_id: str, name: str, entries: list[NewEntry]) -> None:
    if tx.append_stream(run_id, name, entries) is None:
        # Workflow code cannot write after its close (the SDK refuses); a step body still
        # running when it closed can: what it wrote is dropped, the run goes on.
        log.warning("run %s: %d entries written to stream %r after it was closed were dropped",
                    run_id, len(entries), name)
        return
    tx.notify()


class ChunkWriter:
    """Writes a running invocation's stream chunks as step bodies add them: one write in flight
    at a time, taking whatever came meanwhile, so a body streaming tokens fast costs a
    transaction per batch, not per token. `flush` writes what is left and returns once it is
    kept: the invocation calls it before each checkpoint, so chunks precede the outcome."""

    def __init__(self, inv: Invocation, token: int,
                 write: Callable[[Callable[[Tx], None]], Awaitable[None]]) -> None:
        self._inv, self._token, self._write = inv, token, write
        self._loop = asyncio.get_running_loop()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        inv.chunk_written = self._written

    def _written(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the invocation is over
            self._loop.call_soon_threadsafe(self._schedule)

    def _schedule(self) -> None:
        if self._task is None or self._task.done():
            self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            await self.flush()
        except Exception:  # kept for the next checkpoint to raise; the body runs on
            return

    async def flush(self) -> None:
        if not self._inv.chunks and not self._lock.locked() and self.failed is None:
            return  # the usual checkpoint: no step of it streamed
        async with self._lock:
            if self.failed is not None:
                raise self.failed
            while self._inv.chunks:
                chunks = self._inv.take_chunks(CHUNKS_PER_WRITE)
                try:
                    await self._write(functools.partial(
                        write_chunks, run_id=self._inv.run_id, token=self._token,
                        chunks=chunks))
                except BaseException as e:
                    self.failed = e
                    raise

    async def close(self) -> None:
        self._inv.chunk_written = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
