"""Deleting runs: one run (`durable delete`) or ended runs in bounded batches (`durable purge`,
retention). Every table that keeps something of a run is listed in RUN_TABLES, the one place
a new run-owned table must be added to."""

from __future__ import annotations

from collections.abc import Sequence

from durable.model import ENDED
from durable.store.rows import Table, marks

RUN_TABLES = ("operations", "history", "signals", "published", "run_logs", "executions",
              "checkpoint_tokens", "callback_heartbeats", "run_attributes", "streams",
              "stream_entries", "stream_attempts",
              "subscriptions", "subscription_inbox")
"""The tables, beside `runs`, whose rows belong to one run (by their `run_id` column): a
deleted run takes its rows in each with it. Each has an index leading with run_id."""

_ENDED_SQL = ", ".join(f"'{status.value}'" for status in sorted(ENDED))


class Retention(Table):
    """Deleting runs with all they own."""

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete these runs and their rows in every RUN_TABLES table, whatever their status
        (the engine checks that first)."""
        if not run_ids:
            return
        ids = marks(run_ids)
        self._exec(f"DELETE FROM runs WHERE run_id IN ({ids})", run_ids)
        self._delete_owned(run_ids)

    def delete_ended(self, ended_before: float, limit: int, workflow: str | None = None,
                     unless: Sequence[str] = ()) -> list[str]:
        """Delete up to `limit` ended runs (of `workflow`, if given; of none of `unless`) that
        ended before `ended_before`, oldest first, with what they own; returns their ids.
        Set-based: one DELETE on runs (walking runs_ended, or runs_workflow_ended for one
        workflow), then one per owned table. Runs another purge is deleting meanwhile are
        skipped (`claim_lock_clause`), not waited for."""
        where, params = "", list[object]([ended_before])
        if workflow is not None:
            where, params = " AND workflow = ?", [ended_before, workflow]
        if unless:
            where += f" AND workflow NOT IN ({marks(unless)})"
            params += unless
        deleted = [r[0] for r in self._rows(
            "DELETE FROM runs WHERE " + self.run_id_in.format(
                f"SELECT run_id FROM runs WHERE ended_at < ? AND status IN ({_ENDED_SQL})"
                f"{where} ORDER BY ended_at LIMIT ?{self.claim_lock_clause}")
            + " RETURNING run_id", (*params, limit))]
        self._delete_owned(deleted)
        return deleted

    def _delete_owned(self, run_ids: Sequence[str]) -> None:
        if not run_ids:
            return
        ids = marks(run_ids)
        for table in RUN_TABLES:
            self._exec(f"DELETE FROM {table} WHERE run_id IN ({ids})", run_ids)
