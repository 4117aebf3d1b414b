"""The `run_logs` table: the lines workflows logged through `ctx.logger`, kept with each run.

Bounded per run: the newest LOG_LINES_KEPT lines, each cut to LOG_LINE_CHARS by the SDK. A line
is kept once per key (`LogLine.key`), so a replay that logs it again adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from durable.model import LOG_LINES_KEPT, LogLine
from durable.store.rows import Table

_ROWS_PER_INSERT = 200
"""Lines per INSERT: well inside every dialect's limit on parameters per statement."""


class Logs(Table):
    """Workflow log lines."""

    def add_logs(self, run_id: str, lines: Sequence[LogLine]) -> None:
        """Keep `lines` (oldest first) with the run, then drop its oldest beyond the bound."""
        if not lines:
            return
        lines = lines[-LOG_LINES_KEPT:]
        for start in range(0, len(lines), _ROWS_PER_INSERT):
            chunk = lines[start:start + _ROWS_PER_INSERT]
            self._exec(
                "INSERT INTO run_logs (run_id, line_key, at, level, message, op_id, attempt)"
                f" VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?)'] * len(chunk))}"
                " ON CONFLICT (run_id, line_key) DO NOTHING",
                [v for line in chunk for v in (run_id, line.key, line.at, line.level,
                                               line.message, line.operation_id, line.attempt)])
        self._exec(
            "DELETE FROM run_logs WHERE run_id = ? AND id <= (SELECT id FROM run_logs"
            " WHERE run_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (run_id, run_id, LOG_LINES_KEPT))

    def logs(self, run_id: str, after: int = 0, limit: int = LOG_LINES_KEPT
             ) -> list[tuple[int, LogLine]]:
        """The run's kept lines after the line numbered `after`, oldest first, each with its
        number (which only grows: a client following the log asks for what came since)."""
        rows = self._rows(
            "SELECT id, line_key, at, level, message, op_id, attempt FROM run_logs"
            " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", (run_id, after, limit))
        return [(r[0], LogLine(r[1], r[2], r[3], r[4], r[5], r[6])) for r in rows]
