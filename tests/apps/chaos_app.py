"""The chaos tests' workflow (tests/test_postgres_chaos.py, tests/test_chaos.py,
tests/test_worker_outages.py), and the worker process they run several of.

    python tests/apps/chaos_app.py --db URL --effects DIR [--lease 2] [--concurrency N]
    CHAOS_EFFECTS=DIR durable worker tests/apps/chaos_app.py --db URL

The worker touches DIR/ready-<pid> once it has opened the database (the first form only). Each
step body appends one line `<run> <step> <pid> <nonce> <time>` to DIR/effects-<pid>.log before it
returns, and returns the nonce with its value. The line is in the kernel once write() returns, so
it survives the SIGKILL that may follow; the checkpointed nonce tells the test which execution of
a step was the one recorded. Sleeps and their lengths are pseudo-random but a function of the
input, as a workflow's control flow must be.

In one run of every POISON_EVERY, the first attempt of step s2 calls sys.exit() before it does
anything, which must fail that attempt only: the retry runs it, and the worker carries on.

`held` (tests/test_takeover.py) keeps its worker busy instead: HELD_STEPS steps of
HELD_STEP_SECONDS each, so that a worker killed or frozen at any moment holds runs mid-step.
Each of its step bodies, once it has slept, appends `<run> <step> <pid> <nonce> <began> <ended>`
to DIR/held-<pid>.log: a frozen worker's bodies that end after it is thawed are there too.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import durable
from durable import Context, RetryPolicy, workflow
from durable.sdk.executor import CURRENT_STEP

STEPS = 10
SIGNAL_AFTER = 4  # the step after which the workflow waits for its signal
POISON_EVERY = 10
POISON_STEP = 2
EXIT_CODE = 7  # what the poisoned attempt passes to sys.exit
RETRY = RetryPolicy(initial_interval=0.2, jitter=0)
EFFECTS_ENV = "CHAOS_EFFECTS"

HELD_STEPS = 8
HELD_STEP_SECONDS = 0.5

_logs: dict[str, TextIO] = {}


def _log(kind: str = "effects") -> TextIO:
    """This process's log of `kind`, in the directory $CHAOS_EFFECTS names."""
    if kind not in _logs:
        path = Path(os.environ[EFFECTS_ENV]) / f"{kind}-{os.getpid()}.log"
        _logs[kind] = open(path, "a", buffering=1)  # noqa: SIM115
    return _logs[kind]


async def work(run_id: str, i: int, n: int) -> dict[str, Any]:
    step = CURRENT_STEP.get()
    assert step is not None
    if poisoned(n) and i == POISON_STEP and step.attempt == 1:
        sys.exit(EXIT_CODE)
    nonce = uuid.uuid4().hex
    _log().write(f"{run_id} {i} {os.getpid()} {nonce} {time.time():.6f}\n")
    return {"v": n * (i + 1), "nonce": nonce}


@workflow
async def chaos(ctx: Context, n: int) -> int:
    rnd = random.Random(n)
    total = 0
    for i in range(STEPS):
        done = await ctx.step(work, ctx.run_id, i, n, name=f"s{i}", retry=RETRY)
        total += done["v"]
        if rnd.random() < 0.25:
            await ctx.sleep(0.1 + rnd.random() * 0.5)
        if i == SIGNAL_AFTER:
            total += (await ctx.wait_for_signal("bump"))["k"]
    return total


async def hold(run_id: str, i: int) -> dict[str, str]:
    began = time.time()
    await asyncio.sleep(HELD_STEP_SECONDS)
    nonce = uuid.uuid4().hex
    _log("held").write(f"{run_id} {i} {os.getpid()} {nonce} {began:.6f} {time.time():.6f}\n")
    return {"nonce": nonce}


@workflow
async def held(ctx: Context, n: int) -> int:
    for i in range(HELD_STEPS):
        await ctx.step(hold, ctx.run_id, i, name=f"h{i}")
    return n


def poisoned(n: int) -> bool:
    return n % POISON_EVERY == 0


def expected(n: int) -> int:
    """chaos(n)'s result when its signal carried {"k": signal_value(n)}."""
    return n * STEPS * (STEPS + 1) // 2 + signal_value(n)


def signal_value(n: int) -> int:
    return n % 7 + 1


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=250)
    args = parser.parse_args()
    os.environ[EFFECTS_ENV] = str(args.effects)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(message)s")
    worker = durable.Worker([chaos], args.db, lease_seconds=args.lease,
                            concurrency=args.concurrency)
    (args.effects / f"ready-{os.getpid()}").touch()  # connected; the test may kill it now
    worker.run()


if __name__ == "__main__":
    main()
