"""Queues: limits shared by every run of the workflows on them, across all workers.

A queue is declared once, with its limits, and workflows join it:

    emails = durable.Queue("emails", limit=10, rate="100/minute")

    @durable.workflow(queue=emails)          # or queue="emails", once it is declared
    async def send_welcome(ctx, user_id: str) -> None: ...

`limit`: at most that many runs of the queue started and not yet ended at once. A run takes its
slot when a worker first invokes it and keeps it until it ends, also while it sleeps or waits for
a signal (so a run that waits a day holds its slot a day); a paused run gives it back once no
invocation of it is in flight, and waits for one again when resumed. `rate`: at most N runs
admitted (first invoked) in any sliding window of the period. Runs beyond either limit wait, and
are admitted in the order they were created as slots free up.

This module is data only: the SDK attaches a `Queue` to a workflow, the worker hands the engine
`ServedQueue`s, and the engine (`engine/admission.py`) admits runs at claim time. The engine
never imports user code to learn a limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from durable.errors import UsageError

_UNITS = {unit: seconds for seconds, units in [
    (1.0, ("s", "sec", "secs", "second", "seconds")),
    (60.0, ("m", "min", "mins", "minute", "minutes")),
    (3600.0, ("h", "hour", "hours")),
    (86400.0, ("d", "day", "days")),
] for unit in units}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")

_DECLARED: dict[str, Queue] = {}


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue and its limits; declaring it registers the name (see `Queue.named`).

    `rate` is `"N/unit"` or `"N/<k><unit>"` with unit second, minute, hour or day (or s, sec, m,
    min, h, d), e.g. `"100/minute"`, `"5/10s"`.
    """

    name: str
    limit: int | None = None
    rate: str | None = None
    rate_count: int | None = field(init=False, default=None)
    rate_period: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if not self.name:
            raise UsageError("a Queue needs a name, e.g. durable.Queue('emails', limit=10)")
        if self.limit is not None and (isinstance(self.limit, bool) or self.limit < 1):
            raise UsageError(f"queue {self.name!r}: limit={self.limit!r} must be a positive "
                             "integer, or None for no concurrency limit")
        if self.rate is not None:
            count, period = _parse_rate(self.name, self.rate)
            object.__setattr__(self, "rate_count", count)
            object.__setattr__(self, "rate_period", period)
        known = _DECLARED.setdefault(self.name, self)
        if known != self:
            raise UsageError(f"queue {self.name!r} is declared twice with different limits "
                             f"({known.limit=}, {known.rate=} and {self.limit=}, {self.rate=}); "
                             "declare each queue once and import it where it is used")

    @staticmethod
    def named(name: str) -> Queue:
        """The queue declared under `name`: how `@workflow(queue="emails")` finds its limits."""
        try:
            return _DECLARED[name]
        except KeyError:
            raise UsageError(f"no queue named {name!r} is declared; declare it once with "
                             f"durable.Queue({name!r}, limit=..., rate=...) in a module the "
                             "workflow's module imports, or pass that Queue object") from None


def _parse_rate(queue: str, rate: str) -> tuple[int, float]:
    m = _RATE.match(rate.lower())
    unit = _UNITS.get(m.group(3)) if m else None
    if m is None or unit is None or int(m.group(1)) < 1 or float(m.group(2) or 1) <= 0:
        raise UsageError(f"queue {queue!r}: rate={rate!r} is not a rate; write runs per period, "
                         "e.g. '100/minute', '10/second', '5/10s' or '1000/day'")
    return int(m.group(1)), float(m.group(2) or 1) * unit


@dataclass(frozen=True, slots=True)
class ServedQueue:
    """What a worker tells the engine about one queue: its limits and which of the workflows it
    serves are on it."""

    queue: Queue
    workflows: tuple[str, ...]


PRIORITY_MAX = 2**31 - 1
"""The highest priority (and -1 - it the lowest): the column is a 32-bit integer on
PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Enqueue:
    """How a run waits for its queue: the queue's name, its `priority` (higher is admitted
    first; equal ones in start order) and a `dedup_id`, which no two live runs of the queue
    share: starting a second one returns the first. `queue` None: the queue a worker recorded
    for the workflow, for a starter that does not load its code."""

    queue: str | None
    priority: int = 0
    dedup_id: str | None = None
