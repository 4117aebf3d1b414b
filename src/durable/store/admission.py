"""The `schedules` table and the queue columns of `runs`: what admits runs (the limits
themselves are enforced by the engine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable.model import RunInfo, ScheduleState
from durable.store.rows import ENQUEUED_SQL, RUN_COLUMNS, SCHEDULE_COLUMNS, Table, marks, run_row


class Admission(Table):
    """Queue admission at claim time, and schedules' state."""

    def lock_queue(self, queue: str) -> None:
        """Keep other transactions from admitting runs to `queue` until this one ends, so that
        counting its slots and taking one is atomic across workers. SQLite: nothing to do, the
        write transaction already excludes every other writer. A dialect whose writers run
        concurrently overrides this (PostgreSQL: a transaction-scoped advisory lock per queue)."""

    def queue_held(self, queue: str) -> int:
        """Runs admitted to `queue` that have not ended: the slots in use."""
        return int(self._one("SELECT count(*) FROM runs WHERE queue_name = ?"
                             " AND status = 'RUNNING'", (queue,))[0])

    def queue_depth(self, workflows: Sequence[str]) -> int:
        """Runs of `workflows` that no queue admitted yet: waiting for a slot."""
        return int(self._one(
            "SELECT count(*) FROM runs WHERE status = 'RUNNING' AND queue_name IS NULL"
            f" AND workflow IN ({marks(workflows)})", workflows)[0])

    def queue_admitted(self, queue: str, since: float) -> int:
        """Runs admitted to `queue` after `since` (ended or not): the rate window's use."""
        return int(self._one("SELECT count(*) FROM runs WHERE queue_name = ? AND admitted_at > ?",
                             (queue, since))[0])

    def queue_admission(self, queue: str, since: float, nth: int) -> float | None:
        """When the `nth` (from 0) run admitted to `queue` after `since` was admitted."""
        row = self._one("SELECT admitted_at FROM runs WHERE queue_name = ? AND admitted_at > ?"
                        " ORDER BY admitted_at LIMIT 1 OFFSET ?", (queue, since, nth))
        return None if row is None else float(row[0])

    def queue_waiting(self, workflows: Sequence[str], now: float, limit: int) -> list[str]:
        """The first runs of `workflows` that no queue admitted yet and that are free to start:
        highest priority first, then in creation order (ties by run id)."""
        rows = self._rows(
            "SELECT run_id FROM runs WHERE status = 'RUNNING' AND queue_name IS NULL"
            f" AND lease_owner IS NULL AND ready_at <= ? AND workflow IN ({marks(workflows)})"
            " ORDER BY priority DESC, created_at, run_id LIMIT ?" + self.claim_lock_clause,
            (now, *workflows, limit))
        return [r[0] for r in rows]

    def queue_position(self, run: RunInfo) -> int:
        """Where an ENQUEUED run stands in its queue, in the order `queue_waiting` admits: 1
        is next. Counts only the runs ahead of it, through index runs_enqueued."""
        return 1 + int(self._one(
            f"SELECT count(*) FROM runs WHERE {ENQUEUED_SQL} AND enqueued_on = ? AND"
            " (priority > ? OR priority = ? AND (created_at < ? OR created_at = ? AND run_id < ?))",
            (run.queue, run.priority, run.priority, run.created_at, run.created_at,
             run.run_id))[0])

    def live_duplicate(self, queue: str, dedup_id: str) -> RunInfo | None:
        """The run of `queue` with `dedup_id` that has not ended, if there is one."""
        row = self._one(f"SELECT {RUN_COLUMNS} FROM runs WHERE enqueued_on = ? AND dedup_id = ?"
                        " AND ended_at IS NULL", (queue, dedup_id))
        return None if row is None else run_row(row)

    def queue_first_waiting(self, workflows: Sequence[str]) -> float | None:
        """When the earliest run of `workflows` that waits for admission became ready."""
        row = self._one(
            "SELECT min(ready_at) FROM runs WHERE status = 'RUNNING' AND queue_name IS NULL"
            f" AND lease_owner IS NULL AND workflow IN ({marks(workflows)})", workflows)
        return None if row[0] is None else float(row[0])

    def admit(self, run_ids: Sequence[str], queue: str, now: float) -> None:
        """The runs take a slot of `queue` from now until they end."""
        if run_ids:
            self._exec(f"UPDATE runs SET queue_name = ?, admitted_at = ?"
                       f" WHERE run_id IN ({marks(run_ids)})", (queue, now, *run_ids))


    def get_schedule(self, workflow: str, lock: bool = False) -> ScheduleState | None:
        """The schedule's stored state; with `lock`, held until commit where the dialect lets
        another worker fire the same schedule meanwhile (`row_lock_clause`)."""
        row = self._one(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE workflow = ?"
                        + (self.row_lock_clause if lock else ""), (workflow,))
        return None if row is None else _schedule_row(row)

    def list_schedules(self, source: str | None = None) -> list[ScheduleState]:
        """Every schedule stored (only those of `source` if given), by workflow name."""
        where, params = ("", ()) if source is None else (" WHERE source = ?", (source,))
        return [_schedule_row(r) for r in self._rows(
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules{where} ORDER BY workflow", params)]

    def register_schedule(self, state: ScheduleState, now: float) -> bool:
        """Create the schedule's state unless one exists for its workflow; whether it did."""
        return self._one(
            f"INSERT INTO schedules ({SCHEDULE_COLUMNS}, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow) DO NOTHING"
            " RETURNING workflow",
            (state.workflow, state.cron, state.timezone, state.since, state.last_tick,
             state.last_run_id, int(state.paused), int(state.tick_input), state.source,
             state.missed, now)) is not None

    def put_schedule(self, state: ScheduleState, now: float) -> None:
        self._exec(
            "UPDATE schedules SET cron = ?, timezone = ?, since = ?, last_tick = ?,"
            " last_run_id = ?, paused = ?, tick_input = ?, missed = ?, updated_at = ?"
            " WHERE workflow = ?",
            (state.cron, state.timezone, state.since, state.last_tick, state.last_run_id,
             int(state.paused), int(state.tick_input), state.missed, now, state.workflow))

    def delete_schedule(self, workflow: str) -> None:
        self._exec("DELETE FROM schedules WHERE workflow = ?", (workflow,))


def _schedule_row(row: Sequence[Any]) -> ScheduleState:
    return ScheduleState(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]),
                         bool(row[7]), row[8], row[9])
