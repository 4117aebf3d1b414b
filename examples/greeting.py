"""Greeting: the seed example. One activity-like step, run five times, a durable sleep between.

Each greeting is composed by a step, so once it is checkpointed it is never composed again: stop
the process during a pause (Ctrl-C, kill -9, a deploy) and run the same id again, and the
greetings already made are replayed from the database while the pause ends at its original due
time. While it sleeps, the run holds no process, thread or memory: only rows in SQLite.

Run it:

    python examples/greeting.py                                   # embedded default, 2 s pauses
    durable run examples/greeting.py:greeting --input '{"name": "Ada", "pause": 0.5}'
    durable run examples/greeting.py:greeting --input '{}' --id greet-1   # all defaults

Input (every field optional): `name`, `times` (greetings, default 5) and `pause` (seconds of
durable sleep between two greetings, default 2; tests use 0.05).
"""

import os
import sys
from dataclasses import dataclass
from datetime import timedelta

import durable
from durable import Context, RetryPolicy, step, workflow


@dataclass(frozen=True)
class GreetingRequest:
    name: str = "World"
    times: int = 5
    pause: float = 2.0


@step(retry=RetryPolicy(max_attempts=3, initial_interval=0.5))
def compose_greeting(name: str, number: int, times: int) -> str:
    """A plain sync function standing in for an activity (an API call, a template service).

    Durable runs sync steps in a thread, so a slow one never blocks other runs. The print is the
    step's visible side effect: it appears once per greeting however often the run replays.
    """
    text = f"Hello, {name}! (greeting {number} of {times}, composed by pid {os.getpid()})"
    print(text, file=sys.stderr, flush=True)
    return text


@workflow
async def greeting(ctx: Context, request: GreetingRequest) -> list[str]:
    """Compose `times` greetings with a durable pause between them; return them all."""
    greetings: list[str] = []
    for number in range(1, request.times + 1):
        if number > 1:
            await ctx.sleep(timedelta(seconds=request.pause), name=f"pause {number - 1}")
        greetings.append(await compose_greeting(request.name, number, request.times))
    return greetings


if __name__ == "__main__":
    for line in durable.run(greeting, GreetingRequest()):
        print(line)
