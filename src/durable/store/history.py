"""The `history` and `published` tables: what happened to a run, and what it publishes."""

from __future__ import annotations

import json
import math
from typing import Any

from durable.model import HistoryEvent
from durable.store.rows import Table


class History(Table):
    """History events and published values."""

    def set_published(self, run_id: str, key: str, value: str | None, now: float) -> None:
        self._exec(
            "INSERT INTO published (run_id, key, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at", (run_id, key, value, now))

    def get_published(self, run_id: str, key: str) -> tuple[str | None] | None:
        row = self._one("SELECT value FROM published WHERE run_id = ? AND key = ?",
                        (run_id, key))
        return None if row is None else (row[0],)

    def published(self, run_id: str) -> dict[str, str | None]:
        """Every key the run published, by key, with its latest encoded value."""
        return {key: value for key, value in self._rows(
            "SELECT key, value FROM published WHERE run_id = ? ORDER BY key", (run_id,))}

    def add_event(self, run_id: str, type: str, now: float, op_id: str | None = None,
                  name: str | None = None, details: dict[str, Any] | str | None = None
                  ) -> None:
        """`details`: a dict, or one already in JSON (`attempt_details`)."""
        if isinstance(details, dict):
            details = json.dumps(details) if details else None
        self._exec(
            "INSERT INTO history (run_id, type, ts, op_id, name, details)"
            " VALUES (?, ?, ?, ?, ?, ?)", (run_id, type, now, op_id, name, details))

    def history(self, run_id: str, after: int = 0, limit: int = 10_000) -> list[HistoryEvent]:
        rows = self._rows(
            "SELECT id, run_id, type, ts, op_id, name, details FROM history"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", (run_id, after, limit))
        return [HistoryEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else {})
                for r in rows]


def attempt_details(attempt: int, started_at: float | None) -> str:
    """`json.dumps({"attempt": attempt, "started_at": started_at})`, the details every step
    that succeeds records, written out: json.dumps costs that step several calls and a few
    times the time. Anything but the plain numbers a step has goes the generic way."""
    if type(attempt) is int and (started_at is None or (
            type(started_at) in (int, float) and math.isfinite(started_at))):
        started = "null" if started_at is None else repr(started_at)
        return f'{{"attempt": {attempt!r}, "started_at": {started}}}'
    return json.dumps({"attempt": attempt, "started_at": started_at})
