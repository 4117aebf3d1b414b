"""The store's one interface.

A `Store` runs functions of a `Tx` (store/tx.py: the SQL both dialects share) in transactions:
`write` for state changes (group-committed by one writer, store/batch.py), `read` for queries.
The engine's state machine is written against `Tx` only, so it never knows which database it is
on; the dialects differ in connection handling, locking and wake-ups, and in nothing else.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from durable.store.batch import BatchWriter
from durable.store.runs import Fence
from durable.store.tx import Tx

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of `durable doctor`'s report on a database; `ok` False marks a problem."""

    name: str
    detail: str
    ok: bool = True


class Store(ABC):
    """A database holding runs. Thread-safe; `awrite`/`aread` are the asyncio-friendly forms."""

    url: str
    where: str
    """How to name the database in messages: its URL, less any password."""

    writer: BatchWriter

    def write(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> Future[T]:
        """Run `fn` in a write transaction, batched with others into one commit. `fence`: the
        fence read `fn` begins with, declared so that it may be read with others (`Fence`)."""
        return self.writer.submit(fn, fence)

    @abstractmethod
    def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` in a read transaction on the calling thread."""

    @abstractmethod
    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from any thread) after a commit anywhere that called `Tx.notify`
        (a run was created, woken or ended); returns the unsubscribe function."""

    @abstractmethod
    def close(self) -> None: ...

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        return self.write(fn).result()

    def awrite(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> asyncio.Future[T]:
        """`write` for callers on an event loop: await the result."""
        return self.writer.submit_async(fn, fence)

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.to_thread(self.read, fn)
