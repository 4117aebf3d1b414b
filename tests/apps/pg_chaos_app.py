"""The chaos test's workflow, and the worker process tests/test_postgres_chaos.py runs four of.

    python tests/apps/pg_chaos_app.py --db postgresql://... --effects DIR [--lease 2]

The worker touches DIR/ready-<pid> once it has opened the database. Each step body appends one
line `<run> <step> <pid> <nonce> <time>` to DIR/effects-<pid>.log before it returns, and returns
the nonce with its value. The line is in the kernel once write() returns, so it survives the
SIGKILL that may follow; the checkpointed nonce tells the test which execution of a step was the
one recorded. Sleeps and their lengths are pseudo-random but a function of the input, as a
workflow's control flow must be.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
import uuid
from pathlib import Path
from typing import Any, TextIO

import durable
from durable import Context, workflow

STEPS = 10
SIGNAL_AFTER = 4  # the step after which the workflow waits for its signal

_effects: TextIO | None = None


async def work(run_id: str, i: int, n: int) -> dict[str, Any]:
    assert _effects is not None, "the worker process opens the effects log"
    nonce = uuid.uuid4().hex
    _effects.write(f"{run_id} {i} {os.getpid()} {nonce} {time.time():.6f}\n")
    return {"v": n * (i + 1), "nonce": nonce}


@workflow
async def chaos(ctx: Context, n: int) -> int:
    rnd = random.Random(n)
    total = 0
    for i in range(STEPS):
        done = await ctx.step(work, ctx.run_id, i, n, name=f"s{i}")
        total += done["v"]
        if rnd.random() < 0.25:
            await ctx.sleep(0.1 + rnd.random() * 0.5)
        if i == SIGNAL_AFTER:
            total += (await ctx.wait_for_signal("bump"))["k"]
    return total


def expected(n: int) -> int:
    """chaos(n)'s result when its signal carried {"k": signal_value(n)}."""
    return n * STEPS * (STEPS + 1) // 2 + signal_value(n)


def signal_value(n: int) -> int:
    return n % 7 + 1


def main() -> None:
    global _effects
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=250)
    args = parser.parse_args()
    _effects = open(args.effects / f"effects-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(message)s")
    worker = durable.Worker([chaos], args.db, lease_seconds=args.lease,
                            concurrency=args.concurrency)
    (args.effects / f"ready-{os.getpid()}").touch()  # connected; the test may kill it now
    worker.run()


if __name__ == "__main__":
    main()
