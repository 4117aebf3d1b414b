"""A base class of a Temporal-style workflow class, in a module of its own.

Its methods run as the workflow's code, so `@workflow.defn` on the subclass gives this module's
code durable `asyncio.sleep` too (tests/test_temporal_asyncio.py).
"""

from __future__ import annotations

import asyncio


class Pausing:
    async def pause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
