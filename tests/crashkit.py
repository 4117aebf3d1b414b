"""The crash suite's harness: real worker processes (tests/apps/crash_app.py) on a fresh SQLite
file, killed with SIGKILL or paused with SIGSTOP, and the files their steps leave behind.

Workers are forked from a multiprocessing forkserver that has imported durable and the app once
(~0.1 s to a serving worker instead of ~0.4 s for a new interpreter, which keeps the suite fast and
its timing margins wide on a busy machine); `worker(script=True)` and `spawn` run the app as a
script in a fresh interpreter instead.

Nothing here sleeps for a fixed time and hopes: every wait polls a condition with a deadline.
Every process a `CrashLab` starts is killed when the lab closes.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, TypeVar

import durable
from durable.model import HistoryEvent, Operation, RunInfo
from tests.apps import crash_app as app

APP = Path(__file__).parent / "apps" / "crash_app.py"
T = TypeVar("T")

DEADLINE = 30.0  # seconds any single wait may take before the test fails: generous on purpose


def wait_until(condition: Callable[[], T | None], what: str, timeout: float = DEADLINE,
               interval: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy; return that, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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


class Proc:
    """A process of the lab: a worker or a starter. Subclasses say how it is reaped."""

    def __init__(self, pid: int, log: Path) -> None:
        self.pid = pid
        self.log = log

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        raise NotImplementedError

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL (works on a stopped process too) and reap."""
        self.send(signal.SIGKILL)
        self.wait_exit()

    def pause(self) -> None:
        self.send(signal.SIGSTOP)

    def resume(self) -> None:
        self.send(signal.SIGCONT)

    def rss_kb(self) -> int:
        """Resident set size from /proc/PID/status (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ScriptProc(Proc):
    """`python tests/apps/crash_app.py ...`: a fresh interpreter."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path) -> None:
        super().__init__(popen.pid, log)
        self._popen = popen

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        return self._popen.wait(timeout)


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
    """One test's world: a directory, a SQLite database in it, and the processes working on it."""

    def __init__(self, root: Path) -> None:
        self.dir = root
        self.path = root / "durable.db"
        self.db = f"sqlite:///{self.path}"
        self.procs: list[Proc] = []
        self._client: durable.Client | None = None

    def __enter__(self) -> CrashLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """SIGKILL every process still running (stopped ones too), reap them, close the client."""
        try:
            for p in self.procs:
                p.send(signal.SIGKILL)
            for p in self.procs:
                p.wait_exit()
        finally:
            self.close_client()

    # -- processes -------------------------------------------------------------------------------
    def _log(self) -> Path:
        return self.dir / f"proc-{len(self.procs)}.log"

    def _env(self, crash_at: Iterable[str]) -> dict[str, str]:
        return {"CRASH_DIR": str(self.dir), "CRASH_AT": ",".join(crash_at)}

    def _track(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def spawn(self, *args: str, crash_at: Iterable[str] = (), prefix: Iterable[str] = ()
              ) -> Proc:
        """Run `tests/apps/crash_app.py --db <lab db> *args` in a fresh interpreter (under
        the command `prefix`, if any, e.g. `unshare`)."""
        log = self._log()
        with log.open("wb") as out:
            popen = subprocess.Popen([*prefix, sys.executable, str(APP), "--db", self.db, *args],
                                     stdout=out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self._env(crash_at)})
        return self._track(ScriptProc(popen, log))

    def worker(self, *, lease: float = 1.0, crash_at: Iterable[str] = (), version: str = "v1",
               concurrency: int = 100, ready: bool = True, script: bool = False) -> Proc:
        """Start a worker process (forked, or with `script` a fresh interpreter); with `ready`,
        return once it has opened the database."""
        if script:
            proc = self.spawn("--lease", str(lease), "--version", version,
                              "--concurrency", str(concurrency), crash_at=crash_at)
        else:
            log = self._log()
            process = _FORKSERVER.Process(
                target=app.serve_forked, name="crash-worker",
                args=(self.db, lease, version, concurrency, self._env(crash_at), str(log)))
            process.start()
            proc = self._track(ForkedProc(process, log))
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

    def start(self, wf: durable.Workflow[Any], *args: Any, id: str) -> str:
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
        return "\n".join(f"--- pid {p.pid} rc={p.poll()}\n{p.output()}"
                         for p in self.procs)
