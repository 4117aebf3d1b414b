"""Reads for the server's observability pages: what invocations of functions did lately.

Every invocation already leaves an `InvocationCompleted` event in its run's history (the engine
writes it in the transaction that records how the invocation ended), so a function's health is
read from those rather than kept in counters of its own: a counter row per function would be
written by every invocation of it at once, one hot row that all of them queue on.
"""

from __future__ import annotations

from collections.abc import Sequence

from durable.store.rows import Table, marks

_INVOKED = ("FROM history h JOIN runs r ON r.run_id = h.run_id"
            " WHERE h.type = 'InvocationCompleted' AND h.ts > ?")
# An invocation that failed to run is the one whose event carries the error (engine/machine.py
# `retry_invocation`); one that answered, even with the workflow's failure, has none.
# (The pattern is a parameter: a literal `%` would be a placeholder to psycopg.)
_FAILED = "h.details LIKE ?"
_ERROR_KEY = '%"error":%'


class Observe(Table):
    """Invocations of functions since a time, by function (the workflow of their runs)."""

    def invocation_counts(self, workflows: Sequence[str],
                          since: float) -> dict[str, tuple[int, int]]:
        """workflow -> (invocations, of which failed to run) ended after `since`. Walks the
        events of the window only (index history_invocations)."""
        if not workflows:
            return {}
        rows = self._rows(
            f"SELECT r.workflow, count(*), sum(CASE WHEN {_FAILED} THEN 1 ELSE 0 END)"
            f" {_INVOKED} AND r.workflow IN ({marks(workflows)}) GROUP BY r.workflow",
            (_ERROR_KEY, since, *workflows))
        return {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}

    def last_invocation(self, workflow: str, since: float,
                        failed: bool = False) -> tuple[float, str, str | None] | None:
        """(when, run id, details JSON) of the latest invocation of `workflow` that ended after
        `since`; with `failed`, of the latest that failed to run."""
        row = self._one(
            f"SELECT h.ts, h.run_id, h.details {_INVOKED} AND r.workflow = ?"
            + (f" AND {_FAILED}" if failed else "") + " ORDER BY h.ts DESC LIMIT 1",
            (since, workflow, *([_ERROR_KEY] if failed else [])))
        return None if row is None else (float(row[0]), row[1], row[2])
