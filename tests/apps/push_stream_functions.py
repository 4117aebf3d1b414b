"""A function served over HTTP whose step body streams, for tests/test_push_streams.py.

`speak(n, fail_first)`: the step `speak` writes tokens tok0..tok{n-1} to the stream `tokens`;
halfway it appends a line `half` to $PUSH_EFFECTS and waits while the file $PUSH_HOLD exists
(the moment a test kills the host). With `fail_first`, its first attempt fails after writing
tok0 (noting `broke`). The workflow then closes the stream."""

from __future__ import annotations

import os
import time
from pathlib import Path

import durable
from durable import Context, RetryPolicy, workflow


def effects() -> list[str]:
    return Path(os.environ["PUSH_EFFECTS"]).read_text().splitlines()


def effect(line: str) -> None:
    with open(os.environ["PUSH_EFFECTS"], "a") as f:
        f.write(line + "\n")


@workflow(name="speak")
async def speak(ctx: Context, n: int, fail_first: bool) -> int:
    tokens = ctx.stream("tokens")

    def say() -> int:
        for i in range(n):
            if fail_first and i == 1 and "broke" not in effects():
                effect("broke")
                raise RuntimeError("the first attempt breaks off")
            if i == n // 2:
                effect("half")
                while Path(os.environ.get("PUSH_HOLD", "/nonexistent")).exists():
                    time.sleep(0.05)
            tokens.write(f"tok{i}")
        return n

    said = await ctx.step(say, name="say", retry=RetryPolicy(initial_interval=0.1))
    tokens.close()
    return int(said)


app = durable.serve(speak)
