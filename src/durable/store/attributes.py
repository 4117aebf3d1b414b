"""The `run_attributes` table: each run's searchable attributes, and the SQL that finds runs
by them (model/attributes.py has the types and the filter language)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from durable.model.attributes import Attribute, Condition, Kind
from durable.store.rows import Table, marks

COLUMN = {Kind.TEXT: "text_value", Kind.NUMBER: "number_value", Kind.TIME: "time_value"}
"""The column each kind of value is kept in; exactly one is set per row."""


FEW = 5000
"""Matches of a condition below which a listing reads them all from the attribute's index;
from this many on, it walks the runs newest first and looks each one's attribute up."""


def _test(condition: Condition) -> tuple[str, list[Any]]:
    """The condition on run_attributes. The operator comes from the parser's fixed set, never
    from text a caller wrote."""
    return (f"key = ? AND {COLUMN[condition.kind]} {condition.op.value} ?",
            [condition.key, condition.value])


class Attributes(Table):
    def matching(self, condition: Condition) -> tuple[str, list[Any]]:
        """SQL true of the runs (`runs`) that meet `condition`, and its parameters.

        A page of a listing is the newest runs that match. Where few runs match, reading them
        all from the index on (key, value) and sorting them is cheap; where many do, that costs
        what they number (a range over half of a million runs), while walking the runs newest
        first finds a page of matches within a few thousand. Which holds is counted here, up
        to FEW, on the index: neither SQLite (without STAT4) nor a prepared statement knows how
        many values a range covers."""
        test, params = _test(condition)
        few = self._one(f"SELECT count(*) FROM (SELECT 1 FROM run_attributes WHERE {test}"
                        " LIMIT ?) m", (*params, FEW))[0] < FEW
        if few:
            return f"run_id IN (SELECT run_id FROM run_attributes WHERE {test})", params
        return (f"EXISTS (SELECT 1 FROM run_attributes a WHERE a.run_id = runs.run_id AND"
                f" {test})", params)

    def set_attributes(self, run_id: str, attrs: Sequence[Attribute]) -> None:
        """Give the run these attributes, replacing the value (and kind) of a key it has."""
        for a in attrs:
            values = [a.value if a.kind is kind else None for kind in COLUMN]
            self._exec(
                "INSERT INTO run_attributes (run_id, key, text_value, number_value, time_value)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET"
                " text_value = excluded.text_value, number_value = excluded.number_value,"
                " time_value = excluded.time_value", (run_id, a.key, *values))

    def attributes_of(self, run_ids: Sequence[str]) -> dict[str, list[Attribute]]:
        """The attributes of each of these runs that has some, by key."""
        found: dict[str, list[Attribute]] = {}
        if not run_ids:
            return found
        for row in self._rows(
                "SELECT run_id, key, text_value, number_value, time_value FROM run_attributes"
                f" WHERE run_id IN ({marks(run_ids)}) ORDER BY run_id, key", run_ids):
            kind, value = next((k, v) for k, v in zip(COLUMN, row[2:], strict=True)
                               if v is not None)
            found.setdefault(row[0], []).append(Attribute(row[1], kind, value))
        return found
