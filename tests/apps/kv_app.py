"""Workflows for the key-value store's worker tests (tests/test_kv_workers.py), served with
`durable worker tests/apps/kv_app.py`.

With $KV_DIE_AT=N, the worker SIGKILLs itself on its Nth `add`, inside the transaction that
applies it: after the counter's row was written, before that write and the operation that
records it commit. That is the worst moment a crash can come for a counter.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from durable import Context, workflow
from durable.engine import kv
from durable.model.kv import KvOp

COUNTER = "counter"


@workflow(name="kv-bump")
async def bump(ctx: Context, times: int) -> list[int | float]:
    """Add 1 to the shared counter `times` times; the values each add returned."""
    return [await ctx.kv.add(COUNTER) for _ in range(times)]


def _die_inside_the_nth_add(at: int) -> None:
    applied = kv.apply
    seen = 0

    def apply(tx: Any, cmd: Any, now: float) -> Any:
        nonlocal seen
        outcome = applied(tx, cmd, now)
        if cmd.op is KvOp.ADD:
            seen += 1
            if seen == at:
                os.kill(os.getpid(), signal.SIGKILL)
        return outcome
    kv.apply = apply


if os.environ.get("KV_DIE_AT"):
    _die_inside_the_nth_add(int(os.environ["KV_DIE_AT"]))
