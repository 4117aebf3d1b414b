"""The `kv` table: the key-value store shared by all runs (model/kv.py)."""

from __future__ import annotations

from durable.model.kv import KvEntry
from durable.store.rows import Table

KEY_PREFIX = "substr(key, 1, length(?)) = ?"
"""`key` begins with the parameter (given twice). Not `LIKE`, which would need escaping and,
on PostgreSQL, a case rule of its own; not a range, which PostgreSQL's collations order in
ways that do not keep a prefix's keys together."""


class Kv(Table):
    def kv_read(self, key: str) -> tuple[str | None, int]:
        """The key's value (None: absent) and version (0: never written), unlocked."""
        row = self._one("SELECT value, version FROM kv WHERE key = ?", (key,))
        return (None, 0) if row is None else (row[0], int(row[1]))

    def kv_lock(self, key: str, now: float) -> tuple[str | None, int]:
        """`kv_read`, with the key's row locked until commit: a write computed from what this
        returns cannot lose another writer's. The row is made first if the key has none, so
        that two transactions writing a new key take turns on it too rather than both find
        it absent."""
        self._exec("INSERT INTO kv (key, value, version, updated_at) VALUES (?, NULL, 0, ?)"
                   " ON CONFLICT (key) DO NOTHING", (key, now))
        row = self._one("SELECT value, version FROM kv WHERE key = ?" + self.row_lock_clause,
                        (key,))
        return row[0], int(row[1])

    def kv_write(self, key: str, value: str | None, now: float) -> int:
        """Give the key (locked by `kv_lock`) `value`, None to delete it; its new version."""
        row = self._one("UPDATE kv SET value = ?, version = version + 1, updated_at = ?"
                        " WHERE key = ? RETURNING version", (value, now, key))
        return int(row[0])

    def kv_entry(self, key: str) -> KvEntry | None:
        row = self._one("SELECT key, value, version, updated_at FROM kv WHERE key = ?"
                        " AND value IS NOT NULL", (key,))
        return None if row is None else KvEntry(row[0], row[1], int(row[2]), float(row[3]))

    def kv_entries(self, prefix: str = "", after: str | None = None,
                   limit: int = 1000) -> list[KvEntry]:
        """The keys that hold a value and begin with `prefix`, in key order, from after
        `after`."""
        rows = self._rows(
            f"SELECT key, value, version, updated_at FROM kv WHERE value IS NOT NULL"
            f" AND {KEY_PREFIX} AND key > ? ORDER BY key LIMIT ?",
            (prefix, prefix, after or "", limit))
        return [KvEntry(r[0], r[1], int(r[2]), float(r[3])) for r in rows]

    def kv_keys(self, prefix: str = "") -> list[str]:
        return [r[0] for r in self._rows(
            f"SELECT key FROM kv WHERE value IS NOT NULL AND {KEY_PREFIX} ORDER BY key",
            (prefix, prefix))]
