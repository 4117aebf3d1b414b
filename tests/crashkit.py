"""The crash suite's harness: real worker processes (tests/apps/crash_app.py) on a fresh SQLite
file, killed with SIGKILL or paused with SIGSTOP, and the files their steps leave behind.

Workers are forked from a multiprocessing forkserver that has imported durable and the app once
(~0.1 s to a serving worker instead of ~0.4 s for a new interpreter, which keeps the suite fast and
its timing margins wide on a busy machine); `worker(script=True)` and `spawn` run the app as a
script in a fresh interpreter instead.

Nothing here sleeps for a fixed time and hopes: every wait is a `tests.kit.wait_until`.
Every process a `CrashLab` starts is SIGKILLed when the lab closes (`tests.kit.Procs`).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import durable
from durable.model import HistoryEvent, Operation, RunInfo
from durable.store import open_store
from tests.apps import crash_app as app
from tests.kit import DEADLINE, Proc, Procs, wait_until

APP = Path(__file__).parent / "apps" / "crash_app.py"


@contextmanager
def write_lock_held(path: Path) -> Iterator[sqlite3.Connection]:
    """Hold the SQLite file's write lock from another connection, as a backup, an `sqlite3`
    shell in a transaction or a frozen process would; every writer waits meanwhile. Taking it
    waits for the writer holding it now, if any (a process frozen mid-write, say)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=DEADLINE)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield conn
        conn.execute("ROLLBACK")
    finally:
        conn.close()


class ForkedProc(Proc):
    """A worker forked from a server process that has already imported durable and the app:
    the same `serve()` as the script's, without paying the interpreter start-up each time."""

    def __init__(self, process: BaseProcess, log: Path) -> None:
        assert process.pid is not None
        super().__init__(process.pid, log)
        self._process = process

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise TimeoutError(f"process {self.pid} still running after {timeout}s")
        return self._process.exitcode


_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["__main__", app.__name__])


class Effects:
    """The effects log as the steps left it: `<event> <pid>` lines."""

    def __init__(self, lines: list[tuple[str, int]]) -> None:
        self.lines = lines
        self.counts = Counter(event for event, _ in lines)

    def __getitem__(self, event: str) -> int:
        return self.counts[event]

    def pids(self, event: str) -> list[int]:
        return [pid for e, pid in self.lines if e == event]

    def crashes(self) -> list[tuple[str, str]]:
        """(step, phase) of every self-inflicted SIGKILL, in order."""
        out = []
        for event, _ in self.lines:
            if event.startswith("crash:"):
                _, step, phase = event.split(":")
                out.append((step, phase))
        return out


class CrashLab:
    """One test's world: a directory, a SQLite database in it (or the store at `db`), and the
    processes working on it."""

    def __init__(self, root: Path, db: str | None = None) -> None:
        self.dir = root
        self.path = root / "durable.db"
        self.db = db or f"sqlite:///{self.path}"
        self.procs = Procs(root, grace=0)  # a crash lab's processes are killed, not stopped
        self._client: durable.Client | None = None

    def __enter__(self) -> CrashLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """SIGKILL every process still running (stopped ones too), reap them, close the client."""
        try:
            self.procs.close()
        finally:
            self.close_client()

    # -- processes -------------------------------------------------------------------------------
    def _env(self, crash_at: Iterable[str]) -> dict[str, str]:
        return {"CRASH_DIR": str(self.dir), "CRASH_AT": ",".join(crash_at)}

    def spawn(self, *args: str, crash_at: Iterable[str] = (), prefix: Iterable[str] = ()
              ) -> Proc:
        """Run `tests/apps/crash_app.py --db <lab db> *args` in a fresh interpreter (under
        the command `prefix`, if any, e.g. `unshare`)."""
        return self.procs.start(*prefix, sys.executable, str(APP), "--db", self.db, *args,
                                env={**os.environ, **self._env(crash_at)})

    def worker(self, *, lease: float = 1.0, crash_at: Iterable[str] = (), version: str = "v1",
               concurrency: int = 100, ready: bool = True, script: bool = False) -> Proc:
        """Start a worker process (forked, or with `script` a fresh interpreter); with `ready`,
        return once it has opened the database."""
        if script:
            proc = self.spawn("--lease", str(lease), "--version", version,
                              "--concurrency", str(concurrency), crash_at=crash_at)
        else:
            log = self.procs.next_log()
            process = _FORKSERVER.Process(
                target=app.serve_forked, name="crash-worker",
                args=(self.db, lease, version, concurrency, self._env(crash_at), str(log)))
            process.start()
            proc = self.procs.track(ForkedProc(process, log))
        if ready:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: Proc) -> None:
        marker = self.dir / f"ready-{proc.pid}"

        def ready() -> bool:
            if not proc.alive and not marker.exists():
                raise AssertionError(f"worker {proc.pid} exited early:\n{proc.output()}")
            return marker.exists()
        wait_until(ready, f"worker {proc.pid} to open the database")

    @contextmanager
    def paused(self, proc: Proc) -> Iterator[Proc]:
        """SIGSTOP `proc` at a moment it holds no SQLite write lock (a process frozen inside a
        write transaction would block every other writer), SIGCONT it on leaving."""
        def stopped_outside_a_write() -> bool:
            proc.pause()
            if self.write_lock_free():
                return True
            proc.resume()
            return False
        wait_until(stopped_outside_a_write, f"a moment to pause {proc.pid} outside a write")
        try:
            yield proc
        finally:
            if proc.alive:
                proc.resume()

    def write_lock_free(self) -> bool:
        conn = sqlite3.connect(self.path, timeout=0.05, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()

    # -- the database ----------------------------------------------------------------------------
    @property
    def client(self) -> durable.Client:
        """This process's client on the lab's database, opened on first use."""
        if self._client is None:
            self._client = durable.Client(self.db)
        return self._client

    def close_client(self) -> None:
        """Close the client, so this process holds nothing of the database open."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def start(self, wf: durable.Workflow[..., Any], *args: Any, id: str) -> str:
        return self.client.start(wf, *args, id=id).run_id

    def finish(self, run_id: str, timeout: float = DEADLINE) -> RunInfo:
        """Wait for the run to end; it must have succeeded."""
        run = self.client.wait(run_id, timeout)
        if run.status is not durable.ExecutionStatus.SUCCEEDED:
            detail = run.error.traceback or run.error.message if run.error else ""
            raise AssertionError(f"run {run_id} ended {run.status}: {detail}\n"
                                 f"{self.worker_logs()}")
        return run

    def result(self, run_id: str) -> Any:
        return self.client.result(run_id, timeout=DEADLINE)

    def lease(self, run_id: str) -> tuple[int, str | None]:
        """The run's fencing token and lease owner, as the database has them now."""
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            token, owner = conn.execute("SELECT token, lease_owner FROM runs WHERE run_id = ?",
                                        (run_id,)).fetchone()
        finally:
            conn.close()
        return int(token), owner

    def lease_expires(self, run_id: str) -> float | None:
        """When the run's lease runs out unless renewed, as the store has it now (any store).
        SQLite is read with a plain connection, as `lease` does: a store opened and closed here
        would end the database's WAL under the workers' feet."""
        if self.db.startswith("sqlite:"):
            conn = sqlite3.connect(self.path, timeout=30)
            try:
                row = conn.execute("SELECT lease_expires FROM runs WHERE run_id = ?",
                                   (run_id,)).fetchone()
            finally:
                conn.close()
            return None if row is None or row[0] is None else float(row[0])
        store = open_store(self.db)
        try:
            row = store.read(lambda tx: tx._one(
                "SELECT lease_expires FROM runs WHERE run_id = ?", (run_id,)))
        finally:
            store.close()
        return None if row is None or row[0] is None else float(row[0])

    def history(self, run_id: str, type: str | None = None) -> list[HistoryEvent]:
        return [e for e in self.client.history(run_id) if type is None or e.type == type]

    def wait_event(self, run_id: str, type: str, name: str | None = None,
                   count: int = 1) -> HistoryEvent:
        """The `count`-th history event of `type` (and step `name`), once it exists."""
        def found() -> HistoryEvent | None:
            events = [e for e in self.history(run_id, type) if name is None or e.name == name]
            return events[count - 1] if len(events) >= count else None
        return wait_until(found, f"{type} {name or ''} #{count} in run {run_id}")

    def wait_suspended(self, run_id: str, count: int = 1) -> None:
        """The run's `count`-th invocation ended PENDING: it is held by no process now."""
        def pending() -> bool:
            done = [e for e in self.history(run_id, "InvocationCompleted")
                    if e.details.get("status") == "PENDING"]
            return len(done) >= count
        wait_until(pending, f"run {run_id} to suspend")

    def operations(self, run_id: str) -> dict[str, Operation]:
        """The run's named operations by name (names are unique in these workflows)."""
        named = [op for op in self.client.operations(run_id) if op.name is not None]
        by_name = {str(op.name): op for op in named}
        assert len(by_name) == len(named), f"an operation name repeats: {named}"
        return by_name

    # -- what the steps left ---------------------------------------------------------------------
    def effects(self) -> Effects:
        path = self.dir / "effects.log"
        if not path.exists():
            return Effects([])
        lines = []
        for line in path.read_text().splitlines():
            event, pid = line.split(" ")
            lines.append((event, int(pid)))
        return Effects(lines)

    def wait_effect(self, event: str, count: int = 1) -> Effects:
        """The effects log once `event` happened `count` times."""
        def enough() -> Effects | None:
            fx = self.effects()
            return fx if fx[event] >= count else None
        return wait_until(enough, f"effect {event!r} x{count}")

    def open_gate(self, name: str) -> None:
        (self.dir / f"gate-{name}").touch()

    def notes(self, kind: str) -> list[dict[str, Any]]:
        """The notes of `kind` the steps left (`app.note`), in the order they were written."""
        path = self.dir / app.NOTES
        lines = path.read_text().splitlines() if path.exists() else []
        return [n for n in map(json.loads, lines) if n["kind"] == kind]

    def wait_crashed(self, proc: Proc) -> float:
        """Wait until `proc` died of SIGKILL (at its crash point); return a time.monotonic()
        reading taken once it was surely dead."""
        code = proc.wait_exit()
        assert code == -signal.SIGKILL, f"process {proc.pid} exited {code}:\n{proc.output()}"
        return time.monotonic()

    def worker_logs(self) -> str:
        return self.procs.logs()
