"""The test kit: how every test waits for a condition, runs a child process and picks a port.

- `wait_until` (and `wait_until_async`, the same loop for code on an event loop): poll a
  condition until it holds, and fail naming what was awaited once a deadline passes. Nothing in
  the tests sleeps for a fixed time and hopes; a sleep that is part of a scenario says why.
- `Proc` (a child process: signals, exit, output) and `Subprocess` (one started with
  subprocess.Popen, its output in a log file); `Procs` starts them for a test and, on closing,
  stops every one still running: SIGTERM, then SIGKILL after a grace period (or SIGKILL at once).
- `free_port`: a TCP port on 127.0.0.1 that nothing listens on.
- `ROOT`, the repository, and `DURABLE`, the `durable` console script of this interpreter.

The domain-specific parts stay in their kits: crash labs (tests/crashkit.py), the server
(tests/serverkit.py), schedules (tests/schedkit.py), PostgreSQL (tests/pgkit.py), the
serverless stack (tests/apps/serverless_kit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
DURABLE = str(Path(sys.executable).with_name("durable"))  # as operators run it, from this venv
DEADLINE = 30.0  # seconds any single wait may take before the test fails: generous on purpose
GRACE = 15.0  # seconds a process has to exit on SIGTERM before it is SIGKILLed

What = str | Callable[[], str] | None
"""What a wait waits for, to name in its failure: text, or a function that says it (and may
describe the state at that moment) when the wait times out."""


def _polls(condition: Callable[[], T | None], what: What, timeout: float,
           interval: float) -> Generator[float, None, T]:
    """The one polling loop: evaluate `condition` until it is truthy and return that value;
    between evaluations yield how long to sleep; past `timeout` seconds, fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            name = said or getattr(condition, "__qualname__", repr(condition))
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {name}")
        yield interval


def wait_until(condition: Callable[[], T | None], what: What = None, *,
               timeout: float = DEADLINE, interval: float = 0.01) -> T:
    """Poll `condition` until it returns something truthy; return that, or fail naming `what`.
    `condition` may itself fail (raise) to end the wait at once, e.g. when a process died."""
    polls = _polls(condition, what, timeout, interval)
    while True:
        try:
            time.sleep(next(polls))
        except StopIteration as done:
            value: T = done.value
            return value


async def wait_until_async(condition: Callable[[], T | None], what: What = None, *,
                           timeout: float = DEADLINE, interval: float = 0.005) -> T:
    """`wait_until` for a test on an event loop: sleeps with asyncio, so the tasks the
    condition depends on (a worker, a client) run meanwhile."""
    polls = _polls(condition, what, timeout, interval)
    while True:
        try:
            await asyncio.sleep(next(polls))
        except StopIteration as done:
            value: T = done.value
            return value


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A child process and the file its output goes to. Subclasses say how it is reaped."""

    def __init__(self, pid: int, log: Path) -> None:
        self.pid = pid
        self.log = log

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None while it runs."""
        raise NotImplementedError

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        """Wait for the process to exit and return its exit code; TimeoutError if it does not."""
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        return self.poll() is None

    def send(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                os.kill(self.pid, sig)

    def kill(self) -> int:
        """SIGKILL (works on a stopped process too) and reap; returns the exit code."""
        self.send(signal.SIGKILL)
        return self.wait_exit()

    def stop(self, grace: float = GRACE) -> int:
        """SIGTERM (and SIGCONT, should it be stopped), SIGKILL if it has not exited after
        `grace` seconds; returns the exit code."""
        self.send(signal.SIGTERM)
        self.resume()
        try:
            return self.wait_exit(grace)
        except TimeoutError:
            return self.kill()

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
        """Everything it wrote so far (stdout and stderr, unless `Subprocess` split them)."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_answering(self, url: str, timeout: float = DEADLINE) -> None:
        """Wait until an HTTP GET of `url` gets an answer (any status); fail, with the output,
        if the process exits first or it does not answer in time."""
        def answers() -> bool:
            if not self.alive:
                raise AssertionError(f"process {self.pid} exited with {self.poll()} before "
                                     f"answering {url}:\n{self.output()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=1).close()
            except urllib.error.HTTPError:
                return True  # it answers
            except OSError:
                return False
            return True
        wait_until(answers, lambda: f"{url} to answer:\n{self.output()[-3000:]}",
                   timeout=timeout, interval=0.05)


class Subprocess(Proc):
    """`subprocess.Popen(args)` with stdout and stderr in `log` (appended to: processes may
    share one), or stderr apart in `stderr_log`; run from the repository root by default."""

    def __init__(self, args: list[str], log: Path, *, env: Mapping[str, str] | None = None,
                 cwd: Path = ROOT, stderr_log: Path | None = None) -> None:
        with contextlib.ExitStack() as files:  # the child has its own copies once started
            out = files.enter_context(log.open("ab"))
            err = subprocess.STDOUT if stderr_log is None else files.enter_context(
                stderr_log.open("ab"))
            self.popen = subprocess.Popen(args, cwd=cwd, env=None if env is None else dict(env),
                                          stdout=out, stderr=err)
        super().__init__(self.popen.pid, log)
        self.args = args
        self.stderr_log = stderr_log

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"process {self.pid} still running after {timeout}s") from None

    def errors(self) -> str:
        """What it wrote to stderr: `stderr_log` if it was split off, else all its output."""
        if self.stderr_log is None:
            return self.output()
        return self.stderr_log.read_text(errors="replace") if self.stderr_log.exists() else ""


class Procs:
    """The processes one test started, each with a log file in `dir`; on closing, every one
    still running is stopped (SIGTERM to all, SIGKILL to those still there after `grace`
    seconds; `grace=0`: SIGKILL at once) and reaped."""

    def __init__(self, dir: Path | None = None, *, grace: float = GRACE) -> None:
        self.dir = dir
        self.grace = grace
        self.procs: list[Proc] = []

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[Proc]:
        return iter(list(self.procs))

    def __len__(self) -> int:
        return len(self.procs)

    def next_log(self, name: str = "proc") -> Path:
        """A log file for the next process: `<dir>/<name>-<n>.log`."""
        assert self.dir is not None, "Procs(dir) names the log files"
        return self.dir / f"{name}-{len(self.procs)}.log"

    def start(self, *args: str, log: Path | None = None, name: str = "proc",
              env: Mapping[str, str] | None = None, cwd: Path = ROOT,
              stderr_log: Path | None = None) -> Subprocess:
        """Start `args` as a `Subprocess` logging to `log` (by default `next_log(name)`) and
        track it."""
        proc = Subprocess(list(args), log or self.next_log(name), env=env, cwd=cwd,
                          stderr_log=stderr_log)
        self.track(proc)
        return proc

    def track(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        """Stop every process still running: all signalled first, then each reaped."""
        live = [p for p in self.procs if p.alive]
        if self.grace <= 0:
            for p in live:
                p.send(signal.SIGKILL)
            for p in live:
                p.wait_exit()
            return
        for p in live:
            p.send(signal.SIGTERM)
            p.resume()
        deadline = time.monotonic() + self.grace
        for p in live:
            try:
                p.wait_exit(max(deadline - time.monotonic(), 0.0))
            except TimeoutError:
                p.kill()

    def logs(self) -> str:
        """Every process's exit code and output, for a failure message."""
        return "\n".join(f"--- pid {p.pid} rc={p.poll()}\n{p.output()}" for p in self.procs)


@contextlib.contextmanager
def stopping(*procs: Proc, grace: float = GRACE) -> Iterator[None]:
    """Stop `procs` (as `Procs.close` does) when the block ends, however it ends."""
    group = Procs(grace=grace)
    for p in procs:
        group.track(p)
    with group:
        yield


def load_module(path: Path, name: str) -> ModuleType:
    """The file at `path` imported as module `name` (registered in sys.modules, so its
    dataclasses and workflows resolve): an example loaded as it is, without its directory on
    sys.path."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
