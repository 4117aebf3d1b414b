"""Events: what is published on a topic, and the filters that choose among them.

An event is published once per (topic, id): publishing the same id again returns the event
already stored, so a retried publisher never makes a second one. A workflow's trigger
(`@workflow(on_event=..., filter=...)`) starts one run per matching event, and a running
workflow's subscription (`ctx.subscribe`) buffers the matching events published from the
moment it was recorded. Filters are CEL expressions over `data`, `topic`, `id` and, for an
event a webhook posted, `request` (its method, path, query and headers), compiled with the
`common-expression-language` package (the `events` extra).

A trigger declared with `respond` answers the webhook requests of its topic: the request waits
for the run's `ctx.respond(...)`, or its end, as a `WebhookResponse`.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from durable.errors import MissingExtra, UsageError
from durable.model.ids import derived_run_id

VARIABLES = frozenset({"data", "topic", "id", "request"})
"""What a filter may name: the event's JSON data, its topic, its id and, for an event a
webhook posted, the request (`{"method", "path", "query", "headers"}`; null otherwise)."""

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
    request: str | None = None
    """JSON of the webhook request that posted it, without its body (the data), if one did."""

    @property
    def value(self) -> Any:
        return json.loads(self.data)

    @property
    def request_value(self) -> dict[str, Any] | None:
        return None if self.request is None else json.loads(self.request)

    def to_dict(self) -> dict[str, Any]:
        """`request` only when a webhook posted it: events published otherwise keep the shape
        they always had."""
        out = {"seq": self.seq, "topic": self.topic, "id": self.id, "data": self.value,
               "published_at": self.published_at, "generation": self.generation}
        if self.request is not None:
            out["request"] = self.request_value
        return out

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
                             "a filter may name only data, topic, id and request "
                             "(e.g. \"data.amount > 100\")")

    def __repr__(self) -> str:
        return f"EventFilter({self.source!r})"

    def matches(self, event: Event) -> bool:
        try:
            verdict = self._program.execute({"data": event.value, "topic": event.topic,
                                             "id": event.id, "request": event.request_value})
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


DEFAULT_RESPOND_SECONDS = 10.0
"""How long a webhook request waits for its answer by default: less than the 10 s GitHub
gives a delivery before it calls it failed."""


@dataclass(frozen=True, slots=True)
class Trigger:
    """`@workflow(on_event=topic, filter=..., respond=...)`: one run per matching event;
    `respond`: seconds a webhook request on the topic waits for that run's answer (None: the
    trigger answers no request)."""

    topic: str
    filter: EventFilter | None = None
    respond: float | None = None

    @property
    def filter_source(self) -> str | None:
        return None if self.filter is None else self.filter.source


def respond_seconds(where: str, respond: bool | timedelta | float) -> float | None:
    """`respond=` as a trigger keeps it: True waits the default, a duration that long."""
    if respond is False:
        return None
    if respond is True:
        return DEFAULT_RESPOND_SECONDS
    wait = respond.total_seconds() if isinstance(respond, timedelta) else respond
    if not isinstance(wait, int | float) or not 0 < wait <= 3600:
        raise UsageError(f"{where}: respond={respond!r} is not valid: True (wait "
                         f"{DEFAULT_RESPOND_SECONDS:g} s for the answer) or how long a webhook "
                         "request waits for it, more than 0 and at most an hour")
    return float(wait)


def check_responders(triggers: dict[str, Trigger]) -> None:
    """One answer per request: two triggers of one topic both declaring `respond` would race
    to answer, so a worker serving both is refused."""
    seen: dict[str, str] = {}
    for workflow, trigger in sorted(triggers.items()):
        if trigger.respond is None:
            continue
        if trigger.topic in seen:
            raise UsageError(f"workflows {seen[trigger.topic]} and {workflow} both answer the "
                             f"webhook requests of topic {trigger.topic!r} (respond=): keep "
                             "respond= on one of them")
        seen[trigger.topic] = workflow


def trigger_run_id(workflow: str, event: Event) -> str:
    """The run a trigger starts for an event: the same whoever dispatches it, so two workers
    dispatching one event start one run, and a webhook request finds the run answering it; a
    redispatch (a new generation) starts another."""
    return derived_run_id(f"event-{workflow}-{event.topic}-{event.id}-{event.generation}")


_DROPPED_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
"""Credentials of the caller to this server: not the workflow's business, and not to be stored."""


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """The request a webhook posted, as a workflow it triggers receives it: give the
    workflow's parameter this type (`async def wf(ctx, request: WebhookRequest)`). Header names
    are lower case; `body` is the JSON body (the event's data)."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    event_id: str = ""
    topic: str = ""

    @staticmethod
    def request_json(method: str, path: str, query: dict[str, str],
                     headers: dict[str, str]) -> str:
        """What an event keeps of the request (`Event.request`): the body is its data."""
        kept = {k.lower(): v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}
        return json.dumps({"method": method, "path": path, "query": query, "headers": kept})

    @classmethod
    def of(cls, event: Event) -> WebhookRequest:
        asked = event.request_value
        if asked is None:
            raise UsageError(f"event {event.id!r} on topic {event.topic!r} was not posted by a "
                             "webhook (POST /hooks/events/<topic>), so it carries no request: "
                             "take the event as a dict instead")
        return cls(asked["method"], asked["path"], asked["query"], asked["headers"],
                   event.value, event.id, event.topic)


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """The answer to a webhook request: what `ctx.respond` records, or the run's outcome.
    A `body` that is a string is sent as text, anything else as JSON."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not (
                200 <= self.status <= 599):
            raise UsageError(f"ctx.respond: status {self.status!r} is not valid: an HTTP "
                             "status from 200 to 599 (e.g. 200, 201, 422)")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise UsageError(f"ctx.respond: headers {self.headers!r} are not valid: names and "
                             "values must be strings, e.g. {'X-Handled-By': 'durable'}")

    def to_json(self) -> str:
        try:
            return json.dumps({"status": self.status, "headers": self.headers,
                               "body": self.body})
        except TypeError as e:
            raise UsageError(f"ctx.respond: body is not JSON ({e}): pass a str, or a value "
                             "json.dumps takes (dict, list, number, ...)") from None

    @classmethod
    def from_json(cls, text: str) -> WebhookResponse:
        given = json.loads(text)
        return cls(given["status"], given["headers"], given["body"])
