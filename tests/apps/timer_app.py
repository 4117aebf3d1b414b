"""The timer tests' workflow, and the worker process tests/test_postgres_timers.py runs two of.

    python tests/apps/timer_app.py --db postgresql://... --effects DIR

The worker touches DIR/ready-<pid> once it has opened the database. The step after the sleep
appends one line `<run> <pid> <nonce>` to DIR/effects-<pid>.log before it returns, and returns the
nonce with its value: the line survives a SIGKILL that follows, and the checkpointed nonce tells
the test which execution of the step was the one recorded.
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path
from typing import Any, TextIO

import durable
from durable import Context, workflow

_effects: TextIO | None = None


async def resumed(run_id: str, n: int) -> dict[str, Any]:
    assert _effects is not None, "the worker process opens the effects log"
    nonce = uuid.uuid4().hex
    _effects.write(f"{run_id} {os.getpid()} {nonce}\n")
    return {"v": 2 * n, "nonce": nonce}


@workflow
async def sleeper(ctx: Context, due: float, n: int) -> dict[str, Any]:
    # No sleep-until in the SDK: the time left until `due`, from a recorded now(), is the same
    # on every replay.
    await ctx.sleep(max(due - ctx.now().timestamp(), 0.0))
    return await ctx.step(resumed, ctx.run_id, n)


def main() -> None:
    global _effects
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    _effects = open(args.effects / f"effects-{os.getpid()}.log", "a", buffering=1)  # noqa: SIM115
    worker = durable.Worker([sleeper], args.db, concurrency=args.concurrency)
    (args.effects / f"ready-{os.getpid()}").touch()  # connected; the test may kill it now
    worker.run()


if __name__ == "__main__":
    main()
