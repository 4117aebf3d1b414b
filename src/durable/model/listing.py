"""What a listing of runs asks for: which runs (`RunFilter`) and from where on (`Cursor`)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from durable.errors import UsageError
from durable.model import ExecutionStatus, attributes
from durable.model.attributes import Condition

DERIVED_STATUSES = {"PARKED": "RUNNING but parked (RunInfo.parked): it needs a person"}
"""States a listing can filter by that are not statuses of their own, but a status and more."""


def listed_statuses() -> list[str]:
    """What a listing's status filter takes: every ExecutionStatus (read when asked, so a
    status added to the enum is taken as is), then the derived states."""
    return [s.value for s in ExecutionStatus] + list(DERIVED_STATUSES)


def listed_status(name: str | None) -> str | None:
    """`name`, in any case, as the status filter's value; UsageError for one it does not take."""
    if name is None or name == "":
        return None
    if name.upper() not in listed_statuses():
        raise UsageError(f"unknown status {name!r}; use one of {', '.join(listed_statuses())}")
    return name.upper()


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Runs that meet every condition given. `since`/`until`: created at or after / before
    (epoch seconds). `roots`: only runs no other run started."""

    status: str | None = None
    workflow: str | None = None
    search: str | None = None
    conditions: tuple[Condition, ...] = ()
    since: float | None = None
    until: float | None = None
    parent: str | None = None
    roots: bool = False


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of a listing (newest first) ended: the next page starts after this run.
    Keyset, not offset: a page costs the same however deep, and runs started meanwhile do not
    shift it. Opaque to callers (`encode`)."""

    created_at: float
    run_id: str

    def encode(self) -> str:
        raw = json.dumps([self.created_at, self.run_id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            created_at, run_id = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
            return cls(float(created_at), str(run_id))
        except (ValueError, TypeError, binascii.Error):
            raise UsageError(f"cursor {text[:40]!r} is not one a listing gave: pass the "
                             "next_cursor of the previous page as it is") from None


_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def moment(value: float | datetime | str, what: str, now: float) -> float:
    """A time bound of a listing as epoch seconds: a number of them, an aware datetime, an ISO
    8601 time (`2026-12-01T00:00:00Z`; a date alone is midnight UTC) or a span before `now`
    (`90s`, `15m`, `2h`, `7d`, `1w`)."""
    if isinstance(value, datetime):
        return attributes.attribute(what, value).value  # type: ignore[return-value]
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if (ago := _AGO.fullmatch(text)) is not None:
        return now - float(ago[1]) * _UNIT[ago[2]]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or (when.tzinfo is None and "T" in text):
        raise UsageError(f"{what} {value!r} is not a time: give an ISO 8601 time with its zone "
                         "(2026-12-01T00:00:00Z), a date (2026-12-01, midnight UTC), or a span "
                         "before now (15m, 2h, 7d)")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def run_filter(*, status: str | None = None, workflow: str | None = None,
               search: str | None = None, where: str | None = None,
               since: float | datetime | str | None = None,
               until: float | datetime | str | None = None, parent: str | None = None,
               roots: bool = False, now: float) -> RunFilter:
    """A RunFilter from what a person typed, each part checked: UsageError (FilterError for
    `where`, with the position) says what is wrong."""
    return RunFilter(
        status=listed_status(status), workflow=workflow or None, search=search or None,
        conditions=tuple(attributes.parse_filter(where)) if where and where.strip() else (),
        since=None if since in (None, "") else moment(since, "since", now),
        until=None if until in (None, "") else moment(until, "until", now),
        parent=parent or None, roots=roots)
