"""DBOS Transact (`dbos` on PyPI), used the way its docs show: async workflows and steps
decorated with @DBOS.workflow() / @DBOS.step(), run inside the application's own process.

Variants: `sqlite` (system database `sqlite:///file`) and `postgres` (a fresh database on the given
server). DBOS's durability defaults are left as they are: on SQLite it sets no journal_mode or
synchronous pragma, so SQLite's own defaults hold (rollback journal, journal_mode=DELETE;
synchronous=FULL); on PostgreSQL it does not touch synchronous_commit (the server's `on`). Only
the log level is lowered (to WARNING) to keep the output readable. Runs under the peers'
virtualenv.

How each workload is driven (see common.py for what is measured):
- throughput: C callers, each awaiting one workflow after another (`await bench(steps)`: calling
  a workflow function runs it durably in place), until N have been started.
- latency: `DBOS.start_workflow_async`, the step inside records when it runs; the event is a
  message, `DBOS.send_async` to the workflow's `DBOS.recv_async`.
- recovery: worker processes of this script (`--serve`): a killed process's PENDING workflows are
  recovered by the next process that launches with the same executor id (the default one).
- timers: N workflows started with `DBOS.start_workflow_async`, each waits on `DBOS.sleep_async`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import common
from dbos import DBOS, DBOSConfig

STAMPS: list[float] = []
EVENTS: dict[str, asyncio.Event] = {}
MARKS: dict[str, float] = {}
arrived = 0
STEP_TIMES: list[float] = []


@DBOS.step()
async def noop(i: int) -> None:
    """The trivial step body of the throughput workload: it notes when it ran."""
    STEP_TIMES.append(time.perf_counter())


@DBOS.step()
async def stamp(i: int) -> None:
    STAMPS.append(time.perf_counter())


@DBOS.step()
async def mark(key: str) -> None:
    MARKS[key] = time.perf_counter()
    EVENTS[key].set()


@DBOS.step()
async def progress(i: int) -> None:
    common.progress_line(i)


@DBOS.workflow()
async def bench(steps: int) -> int:
    for i in range(steps):
        await noop(i)
    return steps


@DBOS.workflow()
async def long_run(steps: int) -> int:
    for i in range(steps):
        await stamp(i)
    return steps


@DBOS.workflow()
async def latency(key: str) -> None:
    await mark(f"{key}:1")
    await DBOS.recv_async("go", timeout_seconds=60)
    await mark(f"{key}:2")


@DBOS.workflow()
async def recover(steps: int) -> int:
    for i in range(steps):
        await progress(i)
    return steps


@DBOS.workflow()
async def timer() -> None:
    global arrived
    arrived += 1  # instrumentation only: counts workflows that reached their timer
    await DBOS.sleep_async(3600)


@contextlib.contextmanager
def database(variant: str, pg: str) -> Iterator[str]:
    if variant == "postgres":
        with common.fresh_postgres(pg, "dbos_cmp") as url:
            yield url
    else:
        with common.scratch_dir() as scratch:
            yield f"sqlite:///{scratch / 'dbos.sqlite'}"


@contextlib.contextmanager
def launched(url: str) -> Iterator[None]:
    config: DBOSConfig = {"name": "compare", "system_database_url": url,
                          "log_level": "WARNING"}
    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    try:
        yield
    finally:
        DBOS.destroy()


async def throughput(n: int, steps: int, concurrency: int, budget: float) -> common.Result:
    started = done = 0

    async def caller() -> None:
        nonlocal started, done
        while started < n:
            started += 1
            await bench(steps)
            done += 1

    start = time.perf_counter()
    callers = asyncio.gather(*(caller() for _ in range(concurrency)))
    await asyncio.wait([callers], timeout=budget)
    result = common.throughput_result(STEP_TIMES, done, start,
                                      min(time.perf_counter(), start + budget))
    callers.cancel()  # abandon the workflows in flight, if the budget ran out
    with contextlib.suppress(asyncio.CancelledError):
        await callers
    return result


async def long(steps: int) -> common.Result:
    await long_run(steps)
    return common.long_run_costs(STAMPS)


async def latencies(samples: int) -> common.Result:
    starts: list[float] = []
    resumes: list[float] = []
    for i in range(samples + 1):  # the first is a warm-up, not counted
        key = f"l-{i}"
        EVENTS[f"{key}:1"], EVENTS[f"{key}:2"] = asyncio.Event(), asyncio.Event()
        t0 = time.perf_counter()
        handle = await DBOS.start_workflow_async(latency, key)
        await EVENTS[f"{key}:1"].wait()
        starts.append(MARKS[f"{key}:1"] - t0)
        t1 = time.perf_counter()
        await DBOS.send_async(handle.workflow_id, None, "go")
        await EVENTS[f"{key}:2"].wait()
        resumes.append(MARKS[f"{key}:2"] - t1)
        await handle.get_result()
    return latency_result(starts[1:], resumes[1:])


def latency_result(starts: list[float], resumes: list[float]) -> common.Result:
    return {"samples": len(starts),
            "start_p50_ms": common.ms(common.percentile(starts, 0.5)),
            "start_p99_ms": common.ms(common.percentile(starts, 0.99)),
            "resume_p50_ms": common.ms(common.percentile(resumes, 0.5)),
            "resume_p99_ms": common.ms(common.percentile(resumes, 0.99))}


async def timers(n: int, budget: float) -> common.Result:
    before = common.rss_mb()
    start = time.perf_counter()
    started = 0
    while started < n and time.perf_counter() - start < budget:
        chunk = range(started, min(n, started + 500))
        await asyncio.gather(*(DBOS.start_workflow_async(timer) for _ in chunk))
        started += len(chunk)
    took = await common.asettle(lambda: arrived, started, timeout=1800)
    return {"runs": started, "rss_mb": round(common.rss_mb(), 1), "rss_before_mb": round(before, 1),
            "peak_rss_mb": round(common.peak_rss_mb(), 1),
            "setup_s": round(time.perf_counter() - start - common.SETTLE_S, 3),
            "arrive_s": round(took, 3), "processes": 1}


def recovery(url: str) -> common.Result:
    def spawn(start: bool) -> Any:
        return common.spawn_worker([__file__, "--variant", "sqlite", "--serve", url,
                                    *(["--start"] if start else [])])
    return common.measure_recovery(spawn)


async def serve(url: str, start: bool, steps: int) -> None:
    """A recovery worker: say `ready` (imports done), launch DBOS (which recovers this
    executor's pending workflows), optionally start the long run, serve until killed."""
    print("ready", flush=True)
    with launched(url):
        if start:
            await DBOS.start_workflow_async(recover, steps)
        await asyncio.Event().wait()


async def run(args: Any, url: str) -> common.Result:
    p = args.params
    with launched(url):
        if args.workload == "throughput":
            result = await throughput(p["workflows"], p["steps"], p["concurrency"], p["budget"])
        elif args.workload == "long":
            result = await long(p["steps"])
        elif args.workload == "latency":
            result = await latencies(p["samples"])
        else:
            result = await timers(p["runs"], p["budget"])
        common.emit(result)  # before DBOS shuts down and the database is dropped
        return result


def main() -> None:
    args = common.parse_args(["sqlite", "postgres"])
    if args.serve:
        asyncio.run(serve(args.serve, args.start, args.steps))
        return
    with database(args.variant, args.pg) as url:
        if args.workload == "recovery":
            common.emit(recovery(url))
        else:
            asyncio.run(run(args, url))


if __name__ == "__main__":
    main()
