"""A queue of one slot whose runs hold it until signalled, for the CLI and API tests of queues
at run time: the first run started takes the slot, every later one waits ENQUEUED.

    durable worker tests/apps/queue_app.py        durable server --worker tests/apps/queue_app.py
"""

from __future__ import annotations

import durable
from durable import Context, workflow

ONE_SLOT = durable.Queue("rt.one-slot", limit=1)


@workflow(name="rt.hold", queue=ONE_SLOT)
async def hold(ctx: Context, label: str) -> str:
    """Holds the queue's one slot until signalled `go`."""
    await ctx.wait_for_signal("go")
    return label


@workflow(name="rt.free")
async def free(ctx: Context) -> str:
    """On no queue: priority and dedup ids do not apply to it."""
    return "free"
