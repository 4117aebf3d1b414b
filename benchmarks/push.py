"""Push mode against embedded mode, and AWS's own WebRunner as the peer, in one run on loopback.

Prints one JSON line. Three modes run the same workload (benchmarks/push_functions.py: a
workflow of N trivial steps):

- embedded: a `durable.Worker` in this process on a fresh SQLite file, runs started with
  `Client.start_async` on the worker's loop;
- push: `durable server` (its own uvicorn process, the same kind of SQLite file) invoking the
  workflow over HTTP in a function host (`durable.serve` under uvicorn, another process) that
  checkpoints back to the server; runs are started and awaited here through a `Client` on the
  server's database (a start wakes the server through the store's wake-ups);
- webrunner: AWS's testing `WebRunner` (`dex-local-runner start-server`, in-memory store: not
  durable) invoking the same workload written with AWS's SDK in the same kind of function host;
  started with its `start-durable-execution` route and polled (every 1 ms) with
  GetDurableExecution. Skipped when aws-durable-execution-sdk-python-testing is not installed.

Per mode and repeat: `long` (one run of --long-steps steps: ms per step and steps/s),
`concurrent` (--runs runs of --concurrent-steps steps at once: steps/s) and `short`
(--short-runs 1-step runs one after another: ms per run; `added_ms_per_run` is that less the
long run's ms per step). Modes alternate within each repeat, so a noisy moment hits all of them;
the figures are medians over --repeats, with each mode's ratio to embedded.

    python benchmarks/push.py
    python benchmarks/push.py --repeats 5 --long-steps 500 --modes embedded,push
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from push_functions import bench

import durable
from durable.invoke.push import FunctionSpec, register
from durable.store import open_store

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
Start = Callable[[int], Awaitable[Any]]
Wait = Callable[[Any], Awaitable[None]]


@dataclass(frozen=True)
class Driver:
    """How a mode starts a run of `steps` steps, and waits for one to end successfully."""

    start: Start
    wait: Wait


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def service(args: list[str], up: str, log: Path, **env: str) -> Iterator[None]:
    """A subprocess answering HTTP at `up` once it is ready; SIGTERM (then SIGKILL) after."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=HERE,
                                env={**os.environ, **env})
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"push.py: {args[0]} exited: {log.read_text()[-2000:]}")
            try:
                httpx.get(up, timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"push.py: {up} did not answer within 60 s") from None
                time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def function_host(port: int, log: Path, **env: str) -> contextlib.AbstractContextManager[None]:
    return service([sys.executable, "-m", "uvicorn", "push_functions:app", "--port", str(port),
                    "--log-level", "warning", "--no-access-log"],
                   f"http://127.0.0.1:{port}/", log, **env)


# -- the modes ----------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def embedded(scratch: Path) -> AsyncIterator[Driver]:
    db = f"sqlite:///{scratch / 'embedded.db'}"
    worker = durable.Worker([bench], db=db, concurrency=64)
    client = durable.Client(worker.store)
    task = asyncio.create_task(worker.run_async())

    async def start(steps: int) -> str:
        return (await client.start_async(bench, steps)).run_id

    async def wait(run_id: str) -> None:
        run = await client.wait_ended_async(run_id, 120)
        assert run.status.value == "SUCCEEDED", run
    try:
        yield Driver(start, wait)
    finally:
        worker.stop()
        await task
        worker.store.close()


@contextlib.asynccontextmanager
async def push(scratch: Path) -> AsyncIterator[Driver]:
    db = f"sqlite:///{scratch / 'push.db'}"
    server_port, host_port = free_port(), free_port()
    store = open_store(db)
    register(store, FunctionSpec("bench", url=f"http://127.0.0.1:{host_port}/bench"))
    client = durable.Client(store)
    server = [str(BIN / "durable"), "server", "--port", str(server_port), "--db", db]
    up = f"http://127.0.0.1:{server_port}/2025-12-01/functions/bench/durable-executions"

    async def start(steps: int) -> str:
        run, _ = await client.start_run_async("bench", json.dumps(steps))
        return run.run_id

    async def wait(run_id: str) -> None:
        run = await client.wait_ended_async(run_id, 120)
        assert run.status.value == "SUCCEEDED", run
    try:
        with function_host(host_port, scratch / "push-host.log"), \
                service(server, up, scratch / "server.log"):
            yield Driver(start, wait)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def webrunner(scratch: Path) -> AsyncIterator[Driver]:
    runner_port, host_port = free_port(), free_port()
    url = f"http://127.0.0.1:{runner_port}"
    aws = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    runner = [str(BIN / "dex-local-runner"), "start-server", "--host", "127.0.0.1", "--port",
              str(runner_port), "--lambda-endpoint", f"http://127.0.0.1:{host_port}",
              "--local-runner-region", "us-east-1", "--log-level", "WARNING"]
    http = httpx.AsyncClient(base_url=url, timeout=30)

    async def start(steps: int) -> str:
        body = {"AccountId": "123456789012", "FunctionName": "aws_bench",
                "FunctionQualifier": "$LATEST", "ExecutionName": f"b{time.time_ns()}",
                "ExecutionTimeoutSeconds": 300, "ExecutionRetentionPeriodDays": 1,
                "Input": json.dumps(steps)}
        for attempt in range(5):  # its HTTP server drops connections under 16 starts at once
            try:
                answer = await http.post("/start-durable-execution", json=body)
                break
            except httpx.TransportError:
                if attempt == 4:
                    raise
        answer.raise_for_status()
        arn: str = answer.json()["ExecutionArn"]
        return arn

    async def wait(arn: str) -> None:
        path = f"/2025-12-01/durable-executions/{quote(arn, safe='')}"
        while True:
            status = (await http.get(path)).json()["Status"]
            if status != "RUNNING":
                assert status == "SUCCEEDED", status
                return
            await asyncio.sleep(0.001)
    try:
        with function_host(host_port, scratch / "aws-host.log", AWS_ENDPOINT_URL_LAMBDA=url,
                           **aws), \
                service(runner, f"{url}/health", scratch / "webrunner.log", **aws):
            yield Driver(start, wait)
    finally:
        await http.aclose()


MODES = {"embedded": embedded, "push": push, "webrunner": webrunner}


# -- the workloads ------------------------------------------------------------------------------

async def one_long(d: Driver, steps: int) -> dict[str, float]:
    t0 = time.perf_counter()
    await d.wait(await d.start(steps))
    wall = time.perf_counter() - t0
    return {"long_ms_per_step": wall / steps * 1000, "long_steps_per_s": steps / wall}


async def concurrent(d: Driver, runs: int, steps: int) -> dict[str, float]:
    async def one() -> None:
        await d.wait(await d.start(steps))
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(runs)))
    return {"concurrent_steps_per_s": runs * steps / (time.perf_counter() - t0)}


async def short(d: Driver, runs: int) -> dict[str, float]:
    t0 = time.perf_counter()
    for _ in range(runs):
        await d.wait(await d.start(1))
    return {"short_ms_per_run": (time.perf_counter() - t0) / runs * 1000}


async def measure(d: Driver, args: argparse.Namespace) -> dict[str, float]:
    await d.wait(await d.start(2))  # warm-up: connections, imports, caches
    out = await one_long(d, args.long_steps)
    out.update(await concurrent(d, args.runs, args.concurrent_steps))
    out.update(await short(d, args.short_runs))
    out["added_ms_per_run"] = out["short_ms_per_run"] - out["long_ms_per_step"]
    return out


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    modes = args.modes.split(",")
    if "webrunner" in modes and shutil.which("dex-local-runner", path=str(BIN)) is None:
        modes.remove("webrunner")  # aws-durable-execution-sdk-python-testing not installed
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    scratch = Path(tempfile.mkdtemp(prefix="durable-push-"))
    started = time.perf_counter()
    try:
        for repeat in range(args.repeats):
            for mode in modes:
                where = scratch / f"{mode}-{repeat}"
                where.mkdir()
                async with MODES[mode](where) as driver:
                    samples[mode].append(await measure(driver, args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {m: {k: round(statistics.median(s[k] for s in runs), 3) for k in runs[0]}
               for m, runs in samples.items()}
    base = medians["embedded"]
    return {
        "benchmark": "push",
        "repeats": args.repeats,
        "long_steps": args.long_steps,
        "runs": args.runs,
        "concurrent_steps": args.concurrent_steps,
        "short_runs": args.short_runs,
        "medians": medians,
        "over_embedded": {m: {k: round(v / base[k], 2) for k, v in med.items() if base[k]}
                          for m, med in medians.items() if m != "embedded"},
        "samples": samples,
        "wall_s": round(time.perf_counter() - started, 1),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-steps", type=int, default=300, metavar="N")
    parser.add_argument("--runs", type=int, default=16, metavar="R",
                        help="runs at once in the concurrent workload")
    parser.add_argument("--concurrent-steps", type=int, default=50, metavar="N")
    parser.add_argument("--short-runs", type=int, default=30, metavar="K")
    parser.add_argument("--modes", default="embedded,push,webrunner")
    args = parser.parse_args()
    if min(args.repeats, args.long_steps, args.runs, args.concurrent_steps,
           args.short_runs) < 1:
        parser.error("every count must be at least 1")
    if not set(args.modes.split(",")) <= set(MODES) or "embedded" not in args.modes:
        parser.error(f"--modes: a comma-separated list of {', '.join(MODES)}, with embedded "
                     "(the baseline)")
    print(json.dumps(asyncio.run(benchmark(args))), flush=True)


if __name__ == "__main__":
    main()
