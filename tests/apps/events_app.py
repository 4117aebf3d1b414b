"""Workflows for tests/test_crash_events.py, served by worker processes that the test kills.

`EVENTS_DIR`: where steps append `<what> <pid>` lines (the effects the test counts).
`CRASH_DISPATCH=N`: SIGKILL this process while it encodes the Nth event it dispatches, i.e.
inside the dispatch transaction, after it started runs of the events before it in that batch.
`CRASH_AT=after_signal`: SIGKILL this process in the step right after `ctx.signal_run` and
`ctx.start_child` by name were recorded, before the workflow goes on.
`CRASH_AT=before_respond` / `after_respond`: SIGKILL this process in the step right before
`ctx.respond` is recorded, or right after.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

import durable
from durable import Context, WebhookRequest, workflow
from durable.model.events import Event

DIR = Path(os.environ.get("EVENTS_DIR", "."))
_dispatched = 0


def effect(what: str) -> None:
    with (DIR / "effects.log").open("a") as f:
        f.write(f"{what} {os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())


def crash(where: str) -> None:
    if where in os.environ.get("CRASH_AT", "").split(","):
        marker = DIR / f"crashed-{where}"
        if not marker.exists():  # once: the worker that takes over must get past it
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


@workflow(name="big_order", on_event="orders", filter="data.amount > 100")
async def big_order(ctx: Context, event: dict[str, Any]) -> str:
    await ctx.step(effect, f"order:{event['id']}", name="record")
    return str(event["id"])


def _encode_or_die(event: Event) -> str | None:
    global _dispatched
    _dispatched += 1
    if _dispatched == int(os.environ.get("CRASH_DISPATCH", "0")):
        (DIR / f"dying-mid-dispatch-{os.getpid()}").touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return _encode(event)


_encode = big_order.trigger_input
big_order.trigger_input = _encode_or_die  # type: ignore[method-assign]


@workflow(name="sink")
async def sink(ctx: Context) -> Any:
    got = await ctx.wait_for_signal("done", timeout=600)
    await ctx.step(effect, f"sink-got:{got}", name="note")
    return got


@workflow(name="messenger")
async def messenger(ctx: Context, sink_id: str) -> str:
    child = await ctx.start_child("sink", id=sink_id)
    await ctx.signal_run(child, "done", "hello")
    await ctx.step(crash, "after_signal", name="maybe-crash")
    await ctx.step(effect, "messenger-done", name="finish")
    return child


@workflow(name="answering", on_event="answers", respond=600)
async def answering(ctx: Context, request: WebhookRequest) -> str:
    await ctx.step(crash, "before_respond", name="maybe-crash-before")
    await ctx.respond(201, headers={"X-Run": ctx.run_id}, body={"pr": request.body["pr"]})
    await ctx.step(crash, "after_respond", name="maybe-crash-after")
    await ctx.step(effect, f"answered:{request.event_id}", name="finish")
    return "done"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    args = parser.parse_args()
    worker = durable.Worker([big_order, sink, messenger, answering], args.db, lease_seconds=2.0)
    (DIR / f"ready-{os.getpid()}").touch()
    worker.run()


if __name__ == "__main__":
    sys.exit(main())
