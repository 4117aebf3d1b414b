"""The stream tables (model/streams.py): each stream's last offset, its entries, and the step
attempts that wrote to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from durable.model.streams import StreamEntry, StreamInfo, StreamKind
from durable.store.rows import Table, marks


class NewEntry(NamedTuple):
    kind: StreamKind
    value: str | None
    op_id: str | None
    attempt: int | None
    token: int | None
    at: float


class AttemptKey(NamedTuple):
    """A step attempt that wrote to stream `name` of run `run_id`."""

    run_id: str
    name: str
    op_id: str
    attempt: int
    token: int


_ENTRY_COLUMNS = "seq, kind, value, op_id, attempt, token, at"
_ROWS_PER_INSERT = 200
"""Entries per INSERT: well inside every dialect's limit on parameters per statement."""


class Streams(Table):
    """Durable streams."""

    def append_stream(self, run_id: str, name: str, entries: Sequence[NewEntry]) -> int | None:
        """Append `entries` to the stream, numbered on from its last offset; returns the last
        offset given, or None if the stream is closed (nothing is appended then). The update
        of the stream's row holds writers of the same stream in line until commit, so offsets
        are in commit order on either dialect."""
        row = self._one(
            "INSERT INTO streams (run_id, name, last_seq) VALUES (?, ?, ?)"
            " ON CONFLICT (run_id, name) DO UPDATE SET last_seq = streams.last_seq"
            " + excluded.last_seq WHERE streams.closed_at IS NULL RETURNING last_seq",
            (run_id, name, len(entries)))
        if row is None:
            return None
        last = int(row[0])
        first = last - len(entries) + 1
        for start in range(0, len(entries), _ROWS_PER_INSERT):
            part = entries[start:start + _ROWS_PER_INSERT]
            self._exec(
                "INSERT INTO stream_entries (run_id, name, seq, kind, value, op_id, attempt,"
                f" token, at) VALUES {', '.join(['(?, ?, ?, ?, ?, ?, ?, ?, ?)'] * len(part))}",
                [v for i, e in enumerate(part, first + start)
                 for v in (run_id, name, i, e.kind.value, e.value, e.op_id, e.attempt,
                           e.token, e.at)])
        closed = [e.at for e in entries if e.kind is StreamKind.CLOSED]
        if closed:
            self._exec("UPDATE streams SET closed_at = ? WHERE run_id = ? AND name = ?",
                       (closed[0], run_id, name))
        return last

    def add_stream_attempts(self, keys: Sequence[AttemptKey]) -> None:
        """Note the attempts that wrote values (those noted already stay as they are)."""
        if keys:
            self._exec(
                "INSERT INTO stream_attempts (run_id, name, op_id, attempt, token) VALUES "
                f"{', '.join(['(?, ?, ?, ?, ?)'] * len(keys))}"
                " ON CONFLICT (run_id, name, op_id, attempt, token) DO NOTHING",
                [v for k in keys for v in k])

    def settle_stream_attempts(self, keys: Sequence[AttemptKey], abandoned: bool) -> None:
        """These attempts are over: dead (`abandoned`), or known to have succeeded."""
        for k in keys:
            self._exec(
                "UPDATE stream_attempts SET live = 0, abandoned = ? WHERE run_id = ?"
                " AND name = ? AND op_id = ? AND attempt = ? AND token = ?",
                (int(abandoned), *k))

    def live_stream_attempts(self, run_ids: Sequence[str]) -> list[AttemptKey]:
        """The attempts of these runs that wrote values and are not settled yet."""
        if not run_ids:
            return []
        return [AttemptKey(*r) for r in self._rows(
            "SELECT run_id, name, op_id, attempt, token FROM stream_attempts"
            f" WHERE live = 1 AND run_id IN ({marks(run_ids)})", run_ids)]

    def stream_entries(self, run_id: str, name: str, after: int, limit: int,
                       with_abandoned: bool = False) -> list[StreamEntry]:
        """The entries after offset `after`, oldest first; without `with_abandoned`, the values
        of attempts known dead are left out (their `abandoned` markers are not)."""
        if with_abandoned:
            rows = self._rows(
                f"SELECT {_ENTRY_COLUMNS} FROM stream_entries WHERE run_id = ? AND name = ?"
                " AND seq > ? ORDER BY seq LIMIT ?", (run_id, name, after, limit))
        else:
            rows = self._rows(
                f"SELECT {', '.join('e.' + c for c in _ENTRY_COLUMNS.split(', '))}"
                " FROM stream_entries e LEFT JOIN stream_attempts a ON a.run_id = e.run_id"
                " AND a.name = e.name AND a.op_id = e.op_id AND a.attempt = e.attempt"
                " AND a.token = e.token WHERE e.run_id = ? AND e.name = ? AND e.seq > ?"
                " AND (a.abandoned IS NULL OR a.abandoned = 0 OR e.kind <> 'value')"
                " ORDER BY e.seq LIMIT ?", (run_id, name, after, limit))
        return [StreamEntry(r[0], StreamKind(r[1]), r[2], r[6], r[3], r[4], r[5])
                for r in rows]

    def stream_info(self, run_id: str, name: str) -> StreamInfo | None:
        row = self._one("SELECT name, last_seq, closed_at FROM streams WHERE run_id = ?"
                        " AND name = ?", (run_id, name))
        return None if row is None else StreamInfo(row[0], row[1], row[2] is not None)

    def streams_of(self, run_id: str) -> list[StreamInfo]:
        return [StreamInfo(r[0], r[1], r[2] is not None) for r in self._rows(
            "SELECT name, last_seq, closed_at FROM streams WHERE run_id = ? ORDER BY name",
            (run_id,))]
