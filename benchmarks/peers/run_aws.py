"""AWS Lambda durable functions' local test runner: `DurableFunctionTestRunner` from
aws-durable-execution-sdk-python-testing, running handlers written with
aws-durable-execution-sdk-python (`@durable_execution`, `@durable_step`, `context.step`) in this
process against its in-memory execution store, the way AWS's docs show it for tests.

It is an emulator, not a durable store: its state lives in this process's memory, so a crash loses
every run. It tells what an in-memory engine with this operation model costs. The SDK is
synchronous: handlers run on the runner's invocation threads. Variant: `memory`. Runs under the
peers' virtualenv.

How each workload is driven (see common.py for what is measured):
- throughput: C caller threads, each `run_async` then `wait_for_result`, one after another.
- latency: the external event is a callback, the SDK's way to resume a run from outside (it has
  no named signals): `context.wait_for_callback` hands its id to the driver from the submitter,
  the driver calls `send_callback_success`.
- recovery: n/a (in-memory: nothing survives the process).
- timers: `context.wait` of one hour, on a runner made with skip_time=False (by default the test
  runner skips waits).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import common
from aws_durable_execution_sdk_python.config import Duration
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.types import StepContext
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner

STAMPS: list[float] = []
EVENTS: dict[str, threading.Event] = {}
MARKS: dict[str, float] = {}
CALLBACKS: dict[str, str] = {}
arrived = 0
arrived_lock = threading.Lock()
STEP_TIMES: list[float] = []
TIMEOUT = 3600


@durable_step
def noop(step_context: StepContext, i: int) -> None:
    """The trivial step body of the throughput workload: it notes when it ran."""
    STEP_TIMES.append(time.perf_counter())


@durable_step
def stamp(step_context: StepContext, i: int) -> None:
    STAMPS.append(time.perf_counter())


@durable_step
def mark(step_context: StepContext, key: str) -> None:
    MARKS[key] = time.perf_counter()
    EVENTS[key].set()


@durable_execution
def bench(event: dict[str, Any], context: DurableContext) -> int:
    for i in range(event["steps"]):
        context.step(noop(i))
    return int(event["steps"])


@durable_execution
def long_run(event: dict[str, Any], context: DurableContext) -> int:
    for i in range(event["steps"]):
        context.step(stamp(i))
    return int(event["steps"])


@durable_execution
def latency(event: dict[str, Any], context: DurableContext) -> None:
    key = event["key"]
    context.step(mark(f"{key}:1"))

    def hand_out(callback_id: str, _: Any) -> None:
        CALLBACKS[key] = callback_id
        EVENTS[f"{key}:cb"].set()

    context.wait_for_callback(hand_out, name="go")
    context.step(mark(f"{key}:2"))


@durable_execution
def timer(event: dict[str, Any], context: DurableContext) -> None:
    global arrived
    with arrived_lock:
        arrived += 1  # instrumentation only: counts runs that reached their timer
    context.wait(Duration.from_seconds(3600))


def run_one(runner: DurableFunctionTestRunner, event: dict[str, Any]) -> None:
    arn = runner.run_async(input=json.dumps(event), execution_name=uuid.uuid4().hex,
                           execution_timeout=TIMEOUT)
    runner.wait_for_result(arn, timeout=TIMEOUT)


def throughput(n: int, steps: int, concurrency: int, budget: float) -> common.Result:
    lock = threading.Lock()
    started = done = 0
    with DurableFunctionTestRunner(handler=bench, execution_timeout=TIMEOUT) as runner:

        def caller() -> None:
            nonlocal started, done
            while True:
                with lock:
                    if started >= n or time.perf_counter() - start >= budget:
                        return  # threads cannot be abandoned: stop starting, finish this one
                    started += 1
                run_one(runner, {"steps": steps})
                with lock:
                    done += 1

        with ThreadPoolExecutor(concurrency) as pool:
            start = time.perf_counter()
            futures = [pool.submit(caller) for _ in range(concurrency)]
            wait(futures, timeout=budget)
            result = common.throughput_result(STEP_TIMES, done, start,
                                              min(time.perf_counter(), start + budget))
            for future in futures:
                future.result()
    return result


def long(steps: int) -> common.Result:
    with DurableFunctionTestRunner(handler=long_run, execution_timeout=TIMEOUT) as runner:
        run_one(runner, {"steps": steps})
    return common.long_run_costs(STAMPS)


def latencies(samples: int) -> common.Result:
    starts: list[float] = []
    resumes: list[float] = []
    with DurableFunctionTestRunner(handler=latency, execution_timeout=TIMEOUT) as runner:
        for i in range(samples + 1):  # the first is a warm-up, not counted
            key = f"l-{i}"
            for suffix in (":1", ":cb", ":2"):
                EVENTS[key + suffix] = threading.Event()
            t0 = time.perf_counter()
            arn = runner.run_async(input=json.dumps({"key": key}), execution_name=key,
                                   execution_timeout=TIMEOUT)
            EVENTS[f"{key}:1"].wait(60)
            starts.append(MARKS[f"{key}:1"] - t0)
            EVENTS[f"{key}:cb"].wait(60)
            t1 = time.perf_counter()
            runner.send_callback_success(CALLBACKS[key], b"null")
            EVENTS[f"{key}:2"].wait(60)
            resumes.append(MARKS[f"{key}:2"] - t1)
            runner.wait_for_result(arn, timeout=60)
    return {"samples": samples,
            "start_p50_ms": common.ms(common.percentile(starts[1:], 0.5)),
            "start_p99_ms": common.ms(common.percentile(starts[1:], 0.99)),
            "resume_p50_ms": common.ms(common.percentile(resumes[1:], 0.5)),
            "resume_p99_ms": common.ms(common.percentile(resumes[1:], 0.99))}


def timers(n: int, budget: float) -> common.Result:
    before = common.rss_mb()
    with DurableFunctionTestRunner(handler=timer, execution_timeout=2 * TIMEOUT,
                                   skip_time=False) as runner:
        start = time.perf_counter()
        started = 0
        while started < n and time.perf_counter() - start < budget:
            runner.run_async(input="{}", execution_name=f"z-{started}",
                             execution_timeout=2 * TIMEOUT)
            started += 1
        took = common.settle(lambda: arrived, started, timeout=1800)
        return {"runs": started, "rss_mb": round(common.rss_mb(), 1),
                "rss_before_mb": round(before, 1),
                "peak_rss_mb": round(common.peak_rss_mb(), 1),
                "setup_s": round(time.perf_counter() - start - common.SETTLE_S, 3),
                "arrive_s": round(took, 3), "processes": 1}


def main() -> None:
    args = common.parse_args(["memory"])
    p = args.params
    if args.workload == "throughput":
        result = throughput(p["workflows"], p["steps"], p["concurrency"], p["budget"])
    elif args.workload == "long":
        result = long(p["steps"])
    elif args.workload == "latency":
        result = latencies(p["samples"])
    elif args.workload == "timers":
        result = timers(p["runs"], p["budget"])
    else:
        result = {"na": "in-memory emulator: a killed process loses every run, nothing to "
                        "recover"}
    common.emit(result)


if __name__ == "__main__":
    main()
