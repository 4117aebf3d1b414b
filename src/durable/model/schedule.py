"""Cron schedules: what `@workflow(schedule=...)` declares, and the arithmetic of its ticks.

Pure data and pure functions over a maintained cron library (croniter), no state. The SDK builds a
`Schedule` when the decorator runs, so a typo in a cron expression or a time zone fails at import
time rather than silently never firing; the worker hands it to the engine, which
(`engine/schedules.py`) decides which tick to fire and records it. Times cross this module as epoch
seconds (what the engine's clock returns) and leave it as aware datetimes in the schedule's zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, get_args

from durable.errors import UsageError
from durable.model.ids import derived_run_id

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

Missed = Literal["skip", "run_once"]
"""What to do with ticks that came while no worker served the schedule: `skip` starts none of
them and waits for the next tick; `run_once` starts one run, for the most recent of them."""

BACKFILL_MAX = 1000
"""Ticks one backfill starts at most: a wider range is refused rather than flooding the store
(backfill it in parts)."""

MISSED_GRACE = 60.0
"""A tick fired later than this many seconds after its time counts as missed. A worker that is
running fires a tick within milliseconds; the grace only keeps a short hiccup (a restart during a
deploy, a slow disk) from skipping a tick under `missed="skip"`."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A cron expression in a time zone. Raises `UsageError` at construction if either is bad.

    Five fields (`minute hour day-of-month month day-of-week`), a sixth for seconds after them, or
    an alias such as `@daily`: whatever croniter accepts. Ticks are computed in `timezone`, so
    `0 9 * * *` in Europe/Paris is 09:00 Paris time on both sides of a DST change.
    """

    cron: str
    timezone: str = "UTC"
    missed: Missed = "skip"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.missed not in get_args(Missed):
            raise UsageError(f"missed={self.missed!r} is not a policy; use "
                             f"{' or '.join(repr(m) for m in get_args(Missed))}")
        # Imported here and below, not at the top: croniter (and dateutil under it) and
        # zoneinfo are most of what this module would cost every `import durable`, and only
        # code that declares a schedule needs them (a serverless function's cold start does not).
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        from croniter import CroniterBadDateError, CroniterError, croniter

        try:
            object.__setattr__(self, "zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(f"unknown time zone {self.timezone!r}; use an IANA name such as "
                             "'UTC', 'Europe/Paris' or 'America/New_York'") from None
        try:
            croniter(self.cron, self.moment(0.0)).get_next(datetime)
        except CroniterBadDateError:
            raise UsageError(f"cron expression {self.cron!r} never fires; check its day and "
                             "month fields") from None
        except (CroniterError, TypeError) as e:
            raise UsageError(f"invalid cron expression {self.cron!r} ({e}); use five fields "
                             "'minute hour day-of-month month day-of-week', e.g. "
                             "'*/5 * * * *' for every five minutes") from None

    def moment(self, t: float) -> datetime:
        """Epoch seconds as an aware datetime in the schedule's zone."""
        return datetime.fromtimestamp(t, self.zone)

    def latest(self, now: float) -> float | None:
        """The last tick at or before `now`, or None if the expression had none before."""
        from croniter import CroniterBadDateError, croniter

        it = croniter(self.cron, self.moment(now))
        try:
            before = it.get_prev(datetime)
        except CroniterBadDateError:
            return None
        at = it.get_next(datetime)  # the tick after `before`: `now` itself if it is one
        return (at if at.timestamp() <= now else before).timestamp()

    def next_after(self, t: float) -> float:
        """The first tick strictly after `t`."""
        from croniter import croniter

        return croniter(self.cron, self.moment(t)).get_next(datetime).timestamp()

    def run_id(self, workflow: str, tick: float) -> str:
        """The id of the one run a tick starts, e.g. `report@2025-01-31T02:00:00+01:00`: starting
        a run is idempotent by id, so every worker may fire the same tick and one run exists. The
        UTC offset keeps the two 02:30s of a DST change apart. A workflow name the run id rule
        does not allow (spaces, `<locals>`) is mapped to one it does (`derived_run_id`)."""
        return derived_run_id(f"{workflow}@{self.moment(tick).isoformat()}")


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """One scheduled workflow as `Client.schedules` reports it (what `durable schedules` shows).

    `next_fire` is the tick a worker fires next; it is in the past when a tick is due now and no
    worker has fired it yet (none is running, or `missed="run_once"` has a tick to catch up).
    `last_tick` and `last_run_id` are None until a worker fired the schedule once; `registered`
    is False until a worker serving the workflow first started. A `paused` one fires nothing
    (`next_fire` is then when it would); `source` is "code" or "api" (`ScheduleState`).
    """

    workflow: str
    cron: str
    timezone: str
    missed: Missed
    next_fire: datetime
    last_tick: datetime | None
    last_run_id: str | None
    registered: bool
    paused: bool = False
    source: str = "code"
