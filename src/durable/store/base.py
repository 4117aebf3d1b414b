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


@dataclass(frozen=True, slots=True)
class Sighting:
    """What a worker's look at its peers' presence found: the workers whose sessions are gone
    (seen gone twice in a row: a session being replaced is not a death), and whether this
    worker's own session had been lost and was just replaced (its runs may have been taken
    over meanwhile)."""

    gone: list[str]
    rejoined: bool = False


class Presence(ABC):
    """A worker's sign of life that the database itself ends when the worker's session ends:
    its process died (the kernel closes its connections), or its host or network did (the
    server's TCP timeouts). What a lease cannot tell until it runs out."""

    @abstractmethod
    def look(self) -> Sighting:
        """Keep this worker's presence up (joining again if its session was lost) and see
        whose is gone. Blocking; raises if the database cannot be reached."""

    @abstractmethod
    def close(self, *, holding: bool) -> None:
        """End this worker's presence; `holding`: it still holds leases, which its peers
        then take over at once rather than when the leases run out."""


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

    def presence(self, owner: str) -> Presence | None:
        """How worker `owner` shows it is alive to workers on other hosts, if the database can
        tell (None: only leases running out tell them, and pids on the same host)."""
        return None

    def refuse_if_unwritable(self) -> None:
        """Raise StoreUnusable if the store is known to refuse every write (a SQLite file
        found damaged): for a service about to start on it, which would only retry. A
        database server's refusals are its own to lift, so by default nothing is known."""
        return None

    def write_sync(self, fn: Callable[[Tx], T]) -> T:
        return self.write(fn).result()

    def awrite(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> asyncio.Future[T]:
        """`write` for callers on an event loop: await the result."""
        return self.writer.submit_async(fn, fence)

    async def aread(self, fn: Callable[[Tx], T]) -> T:
        return await asyncio.to_thread(self.read, fn)
