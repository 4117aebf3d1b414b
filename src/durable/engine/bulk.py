"""Bulk actions: one action over every run a filter selects, each run's action and the job's
progress written in one transaction.

That one transaction is what makes a job resumable exactly: a job killed midway has acted on
precisely the runs its cursor has passed, so resuming it from the cursor acts on each of the
rest once, and none twice. A rerun's id is derived from the job and its source run, so even a
rerun the cursor somehow missed could not be started twice. Each run is checked in the
transaction that acts on it, so a run that ended, or was paused, since the listing is
skipped and counted, not refused.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from durable.engine import machine
from durable.errors import BulkJobNotFound
from durable.model import ErrorObject, ExecutionStatus, RunInfo
from durable.model.bulk import DONE, BulkJob
from durable.model.ids import derived_run_id
from durable.model.listing import Cursor, RunFilter, run_filter
from durable.store.tx import Tx


def job_filter(job: BulkJob) -> RunFilter:
    """The runs the job selects: its filter, and created before it began."""
    kept: dict[str, Any] = job.filter
    chosen = run_filter(**kept, now=job.started_at)
    until = job.started_at if chosen.until is None else min(chosen.until, job.started_at)
    return replace(chosen, until=until)


def rerun_id(job_id: str, source_id: str) -> str:
    """The id of the rerun the job starts of `source_id`: the same each time it is asked."""
    return derived_run_id(f"{job_id}.{source_id}")


def applies(tx: Tx, action: str, run: RunInfo, from_step: str | None) -> bool:
    """Whether the action still does something to the run as it now stands."""
    if action == "rerun":
        return any(from_step in (op.name, op.id) for op in tx.operations(run.run_id))
    if not run.status.live:
        return False
    if action == "cancel":
        return not run.cancel_requested
    if action == "pause":
        return run.status is not ExecutionStatus.PAUSED
    if action == "resume":
        return run.status is ExecutionStatus.PAUSED or (
            run.status is ExecutionStatus.RUNNING and run.parked is not None)
    return True  # terminate: any live run


def _act(tx: Tx, job: BulkJob, run_id: str, now: float) -> None:
    by = f"bulk job {job.job_id}"
    if job.action == "cancel":
        machine.cancel(tx, run_id, now)
    elif job.action == "terminate":
        machine.terminate(tx, run_id, ErrorObject(
            "Execution.Stopped", job.reason or f"terminated by {by}"), now)
    elif job.action == "pause":
        machine.pause(tx, run_id, by, now)
    elif job.action == "resume":
        machine.resume(tx, run_id, by, now)
    else:
        assert job.from_step is not None  # checked_action
        machine.rerun(tx, run_id, rerun_id(job.job_id, run_id), job.from_step, None, now)


def listed(chosen: RunFilter, size: int, after: Cursor | None, tx: Tx) -> list[RunInfo]:
    """The next `size` runs `chosen` selects after `after`, without their payloads."""
    return tx.list_runs(chosen, size, after=after, preview=0)


def page(job: BulkJob, chosen: RunFilter, size: int, after: Cursor | None,
         tx: Tx) -> tuple[list[RunInfo], int]:
    """The next `size` runs of the job's listing after `after`, and how many of them the
    action applies to as they stand."""
    runs = listed(chosen, size, after, tx)
    return runs, sum(applies(tx, job.action, r, job.from_step) for r in runs)


def get_job(tx: Tx, job_id: str, lock: bool = False) -> BulkJob:
    job = tx.get_bulk_job(job_id, lock)
    if job is None:
        raise BulkJobNotFound(job_id)
    return job


def step(tx: Tx, *, job_id: str, at: Cursor, now: float) -> BulkJob:
    """Act on the run at `at` (a run of the job's listing) unless the job's cursor has passed
    it already (another process resuming the job got there first), and move the cursor onto
    it; returns the job as it now stands."""
    job = get_job(tx, job_id, lock=True)
    if job.cursor is not None and not _after(at, job.cursor):
        return job
    run = tx.get_run(at.run_id)
    acted = run is not None and applies(tx, job.action, run, job.from_step)
    if acted:
        _act(tx, job, at.run_id, now)
    job = replace(job, acted=job.acted + acted, skipped=job.skipped + (not acted),
                  cursor=at, updated_at=now)
    tx.update_bulk_job(job)
    return job


def finish(tx: Tx, *, job_id: str, now: float) -> BulkJob:
    job = replace(get_job(tx, job_id, lock=True), status=DONE, updated_at=now)
    tx.update_bulk_job(job)
    return job


def _after(run: Cursor, cursor: Cursor) -> bool:
    """Whether `run` comes after `cursor` in a listing's order (newest first, then by id)."""
    return run.created_at < cursor.created_at or (
        run.created_at == cursor.created_at and run.run_id > cursor.run_id)
