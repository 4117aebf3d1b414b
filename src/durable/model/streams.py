"""Durable streams: ordered values a run writes under a name, for clients to follow live.

A stream's entries are numbered by the store, 1, 2, 3... per (run, stream), in commit order, so
a reader resumes after the last offset it saw. Three kinds of entry:

- `value`: a value written by workflow code (recorded as an operation, so written once however
  often the run replays; `operation_id` set, `attempt` None), or by a step body while it runs
  (`operation_id`, `attempt` and `invocation` name the attempt that wrote it).
- `abandoned`: the attempt it names (`operation_id`, `attempt`, `invocation`) is dead: it
  failed, or its process was lost. Its values came before this entry, at lower offsets, and
  none comes after it. Readers that showed them take them back; readers asking later do not
  get them at all (see `Client.stream`).
- `closed`: the stream ends here (`ctx.stream(name).close()`); nothing is written after it.

Values of a step attempt are delivered while it runs, rather than held until it succeeds,
because what they are for is watching a long body work (a model's tokens): a UI shows them at
once and strikes them out at the marker, an agent client drops what it buffered for that
attempt; both are told by the stream itself, in order, so a reader resuming from an offset
sees exactly what one that never disconnected saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

STREAM_NAME_CHARS = 200
"""Longest stream name."""


class StreamKind(StrEnum):
    VALUE = "value"
    ABANDONED = "abandoned"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """What a step body hands the engine to append: a value (JSON text), or, with `abandoned`,
    the marker that the attempt's values are void."""

    stream: str
    value: str | None
    operation_id: str
    attempt: int
    at: float
    abandoned: bool = False


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry of a stream as stored. `value` is JSON text (None but for values)."""

    offset: int
    kind: StreamKind
    value: str | None
    at: float
    operation_id: str | None = None
    attempt: int | None = None
    invocation: int | None = None  # the fencing token of the invocation a step attempt ran in

    @property
    def data(self) -> Any:
        """The value, decoded from its JSON (None for markers)."""
        return None if self.value is None else json.loads(self.value)

    @property
    def attempt_key(self) -> str | None:
        """Names one step attempt: a value's and its `abandoned` marker's are equal. None for
        what workflow code wrote, which no attempt can take back."""
        if self.attempt is None:
            return None
        return f"{self.operation_id}/{self.attempt}/{self.invocation}"


@dataclass(frozen=True, slots=True)
class StreamInfo:
    name: str
    last_offset: int
    closed: bool


def check_stream_name(name: object) -> str:
    """`name` if it can name a stream, else ValueError saying what would."""
    if not isinstance(name, str) or not name or len(name) > STREAM_NAME_CHARS:
        raise ValueError(f"stream name {name!r} must be a non-empty string of at most "
                         f"{STREAM_NAME_CHARS} characters")
    return name
