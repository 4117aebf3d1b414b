"""The `schedules` table and the queue columns of `runs`: what admits runs (the limits
themselves are enforced by the engine)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable.model import RunInfo, ScheduleState
from durable.model.settings import WorkflowSettings
from durable.store.rows import ENQUEUED_SQL, RUN_COLUMNS, SCHEDULE_COLUMNS, Table, marks, run_row


class Admission(Table):
    """Queue admission at claim time, and schedules' state."""

    def lock_queue(self, queue: str) -> None:
        """Keep other transactions from admitting runs to `queue` until this one ends, so that
        counting its slots and taking one is atomic across workers. SQLite: nothing to do, the
        write transaction already excludes every other writer. A dialect whose writers run
        concurrently overrides this (PostgreSQL: a transaction-scoped advisory lock per queue)."""

    def queue_held(self, queue: str) -> int:
        """Runs admitted to `queue` that have not ended nor given their slot back: the slots in
        use. A paused run holds its slot until no invocation of it is in flight
        (`release_slot`)."""
        return int(self._one(
            "SELECT (SELECT count(*) FROM runs WHERE queue_name = ? AND status = 'RUNNING')"
            " + (SELECT count(*) FROM runs WHERE queue_name = ? AND status = 'PAUSED')",
            (queue, queue))[0])

    def release_slot(self, run_id: str) -> None:
        """The run gives back the slot of the queue that admitted it, if it holds one and no
        invocation holds its lease: it waits on that queue again, ENQUEUED once RUNNING, in its
        place by priority and age. Its first admission stays its time in the rate window."""
        self._exec("UPDATE runs SET enqueued_on = COALESCE(enqueued_on, queue_name),"
                   " queue_name = NULL WHERE run_id = ? AND queue_name IS NOT NULL"
                   " AND lease_owner IS NULL", (run_id,))

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
            self._exec(f"UPDATE runs SET queue_name = ?, admitted_at = COALESCE(admitted_at, ?)"
                       f" WHERE run_id IN ({marks(run_ids)})", (queue, now, *run_ids))

    def register_workflows(self, settings: Sequence[WorkflowSettings], now: float) -> None:
        """Record what a worker's code says of these workflows (`workflow_settings`). Runs of a
        workflow whose queue changed move with it: those waiting for admission show ENQUEUED
        on its new queue, or, off any queue, RUNNING."""
        for ws in settings:
            row = self._one("SELECT queue, retention FROM workflow_settings WHERE workflow = ?",
                            (ws.workflow,))
            if row is not None and (row[0], row[1]) == (ws.queue, ws.retention):
                continue
            self._exec("INSERT INTO workflow_settings (workflow, queue, retention, updated_at)"
                       " VALUES (?, ?, ?, ?) ON CONFLICT (workflow) DO UPDATE SET"
                       " queue = excluded.queue, retention = excluded.retention,"
                       " updated_at = excluded.updated_at",
                       (ws.workflow, ws.queue, ws.retention, now))
            waiting = "workflow = ? AND status = 'RUNNING' AND queue_name IS NULL"  # runs_waiting
            if ws.queue is not None and (row is None or row[0] != ws.queue):
                # A run with a dedup id stays where it is: its id is unique on its own queue.
                self._exec(f"UPDATE runs SET enqueued_on = ? WHERE {waiting} AND (enqueued_on"
                           " IS NULL OR enqueued_on <> ? AND dedup_id IS NULL)",
                           (ws.queue, ws.workflow, ws.queue))
            elif ws.queue is None and row is not None and row[0] is not None:
                self._exec(f"UPDATE runs SET enqueued_on = NULL WHERE {waiting}"
                           " AND enqueued_on IS NOT NULL", (ws.workflow,))

    def workflow_queue(self, workflow: str) -> str | None:
        """The queue a worker last said `workflow` is on (None: none, or no worker said)."""
        row = self._one("SELECT queue FROM workflow_settings WHERE workflow = ?", (workflow,))
        return None if row is None else row[0]

    def workflow_retentions(self) -> dict[str, float]:
        """Each workflow's own retention in seconds, where its code sets one."""
        return {r[0]: float(r[1]) for r in self._rows(
            "SELECT workflow, retention FROM workflow_settings WHERE retention IS NOT NULL")}


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
