"""The bulk_jobs table: each bulk action's filter and progress (model/bulk.py)."""

from __future__ import annotations

import json
from typing import Any

from durable.model.bulk import BulkJob
from durable.model.listing import Cursor
from durable.store.rows import Table

_COLUMNS = ("job_id, action, filter, from_step, reason, status, started_at, updated_at, acted,"
            " skipped, cursor_created, cursor_run")


class BulkJobs(Table):
    """Bulk jobs, by id."""

    def insert_bulk_job(self, job: BulkJob) -> None:
        self._exec(f"INSERT INTO bulk_jobs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                   " NULL, NULL)",
                   (job.job_id, job.action, json.dumps(job.filter, sort_keys=True),
                    job.from_step, job.reason, job.status, job.started_at, job.updated_at,
                    job.acted, job.skipped))

    def get_bulk_job(self, job_id: str, lock: bool = False) -> BulkJob | None:
        """The job; with `lock`, its row is held until the transaction ends, so two processes
        resuming it take turns run by run."""
        row = self._one(f"SELECT {_COLUMNS} FROM bulk_jobs WHERE job_id = ?"
                        f"{self.row_lock_clause if lock else ''}", (job_id,))
        return None if row is None else _job(row)

    def bulk_jobs(self, limit: int) -> list[BulkJob]:
        """The newest jobs first."""
        return [_job(r) for r in self._rows(
            f"SELECT {_COLUMNS} FROM bulk_jobs ORDER BY started_at DESC, job_id LIMIT ?",
            (limit,))]

    def update_bulk_job(self, job: BulkJob) -> None:
        """Store the job's progress: status, counts and cursor."""
        cursor = job.cursor
        self._exec("UPDATE bulk_jobs SET status = ?, updated_at = ?, acted = ?, skipped = ?,"
                   " cursor_created = ?, cursor_run = ? WHERE job_id = ?",
                   (job.status, job.updated_at, job.acted, job.skipped,
                    None if cursor is None else cursor.created_at,
                    None if cursor is None else cursor.run_id, job.job_id))


def _job(row: Any) -> BulkJob:
    cursor = None if row[11] is None else Cursor(float(row[10]), str(row[11]))
    return BulkJob(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5], float(row[6]),
                   float(row[7]), int(row[8]), int(row[9]), cursor)
