"""What every system adapter shares: the command line, fresh databases, timing, memory, output.

Standard library only (psycopg is imported lazily, for PostgreSQL): this module runs under
Durable's virtualenv and under the peers' one alike. An adapter (run_durable.py, run_dbos.py,
run_aws.py, run_temporal.py) is a script that `benchmarks/compare.py` starts once per measurement:

    python benchmarks/peers/run_dbos.py --variant sqlite --workload throughput --params '{...}'

It runs that one workload once, on a fresh database, and prints one JSON object as its last line
of stdout. Workloads and what they measure (the same for every system):

- throughput: N workflows of M trivial steps with at most C in flight. The clock runs from the
  first start to the last completion, or until a `budget` in seconds is spent (slow systems;
  the runs still in flight are then abandoned). Each step body records when it ran; steps/s is
  the number of step bodies run in the window after its first quarter (the ramp-up of C
  concurrent starts) / that time; `from_start_steps_per_s` counts the whole window.
- long: one workflow of `steps` steps; each step body records when it began. The per-step cost
  of steps 1-100 is (start of step 101 - start of step 1) / 100, of steps 901-1000 it is
  (start of step 1000 - start of step 900) / 100. Does cost grow with the history?
- latency: `samples` runs one after another, each: a step, a wait for an external event (a
  signal; a callback where the system has no signals), a step. Start latency: from the call that
  starts the run to the first step's body running. Resume latency: from the call that sends the
  event to the second step's body running.
- recovery: a worker process runs a long workflow; it is SIGKILLed mid-run and a new worker
  process is started at once; the time from the kill to the first step body running in the new
  process (the interpreter's start-up included; `restart_ready_s` is the part until the new
  process has imported its libraries and is about to open its database).
- timers: N runs each wait on a one-hour durable timer (an uncheckpointed counter in the
  workflow body, just before the timer, tells the driver a run got there). Reported once all
  wait and SETTLE_S more have passed: the RSS of the processes involved (the database server
  excluded: PostgreSQL's is shared), the same processes' RSS before the runs were started, and
  how long it took to get all runs waiting. A `budget` in seconds stops starting new runs once
  spent (the result says how many runs were started).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Result = dict[str, Any]

HERE = Path(__file__).resolve().parent


# -- output -------------------------------------------------------------------------------------

def emit(result: Result) -> None:
    """The adapter's answer: one JSON line on stdout, printed as soon as it is known (before
    the clean-up, so that a clean-up that hangs does not lose it); the last such line counts."""
    print(json.dumps(result), flush=True)


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of unsorted samples; None when there are none."""
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# -- memory ---------------------------------------------------------------------------------------

def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process now (VmRSS), in MB; 0 if it has gone."""
    return _status_kb(pid, "VmRSS") / 1024


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident set size of a process (VmHWM), in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def _status_kb(pid: int | None, field: str) -> float:
    try:
        text = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1])
    return 0.0


# -- fresh databases ------------------------------------------------------------------------------

@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="durable-compare-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def fresh_postgres(server_url: str, prefix: str) -> Iterator[str]:
    """Create a new database on the server `server_url` points at, yield its URL, drop it."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


RAMP = 0.25
"""The share of a throughput window left out of the steady rate: the ramp-up of C starts."""


def throughput_result(stamps: Sequence[float], workflows_done: int, start: float,
                      end: float) -> Result:
    """From the step bodies' start times: `steps_per_s` over the window after its first RAMP
    (the table's figure), `from_start_steps_per_s` over all of it."""
    wall = end - start
    steady_from = start + RAMP * wall
    steady = sum(1 for s in stamps if steady_from <= s <= end)
    total = sum(1 for s in stamps if s <= end)
    return {"steps": total, "workflows": workflows_done, "wall_s": round(wall, 3),
            "steps_per_s": round(steady / (end - steady_from), 1),
            "from_start_steps_per_s": round(total / wall, 1),
            "workflows_per_s": round(workflows_done / wall, 1)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- recovery: kill a worker process mid-run, start another ---------------------------------------

class LineReader:
    """Reads a child's stdout lines on a thread, each stamped with perf_counter on arrival."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[tuple[float, str | None]] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line.strip()))
        self.lines.put((time.perf_counter(), None))

    def next(self, deadline: float) -> tuple[float, str]:
        left = deadline - time.perf_counter()
        try:
            at, line = self.lines.get(timeout=max(0.0, left))
        except queue.Empty:
            raise TimeoutError("no output from the worker process in time") from None
        if line is None:
            raise RuntimeError(f"the worker process exited ({self.proc.wait()})")
        return at, line


def spawn_worker(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A worker process of an adapter (`--serve` mode): stdout piped, stderr to ours."""
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def measure_recovery(spawn: Callable[[bool], subprocess.Popen[str]], kill_after: int = 50,
                     timeout: float = 180.0) -> Result:
    """Start a worker (spawn(True) also starts the long run), SIGKILL it once it printed
    `step N` for N >= kill_after, start a new worker (spawn(False)) at once, and time until it
    prints its first `step` line: the run continuing. Workers print `ready` once their imports
    are done, before they open the database."""
    first = spawn(True)
    reader = LineReader(first)
    deadline = time.perf_counter() + timeout
    last_before = -1
    try:
        while last_before < kill_after:
            _, line = reader.next(deadline)
            if line.startswith("step "):
                last_before = int(line.split()[1])
        os.kill(first.pid, signal.SIGKILL)
        killed_at = time.perf_counter()
        first.wait()
    finally:
        _stop(first)
    second = spawn(False)
    reader = LineReader(second)
    ready_at = None
    try:
        while True:
            at, line = reader.next(deadline)
            if line == "ready":
                ready_at = at
            elif line.startswith("step "):
                return {"recovery_s": round(at - killed_at, 3),
                        "restart_ready_s": (None if ready_at is None
                                            else round(ready_at - killed_at, 3)),
                        "last_step_before_kill": last_before,
                        "first_step_after": int(line.split()[1])}
    finally:
        _stop(second)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def progress_line(i: int) -> None:
    """What a recovery workflow's step body does: say which step runs, unbuffered."""
    os.write(1, f"step {i}\n".encode())


# -- the command line -----------------------------------------------------------------------------

def parse_args(variants: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", choices=variants, required=True)
    parser.add_argument("--workload",
                        choices=["throughput", "long", "latency", "recovery", "timers"])
    parser.add_argument("--params", default="{}", help="the workload's parameters, JSON")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL server (a fresh database is created on it per run)")
    parser.add_argument("--serve", metavar="TARGET",
                        help="recovery worker mode: the database URL or server address")
    parser.add_argument("--start", action="store_true", help="with --serve: start the run too")
    parser.add_argument("--steps", type=int, default=100_000, help="with --serve --start")
    args = parser.parse_args()
    args.params = json.loads(args.params)
    return args


ARRIVALS: list[int] = []
"""Where a timers workflow that cannot reach its adapter's globals (Temporal's sandbox) counts."""

SETTLE_S = 2.0
"""How long the timers workload lets a system settle after its last run reached the timer."""


def settle(counter: Callable[[], int], target: int, timeout: float) -> float:
    """Wait (blocking) until counter() >= target, then SETTLE_S more; return how long the
    first part took. Raises TimeoutError."""
    start = time.perf_counter()
    while counter() < target:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"only {counter()} of {target} arrived in {timeout}s")
        time.sleep(0.05)
    took = time.perf_counter() - start
    time.sleep(SETTLE_S)
    return took


async def asettle(counter: Callable[[], int], target: int, timeout: float) -> float:
    """`settle` for adapters whose system runs on the caller's event loop."""
    import asyncio

    start = time.perf_counter()
    while counter() < target:
        if time.perf_counter() - start > timeout:
            raise TimeoutError(f"only {counter()} of {target} arrived in {timeout}s")
        await asyncio.sleep(0.05)
    took = time.perf_counter() - start
    await asyncio.sleep(SETTLE_S)
    return took


def long_run_costs(stamps: Sequence[float]) -> Result:
    """Per-step cost at the start and at the end of one long run, from its step start times."""
    n = len(stamps)
    if n < 200:
        raise ValueError(f"a long run needs at least 200 steps, got {n}")
    first = (stamps[100] - stamps[0]) / 100
    last = (stamps[n - 1] - stamps[n - 101]) / 100
    return {"steps": n, "first100_ms": ms(first), "last100_ms": ms(last),
            "growth": round(last / first, 3), "wall_s": round(stamps[-1] - stamps[0], 3)}
