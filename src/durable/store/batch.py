"""Group commit: one writer thread per process commits every queued write of a pass in one
transaction."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from durable.store.runs import Ahead, Fence
from durable.store.tx import Tx

T = TypeVar("T")


class BatchWriter:
    """Group commit: one thread, one connection, many writers.

    Every write is a function queued here. The thread drains the queue and runs everything it
    found in one transaction, each function in its own savepoint so one failure does not sink the
    batch, then commits once: one fsync serves every step that was waiting, and each caller
    resumes only after its own change is durable. Callers on an event loop get their results with
    one wake-up of that loop per batch, not one per write. Both dialects accept the same savepoint
    SQL; they differ only in how a write transaction begins and ends, in how a Tx is made, and in
    whether a failed batch may run again (the hooks at the end).

    Writes from an event loop are gathered until the end of the loop's current pass. If that
    pass produced just one and the thread is idle, the write commits right there on the loop
    (`inline_lone_writes`): nothing else is waiting to share its fsync, and handing it to the
    thread and the result back costs more than the write itself (a sequential workflow runs
    ~1.5x faster). Anything more goes to the thread as a batch, as before.
    """

    def __init__(self, connect: Callable[[], Any], begin: str, name: str,
                 make_tx: Callable[[Any], Tx] = lambda conn: Tx(conn.execute),
                 after_notify: Callable[[], None] | None = None) -> None:
        self._connect = connect
        self._begin = begin
        self._make_tx = make_tx
        self._after_notify = after_notify
        self._conn: Any = None  # connected by the writer thread, again after a drop
        self._tx: Tx | None = None
        # A loop pass's writes go in as one item: a put per write would wake the thread at the
        # first, to contend with the loop for the GIL while the loop puts the rest.
        self._queue: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._writing = threading.Lock()  # held by whoever runs a batch: the thread or a loop
        self._gathered: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        self.last_flush_inline = False
        """Whether the last loop pass's writes committed inline (a lone write, see `_flush`):
        a sequential caller's next write likely will too, so it may wait by yielding once
        (its write commits before it resumes) rather than through its future, which would
        resume it one pass of the loop later."""
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"durable-{name}-writer",
                                        daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[Tx], T], fence: Fence | None = None) -> Future[T]:
        """Queue `fn`; `fence`: the fence read it begins with (see `Fence`), if declared."""
        fut: Future[T] = Future()
        self._queue.put([_Job(fn, fut, None, fence)])
        return fut

    def submit_async(self, fn: Callable[[Tx], T],
                     fence: Fence | None = None) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        gathered = self._gathered.setdefault(loop, [])
        if not gathered:
            loop.call_soon(self._flush, loop)
        gathered.append(_Job(fn, fut, loop, fence))
        return fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """The end of a loop pass: commit its lone write here, or hand its writes to the
        thread."""
        jobs = self._gathered.pop(loop, [])
        if (len(jobs) == 1 and self.inline_lone_writes and self._queue.empty()
                and self._writing.acquire(blocking=False)):
            try:
                self._write(jobs)
            finally:
                self._writing.release()
            if not jobs[0].again:
                jobs[0].deliver()
                self.last_flush_inline = True
                return
            jobs[0].again = False
        self.last_flush_inline = False
        if self._closed:
            _fail(jobs, RuntimeError("the store was closed before this write could run"))
            _deliver_all(jobs)
            return
        self._queue.put(jobs)

    def close(self) -> None:
        self._closed = True
        for loop in list(self._gathered):  # writes still gathering go first
            self._queue.put(self._gathered.pop(loop, []))
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        later: list[_Job] = []  # put off by a conflict (`_transient`): first in the next batch
        closing = False
        while later or not closing:
            batch, later = later, []
            if not batch:
                jobs = self._queue.get()
                if jobs is None:
                    break
                batch += jobs
            with contextlib.suppress(queue.Empty):
                while not closing:
                    nxt = self._queue.get_nowait()
                    if nxt is None:
                        closing = True
                    else:
                        batch += nxt
            with self._writing:
                self._write(batch)
            later = [job for job in batch if job.again]
            self._deliver([job for job in batch if not job.again])
            for job in later:
                job.again = False
        if self._conn is not None:
            self._conn.close()

    def _write(self, batch: list[_Job]) -> None:
        """Commit `batch`, running all of it again while the dialect says it certainly did not
        commit and may succeed now; at the end every job has its result or its error."""
        deadline = time.monotonic() + self.retry_seconds
        pause = 0.005
        isolate = len(batch) > 1 and not self.optimistic
        while True:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                    self._tx = self._make_tx(self._conn)
                assert self._tx is not None
                self._commit(self._conn, self._tx, batch, isolate)
                return
            except _Aborted as a:
                error, committing, txn, began = a.error, a.committing, a.txn, a.began
            except Exception as e:  # could not connect
                error, committing, txn, began = e, False, None, False
            lost = self._lost(self._conn, error)
            if lost and self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            if lost and committing:  # COMMIT was in flight: it may have happened
                outcome = self._committed(txn)
                if outcome is True:  # the jobs' outcomes stand
                    return
                if outcome is None:
                    _fail(batch, error)
                    return
            elif not lost:
                # One job failed the lot: which one? Not when the transaction could not even
                # begin (SQLite's write lock held past the busy timeout): that is no job's
                # doing, and running the batch again would wait the timeout out once more.
                if not isolate and len(batch) > 1 and began:
                    isolate = True
                    continue
                if not self._transient(error):
                    _fail(batch, error)
                    return
            if time.monotonic() + pause > deadline:
                _fail(batch, error)
                return
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _commit(self, conn: Any, tx: Tx, batch: list[_Job], isolate: bool) -> None:
        """One attempt at the batch in one transaction, with a savepoint around each job if
        `isolate`. Sets each job's result or error once committed; raises `_Aborted` if the
        transaction as a whole did not commit, or might not have."""
        tx.notified = False
        txn: Any = None
        began = committing = False
        for job in batch:
            job.result, job.error, job.again = None, None, False
        try:
            txn = self._start(conn)
            began = True
            if not isolate:
                ahead: dict[int, Ahead | None] = {}
                for i, job in enumerate(batch):
                    if self.read_fences_ahead and job.fence is not None:
                        if i not in ahead:
                            window = _fences_from(batch, i)
                            ahead.update(zip(window, tx.read_fences(list(window.values())),
                                             strict=True))
                        tx.ahead = (job.fence, ahead.pop(i))
                    try:
                        job.result = job.fn(tx)
                    finally:
                        tx.ahead = None
            else:
                for job in batch:
                    conn.execute("SAVEPOINT one")
                    try:
                        job.result = job.fn(tx)
                    except Exception as e:
                        if self._lost(conn, e):
                            raise  # the transaction itself is gone
                        conn.execute("ROLLBACK TO one")
                        job.again = self._transient(e) and job.put_off(self.retry_seconds)
                        job.error = None if job.again else e
                    conn.execute("RELEASE one")
            committing = True
            self._finish(conn, tx)
        except Exception as e:
            self._rollback(conn)
            raise _Aborted(e, txn, began, committing) from e
        if tx.notified and self._after_notify is not None:
            self._after_notify()

    def _deliver(self, batch: list[_Job]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in batch:
            if job.loop is None:
                job.deliver()
            else:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, jobs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_deliver_all, jobs)

    # -- dialect hooks. A SQLite file neither drops its connection nor aborts a transaction to
    # break a deadlock, so by default nothing is retried: any failure goes to the callers. A
    # network database does both; its writer overrides these so a batch that certainly did not
    # commit runs again, on a new connection if need be, for up to `retry_seconds`, and a job
    # that conflicted with another transaction (a deadlock, a lock wait too long) goes to the
    # next batch, once this one has committed and so released the rows the other waited for.
    retry_seconds = 15.0

    inline_lone_writes = True
    """Whether a lone write may commit on its event loop (see the class docstring): not where
    a write may retry for `retry_seconds`, which would stall the loop that long."""

    optimistic = False
    """Run a batch without savepoints first, and again with one per job only if a job fails:
    for a database where each savepoint costs round trips. Outcomes are the same either way,
    as jobs only touch the database."""

    read_fences_ahead = False
    """Read the declared fences of a batch's writes together (`_fences_from`), each before
    its write runs: for a database where each read costs a round trip. Only without
    savepoints, so that a lock the read waits too long for fails the batch as a whole and it
    runs again the careful way (`optimistic`), where each write reads its own."""

    def _start(self, conn: Any) -> Any:
        """Begin the write transaction; returns what `_committed` needs to look it up later."""
        conn.execute(self._begin)
        return None

    def _finish(self, conn: Any, tx: Tx) -> None:
        """Commit the transaction `_start` began; errors mean it did not (or may not have)."""
        conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")

    def _lost(self, conn: Any, error: Exception) -> bool:
        """Whether the connection is gone, after `error` (`conn` is None: connecting failed)."""
        return False

    def _transient(self, error: Exception) -> bool:
        """Whether `error` was a conflict with another transaction, which running the job
        again later may not meet."""
        return False

    def _committed(self, txn: Any) -> bool | None:
        """The connection dropped while COMMIT was in flight: did transaction `txn` commit?
        None if that cannot be known; the callers then get the error."""
        return None


class _Aborted(Exception):
    """A batch's transaction failed as a whole. `began`: after it began (a job or COMMIT
    failed, not BEGIN); `committing`: it failed during COMMIT."""

    def __init__(self, error: Exception, txn: Any, began: bool, committing: bool) -> None:
        super().__init__(str(error))
        self.error, self.txn, self.began, self.committing = error, txn, began, committing


def _fences_from(batch: list[_Job], start: int) -> dict[int, Fence]:
    """The fences to read together at `batch[start]`, by index in `batch`: its own, and
    those of the writes after it up to the first that is not confined to its own run (see
    `Fence`), but for any of a run an earlier write of these touches. So no write whose fence
    this reads runs after a write that may change what the read found: a claim taking a lease
    over, a cancel, a checkpoint of the same run. The others are read when their turn comes."""
    chosen: dict[int, Fence] = {}
    touched: set[str] = set()
    for i in range(start, len(batch)):
        fence = batch[i].fence
        if fence is None:
            break
        if fence.run_id not in touched:
            chosen[i] = fence
        if not fence.confined:
            break
        touched.add(fence.run_id)
    return chosen


def _fail(batch: list[_Job], error: BaseException) -> None:
    for job in batch:
        job.result, job.error, job.again = None, error, False


@dataclass(slots=True)
class _Job:
    fn: Callable[[Tx], Any]
    future: Future[Any] | asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop | None
    fence: Fence | None = None
    result: Any = None
    error: BaseException | None = None
    again: bool = False  # put off to the next batch
    put_off_since: float | None = None

    def put_off(self, limit: float) -> bool:
        """Whether the job may be put off once more: for `limit` seconds since the first time."""
        now = time.monotonic()
        self.put_off_since = self.put_off_since or now
        return now - self.put_off_since < limit

    def deliver(self) -> None:
        if self.future.done():  # an asyncio waiter that was cancelled meanwhile
            return
        if self.error is None:
            self.future.set_result(self.result)
        else:
            self.future.set_exception(self.error)


def _deliver_all(jobs: list[_Job]) -> None:
    for job in jobs:
        job.deliver()
