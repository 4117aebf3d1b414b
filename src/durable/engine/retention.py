"""Retention: runs that ended longer ago than a set age are deleted in the background, by each
worker and server given `--retention`, in the bounded batches of `durable purge` (one short
transaction each, the event loop free between them), so running work never waits long for
the write lock. Sweeps of several processes at once are safe: a batch deletes only runs still
there (and on PostgreSQL skips those another sweep is deleting).

A workflow's own retention (`@workflow(retention=...)`, recorded in the store by the workers
serving it) wins over the global one for its runs, in every process that sweeps, whether it
loads the workflow's code or not: a sweep reads them first, deletes each such workflow's runs by
its own age, and leaves them out of the global age's batches. Published events are deleted by
the global age too."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from durable.engine import machine
from durable.store import Store

log = logging.getLogger("durable.retention")

SWEEP_EVERY = 60.0
"""Seconds between two sweeps: a run is deleted at most this long after its age passes."""
BATCH = 500
"""Runs deleted per transaction (as `Client.purge`'s default; benchmarks/purge.py)."""


class Retention:
    """Deletes the runs of `store` that ended more than `seconds` ago (None: only those of
    workflows with a retention of their own, by theirs)."""

    def __init__(self, store: Store, seconds: float | None, clock: Callable[[], float],
                 batch: int = BATCH, every: float = SWEEP_EVERY) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError(f"retention must be a positive number of seconds, not {seconds}")
        self.store, self.seconds, self.clock = store, seconds, clock
        self.batch, self.every = batch, every

    async def sweep(self) -> int:
        """Delete every run past its retention now, a batch per transaction; returns how many."""
        own = await self.store.aread(lambda tx: tx.workflow_retentions())
        now, deleted = self.clock(), 0
        for workflow, seconds in sorted(own.items()):
            deleted += await self._purge(now - seconds, workflow=workflow)
        if self.seconds is not None:
            deleted += await self._purge(now - self.seconds, unless=sorted(own))
            await self._purge_events(now - self.seconds)
        return deleted

    async def _purge_events(self, before: float) -> None:
        """Published events age out with the global retention; the runs they started stay
        as long as runs do."""
        deleted = 0
        while True:
            done = await self.store.awrite(lambda tx: tx.delete_events(before, self.batch))
            deleted += done
            if done < self.batch:
                break
        if deleted:
            log.info("retention: deleted %d events published before the retention age",
                     deleted, extra={"deleted_events": deleted})

    async def _purge(self, before: float, workflow: str | None = None,
                     unless: list[str] | None = None) -> int:
        deleted = 0
        while True:
            done = await self.store.awrite(
                lambda tx: machine.purge(tx, before, self.batch, workflow, unless or ()))
            deleted += done
            if done < self.batch:
                return deleted

    async def run(self) -> None:
        """Sweep every `every` seconds until cancelled; a store failure is logged and the next
        sweep tries again."""
        while True:
            try:
                deleted = await self.sweep()
            except Exception as e:  # the store failed: the service stays up
                log.warning("retention sweep failed (%s); trying again in %g s", e, self.every)
            else:
                if deleted:
                    log.info("retention: deleted %d runs past their retention (global: %s)",
                             deleted, "none" if self.seconds is None else f"{self.seconds:g} s",
                             extra={"deleted": deleted})
            await asyncio.sleep(self.every)
