"""Idle costs nothing: 1,000 runs waiting on a timer or a callback through an HTTP function hold
no function process, no request and no invocation, and the server's memory grows by at most a
small constant per waiting run (a few rows' worth of cache, not a coroutine or a thread each).

The runs are started through AWS's Invoke API on `durable server` (a subprocess), executed by a
Durable workflow served with `durable.serve` under uvicorn (another subprocess). Once they all
wait, the function host is killed; the runs then resume, on a new function host, when their
timers fall due or their callbacks arrive.
"""

from __future__ import annotations

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.apps.serverless_kit import (
    lambda_client,
    register,
    start_function_host,
    start_server,
    wait_status,
)
from tests.kit import stopping, wait_until

RUNS = 1000
WARM = 100
TIMER = 90.0  # seconds: long enough to measure while every run waits
PER_RUN_KIB = 16  # allowed server memory growth per waiting run


def idle_counts(db: Path) -> tuple[int, int, int]:
    """(running, leased = an invocation in flight, invoked at least once)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        running, leased = conn.execute(
            "SELECT count(*), count(lease_owner) FROM runs WHERE status = 'RUNNING'").fetchone()
        invoked = conn.execute("SELECT count(DISTINCT run_id) FROM history"
                               " WHERE type = 'InvocationCompleted'").fetchone()[0]
    return running, leased, invoked


def wait_idle(db: Path, expected: int, timeout: float = 120.0) -> None:
    """Until `expected` runs wait, each invoked at least once and none leased."""
    def idle() -> bool:
        running, leased, invoked = idle_counts(db)
        return running == expected and leased == 0 and invoked >= expected
    wait_until(idle, lambda: f"{expected} runs to wait idle; (running, leased, invoked) = "
               f"{idle_counts(db)}", timeout=timeout, interval=0.5)


def start_many(client: Any, count: int, offset: int) -> list[str]:
    """Half wait on a timer, half on a callback (`nap` with a negative number)."""
    def one(i: int) -> str:
        payload = TIMER if i % 2 else -1
        answer = client.invoke(FunctionName="nap", InvocationType="Event",
                               Payload=json.dumps(payload), DurableExecutionName=f"idle-{i}")
        arn: str = answer["DurableExecutionArn"]
        return arn
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(offset, offset + count)))


def test_a_thousand_waiting_runs_hold_no_process_request_or_memory(tmp_path: Path) -> None:
    db_file = tmp_path / "durable.db"
    db = f"sqlite:///{db_file}"
    server = start_server(tmp_path, db)
    host = start_function_host(tmp_path, "tests.apps.serverless_functions:app", server.url)
    with stopping(server, host):
        register(db, "nap", f"{host.url}/nap")
        client = lambda_client(server.url)

        warm = start_many(client, WARM, 0)  # warm caches and pools before measuring
        wait_idle(db_file, WARM)
        baseline = server.rss_kb()

        started = time.monotonic()
        arns = start_many(client, RUNS, WARM)
        wait_idle(db_file, WARM + RUNS)
        host.stop()  # no function process left at all while they wait
        # Kept on purpose: a window in which nothing may happen (no run invoked against the
        # missing host, none failed); an absence is not a condition a wait could end on.
        time.sleep(2)
        assert idle_counts(db_file)[:2] == (WARM + RUNS, 0)  # nothing in flight, none failed
        loaded = server.rss_kb()
        per_run = (loaded - baseline) / RUNS
        print(f"\nserver RSS: {baseline} KiB with {WARM} waiting runs, {loaded} KiB with "
              f"{WARM + RUNS}: {per_run:.1f} KiB per waiting run; started and suspended "
              f"{RUNS} runs in {time.monotonic() - started:.1f}s")
        assert per_run <= PER_RUN_KIB, f"{per_run:.1f} KiB per waiting run"
        assert time.monotonic() - started < TIMER, "too slow to measure before timers fire"

        # The runs were not lost with the function: a new host serves them as they wake.
        host = start_function_host(tmp_path, "tests.apps.serverless_functions:app",
                                   server.url)
        with stopping(host):
            register(db, "nap", f"{host.url}/nap")
            callbacks = [a for i, a in enumerate(arns) if i % 2 == 0][:20]
            for arn in callbacks:
                events = client.get_durable_execution_history(DurableExecutionArn=arn)
                cb = next(e for e in events["Events"] if e["EventType"] == "CallbackStarted")
                client.send_durable_execution_callback_success(
                    CallbackId=cb["CallbackStartedDetails"]["CallbackId"], Result=b'"up"')
            for arn in callbacks:
                assert wait_status(client, arn, 60)["Result"] == '"up"'
            timers = [a for i, a in enumerate(arns) if i % 2][:20]
            for arn in timers:
                assert wait_status(client, arn, TIMER + 60)["Result"] == '"woke"'
        assert warm
