"""Durable, as its README shows it: `durable.Client` starts runs, `durable.Worker` runs them.

Variants: `sqlite` (the embedded default store: WAL, synchronous=FULL) and `postgres` (a fresh
database on the given server, synchronous_commit on). Runs under Durable's own virtualenv.

How each workload is driven (see common.py for what is measured):
- throughput: a Worker with concurrency=C is created, then the clock starts, a Client starts the
  N runs (group-committed), and the worker runs them until all have ended.
- long: as throughput, with one run and the default concurrency.
- latency, timers: one Worker (default concurrency 100) serves in this process's event loop while
  the driver, in the same loop, uses its own Client, as an application embedding a worker would.
  The signal is sent with `Client.signal`.
- recovery: worker processes of this script (`--serve`), with the default lease (30 s). The new
  worker runs on the dead one's host, so it expires the dead worker's leases when it starts and
  takes the run over at once; from another host it would wait for the lease to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import common

import durable
from durable import Context, workflow

DEFAULT_LEASE_S = 30.0
"""durable.Worker's default lease_seconds, the one a user gets unless they set it (the CLI has
no option for it). Checked against the Worker signature at run time."""

STAMPS: list[float] = []
EVENTS: dict[str, asyncio.Event] = {}
MARKS: dict[str, float] = {}
arrived = 0
STEP_TIMES: list[float] = []


async def noop(i: int) -> None:
    """The trivial step body of the throughput workload: it notes when it ran."""
    STEP_TIMES.append(time.perf_counter())


async def stamp(i: int) -> None:
    STAMPS.append(time.perf_counter())


async def mark(key: str) -> None:
    MARKS[key] = time.perf_counter()
    EVENTS[key].set()


async def progress(i: int) -> None:
    common.progress_line(i)


@workflow
async def bench(ctx: Context, steps: int) -> int:
    for i in range(steps):
        await ctx.step(noop, i)
    return steps


@workflow
async def long_run(ctx: Context, steps: int) -> int:
    for i in range(steps):
        await ctx.step(stamp, i)
    return steps


@workflow
async def latency(ctx: Context, key: str) -> None:
    await ctx.step(mark, f"{key}:1")
    await ctx.wait_for_signal("go")
    await ctx.step(mark, f"{key}:2")


@workflow
async def recover(ctx: Context, steps: int) -> int:
    for i in range(steps):
        await ctx.step(progress, i)
    return steps


@workflow
async def timer(ctx: Context) -> None:
    global arrived
    arrived += 1  # instrumentation only: counts runs that reached their timer
    await ctx.sleep(3600)


WORKFLOWS = [bench, long_run, latency, recover, timer]


@contextlib.contextmanager
def database(variant: str, pg: str) -> Iterator[str]:
    if variant == "postgres":
        with common.fresh_postgres(pg, "durable_cmp") as url:
            yield url
    else:
        with common.scratch_dir() as scratch:
            yield f"sqlite:///{scratch / 'durable.db'}"


@contextlib.asynccontextmanager
async def serving(db: str, **options: Any) -> Any:
    """A worker serving in this event loop, and a client, for the block's duration."""
    worker = durable.Worker(WORKFLOWS, db=db, **options)
    client = durable.Client(db)
    task = asyncio.create_task(worker.run_async())
    try:
        yield worker, client
    finally:
        worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)
        worker.store.close()
        client.close()


async def run_ended(client: durable.Client, run_id: str) -> None:
    """Wait for a run to end without blocking the loop (Client.wait blocks a thread)."""
    loop = asyncio.get_running_loop()
    changed = asyncio.Event()
    unsubscribe = client.store.subscribe(lambda: loop.call_soon_threadsafe(changed.set))
    try:
        while client.get(run_id).status is durable.ExecutionStatus.RUNNING:
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 1.0)
    finally:
        unsubscribe()


async def throughput(db: str, n: int, steps: int, concurrency: int,
                     budget: float) -> common.Result:
    worker = durable.Worker(WORKFLOWS, db=db, concurrency=concurrency)
    client = durable.Client(db)
    stopped: list[tuple[float, int]] = []  # (time, workflows) when the clock stopped

    def until() -> bool:
        now = time.perf_counter()
        if not stopped and (worker.stats.completed >= n or now - start > budget):
            stopped.append((min(now, start + budget), worker.stats.completed))
        return bool(stopped)

    try:
        start = time.perf_counter()
        await asyncio.gather(*(client.start_async(bench, steps, id=f"t-{i}") for i in range(n)))
        await worker.run_async(until=until)  # then lets the invocations in flight finish
    finally:
        worker.store.close()
        client.close()
    end, done = stopped[0]
    return common.throughput_result(STEP_TIMES, done, start, end)


async def long(db: str, steps: int) -> common.Result:
    worker = durable.Worker(WORKFLOWS, db=db)
    client = durable.Client(db)
    try:
        await client.start_async(long_run, steps, id="long")
        await worker.run_async(until=lambda: worker.stats.completed >= 1)
    finally:
        worker.store.close()
        client.close()
    return common.long_run_costs(STAMPS)


async def latencies(db: str, samples: int) -> common.Result:
    starts: list[float] = []
    resumes: list[float] = []
    async with serving(db) as (_, client):
        for i in range(samples + 1):  # the first is a warm-up, not counted
            key = f"l-{i}"
            EVENTS[f"{key}:1"], EVENTS[f"{key}:2"] = asyncio.Event(), asyncio.Event()
            t0 = time.perf_counter()
            await client.start_async(latency, key, id=key)
            await EVENTS[f"{key}:1"].wait()
            starts.append(MARKS[f"{key}:1"] - t0)
            t1 = time.perf_counter()
            client.signal(key, "go")
            await EVENTS[f"{key}:2"].wait()
            resumes.append(MARKS[f"{key}:2"] - t1)
            await run_ended(client, key)
    return latency_result(starts[1:], resumes[1:])


def latency_result(starts: list[float], resumes: list[float]) -> common.Result:
    return {"samples": len(starts),
            "start_p50_ms": common.ms(common.percentile(starts, 0.5)),
            "start_p99_ms": common.ms(common.percentile(starts, 0.99)),
            "resume_p50_ms": common.ms(common.percentile(resumes, 0.5)),
            "resume_p99_ms": common.ms(common.percentile(resumes, 0.99))}


async def timers(db: str, n: int, budget: float) -> common.Result:
    async with serving(db) as (_, client):
        before = common.rss_mb()
        start = time.perf_counter()
        started = 0
        while started < n and time.perf_counter() - start < budget:
            chunk = range(started, min(n, started + 500))
            await asyncio.gather(*(client.start_async(timer, id=f"z-{i}") for i in chunk))
            started += len(chunk)
        took = await common.asettle(lambda: arrived, started, timeout=1800)
        return {"runs": started, "rss_mb": round(common.rss_mb(), 1),
                "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(common.peak_rss_mb(), 1),
                "setup_s": round(time.perf_counter() - start - common.SETTLE_S, 3),
                "arrive_s": round(took, 3), "processes": 1}


def recovery(db: str) -> common.Result:
    def spawn(start: bool) -> Any:
        return common.spawn_worker([__file__, "--variant", "sqlite", "--serve", db,
                                    *(["--start"] if start else [])])
    result = common.measure_recovery(spawn)
    return {**result, "lease_s": DEFAULT_LEASE_S}


def serve(db: str, start: bool, steps: int) -> None:
    """A recovery worker: say `ready` (imports done), optionally start the long run, serve
    until killed."""
    print("ready", flush=True)
    if start:
        client = durable.Client(db)
        client.start(recover, steps, id="recover")
        client.close()
    durable.Worker([recover], db=db).run()  # the default lease


def main() -> None:
    args = common.parse_args(["sqlite", "postgres"])
    lease = durable.Worker.__init__.__kwdefaults__["lease_seconds"]  # type: ignore[index]
    if lease != DEFAULT_LEASE_S:
        raise SystemExit(f"run_durable.py: Worker's default lease is now {lease}s; update "
                         "DEFAULT_LEASE_S")
    if args.serve:
        serve(args.serve, args.start, args.steps)
        return
    p = args.params
    with database(args.variant, args.pg) as db:
        if args.workload == "throughput":
            result = asyncio.run(throughput(db, p["workflows"], p["steps"], p["concurrency"],
                                            p["budget"]))
        elif args.workload == "long":
            result = asyncio.run(long(db, p["steps"]))
        elif args.workload == "latency":
            result = asyncio.run(latencies(db, p["samples"]))
        elif args.workload == "timers":
            result = asyncio.run(timers(db, p["runs"], p["budget"]))
        else:
            result = recovery(db)
        common.emit(result)  # before the database is dropped


if __name__ == "__main__":
    main()
