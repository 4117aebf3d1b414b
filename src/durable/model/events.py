"""Events: what is published on a topic, and the filters that choose among them.

An event is published once per (topic, id): publishing the same id again returns the event
already stored, so a retried publisher never makes a second one. A workflow's trigger
(`@workflow(on_event=..., filter=...)`) starts one run per matching event, and a running
workflow's subscription (`ctx.subscribe`) buffers the matching events published from the
moment it was recorded. Filters are CEL expressions over `data`, `topic` and `id`, compiled
with the `common-expression-language` package (the `events` extra).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from durable.errors import MissingExtra, UsageError
from durable.model.ids import derived_run_id

VARIABLES = frozenset({"data", "topic", "id"})
"""What a filter may name: the event's JSON data, its topic and its id."""

_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")


def check_topic(topic: str) -> str:
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise UsageError(f"topic {topic!r} is not valid: 1 to 200 letters, digits and . _ : / -, "
                         "beginning with a letter or digit (e.g. 'orders' or 'github.push')")
    return topic


EVENT_ID_MAX = 500
SEQ_MAX = 2**62
"""The largest event number asked for: within both databases' 64-bit integers."""


def check_event_id(event_id: str) -> str:
    """An event id is 1 to 500 printable characters (a delivery id, a UUID, a business key)."""
    if (not isinstance(event_id, str) or not 0 < len(event_id) <= EVENT_ID_MAX
            or not event_id.isprintable()):
        raise UsageError(f"event id {event_id!r} is not valid: 1 to {EVENT_ID_MAX} printable "
                         "characters (e.g. a delivery id or 'order-17')")
    return event_id


@dataclass(frozen=True, slots=True)
class Event:
    """One published event as the store keeps it. `data` is JSON text; `generation` counts
    its redispatches (0: dispatched once)."""

    seq: int
    topic: str
    id: str
    data: str
    published_at: float
    generation: int = 0

    @property
    def value(self) -> Any:
        return json.loads(self.data)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "topic": self.topic, "id": self.id, "data": self.value,
                "published_at": self.published_at, "generation": self.generation}

    def to_json(self) -> str:
        """What a triggered run takes as input, and a next_event returns: `to_dict`, as JSON."""
        return json.dumps(self.to_dict())


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a trigger made of one event: the run it started, or None (the filter said no)."""

    workflow: str
    generation: int
    run_id: str | None
    at: float


class EventFilter:
    """A compiled CEL expression that must yield a bool. Compiled once, where it is declared,
    so a bad one fails there with the reason; an event its evaluation fails on (a field the
    data lacks, a type mismatch) does not match."""

    def __init__(self, source: str, where: str) -> None:
        try:
            import cel
        except ImportError:
            raise MissingExtra(f"{where}: an event filter", "events") from None
        self.source = source
        try:
            self._program = cel.compile(source)
        except ValueError as e:
            raise UsageError(f"{where}: filter {source!r} is not a valid CEL expression: "
                             f"{e}") from None
        unknown = set(self._program.variables()) - VARIABLES
        if unknown:
            raise UsageError(f"{where}: filter {source!r} names {', '.join(sorted(unknown))}; "
                             "a filter may name only data, topic and id "
                             "(e.g. \"data.amount > 100\")")

    def __repr__(self) -> str:
        return f"EventFilter({self.source!r})"

    def matches(self, event: Event) -> bool:
        try:
            verdict = self._program.execute({"data": event.value, "topic": event.topic,
                                             "id": event.id})
        except Exception:  # a field this event's data lacks: the filter is about others
            return False
        return verdict is True


def compile_filter(source: str | None, where: str) -> EventFilter | None:
    return None if source is None else EventFilter(source, where)


def matches(source: str | None, event: Event) -> bool:
    """Whether the filter `source` (None: every event) passes `event`; for the engine, which
    keeps filters as text. A filter stored here was compiled where it was declared."""
    return source is None or _stored(source).matches(event)


@functools.lru_cache(maxsize=1024)
def _stored(source: str) -> EventFilter:
    """Compiled once per process, not once per event and subscription."""
    return EventFilter(source, "stored filter")


@dataclass(frozen=True, slots=True)
class Trigger:
    """`@workflow(on_event=topic, filter=...)`: one run per matching event."""

    topic: str
    filter: EventFilter | None = None

    @property
    def filter_source(self) -> str | None:
        return None if self.filter is None else self.filter.source

    def run_id(self, workflow: str, event: Event) -> str:
        """The run a trigger starts for an event: the same whoever dispatches it, so two
        workers dispatching one event start one run; a redispatch (a new generation) starts
        another."""
        return derived_run_id(f"event-{workflow}-{event.topic}-{event.id}-{event.generation}")
