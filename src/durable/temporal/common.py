"""`RetryPolicy` with Temporal's fields and defaults, and how it becomes Durable's.

Temporal retries an activity forever by default (`maximum_attempts=0`), starting at one second and
doubling up to 100 times the initial interval, with no jitter; error types named in
`non_retryable_error_types` (or an `ApplicationError(non_retryable=True)`) stop it at once. Durable
honours exactly that through a `durable.RetryPolicy` subclass, so the backoff is checkpointed with
each failed attempt and survives a crash like any Durable retry.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from typing import Any

from durable.errors import UsageError
from durable.sdk.executor import WALL_CLOCK
from durable.sdk.retry import RetryPolicy as _DurableRetry
from durable.sdk.serializer import Serializer
from durable.temporal.exceptions import ApplicationError, CancelledError

__all__ = ["PayloadConverter", "RawValue", "RetryPolicy", "SearchAttributeKey",
           "SearchAttributePair", "SearchAttributeUpdate", "TypedSearchAttributes",
           "WorkflowIDConflictPolicy", "WorkflowIDReusePolicy"]


# -- values as dynamic handlers receive them -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class RawValue:
    """One argument of a signal or query that no typed handler decoded: what a dynamic handler
    gets (Temporal's `temporalio.common.RawValue`). `payload` is the value as it travelled (JSON
    data); `workflow.payload_converter().from_payload(raw.payload, T)` types it."""

    payload: Any


class PayloadConverter:
    """Temporal's payload converter, on the workflow's serializer: JSON data to and from the
    types a handler names (dataclasses, pydantic models, ...)."""

    def __init__(self, serializer: Serializer) -> None:
        self._serializer = serializer

    def from_payload(self, payload: Any, type_hint: Any = None) -> Any:
        if type_hint is None:
            return payload
        return self._serializer.decode(self._serializer.encode(payload), type_hint)

    def to_payload(self, value: Any) -> Any:
        return self._serializer.decode(self._serializer.encode(value))

    def from_payloads(self, payloads: Sequence[Any],
                      type_hints: Sequence[Any] | None = None) -> list[Any]:
        hints = list(type_hints or [None] * len(payloads))
        return [self.from_payload(p, t) for p, t in zip(payloads, hints, strict=True)]


# -- search attributes: Temporal's typed forms, onto Durable's run attributes ------------------

@dataclass(frozen=True)
class SearchAttributeKey:
    """A typed search attribute name. On Durable it is a run attribute (`durable ls --where`,
    `Client.runs`): text, keyword, int, float and datetime map onto text, number and time."""

    name: str
    indexed_value_type: str

    @staticmethod
    def for_text(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "TEXT")

    @staticmethod
    def for_keyword(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "KEYWORD")

    @staticmethod
    def for_int(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "INT")

    @staticmethod
    def for_float(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "FLOAT")

    @staticmethod
    def for_bool(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "BOOL")

    @staticmethod
    def for_datetime(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "DATETIME")

    @staticmethod
    def for_keyword_list(name: str) -> SearchAttributeKey:
        return SearchAttributeKey(name, "KEYWORD_LIST")

    def value_set(self, value: Any) -> SearchAttributeUpdate:
        return SearchAttributeUpdate(self, value)

    def value_unset(self) -> SearchAttributeUpdate:
        return SearchAttributeUpdate(self, None)


@dataclass(frozen=True)
class SearchAttributeUpdate:
    key: SearchAttributeKey
    value: Any


@dataclass(frozen=True)
class SearchAttributePair:
    key: SearchAttributeKey
    value: Any


@dataclass(frozen=True)
class TypedSearchAttributes:
    search_attributes: Sequence[SearchAttributePair] = ()


def run_attributes(given: Any, where: str) -> dict[str, Any]:
    """Temporal search attributes (a `{name: [value]}` mapping, `TypedSearchAttributes`, or
    `SearchAttributeUpdate`s) as Durable run attributes: one value per name."""
    if isinstance(given, TypedSearchAttributes):
        pairs = [(p.key, p.value) for p in given.search_attributes]
    elif isinstance(given, Mapping):
        pairs = [(name, value) for name, value in given.items()]
    else:
        pairs = [(u.key, u.value) for u in given]
    out: dict[str, Any] = {}
    for key, value in pairs:
        name = key.name if isinstance(key, SearchAttributeKey) else key
        if isinstance(key, SearchAttributeKey) and key.indexed_value_type == "BOOL":
            raise UsageError(f"{where}: search attribute {name!r} is a bool; Durable's run "
                             "attributes hold text, numbers and times: use for_keyword with "
                             "\"true\" / \"false\"")
        if isinstance(value, list | tuple):  # the untyped form, or a keyword list
            if len(value) != 1:
                raise UsageError(f"{where}: search attribute {name!r} has {len(value)} values; "
                                 "a Durable run attribute holds exactly one")
            value = value[0]
        if value is None:
            raise UsageError(f"{where}: unsetting search attribute {name!r}: Durable's run "
                             "attributes can be replaced but not removed; set another value")
        out[name] = value
    return out


class WorkflowIDReusePolicy(IntEnum):
    """What `start_workflow` does when a run with the id has ended (Temporal's default: start
    a new one)."""

    ALLOW_DUPLICATE = 1
    ALLOW_DUPLICATE_FAILED_ONLY = 2
    REJECT_DUPLICATE = 3
    TERMINATE_IF_RUNNING = 4


class WorkflowIDConflictPolicy(IntEnum):
    """What `start_workflow` does when a run with the id is still running (default: fail)."""

    UNSPECIFIED = 0
    FAIL = 1
    USE_EXISTING = 2
    TERMINATE_EXISTING = 3


@dataclass(frozen=True)
class RetryPolicy:
    """Options for retrying activities, as in `temporalio.common.RetryPolicy`."""

    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = 2.0
    maximum_interval: timedelta | None = None  # None: 100 x initial_interval
    maximum_attempts: int = 0  # 0: no maximum
    non_retryable_error_types: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if self.maximum_attempts < 0:
            raise ValueError("RetryPolicy.maximum_attempts cannot be negative")
        if self.maximum_attempts == 1:
            return  # retries disabled: the rest does not matter, as in Temporal
        if self.initial_interval.total_seconds() < 0:
            raise ValueError("RetryPolicy.initial_interval cannot be negative")
        if self.backoff_coefficient < 1:
            raise ValueError("RetryPolicy.backoff_coefficient must be at least 1")
        if self.maximum_interval is not None and self.maximum_interval < self.initial_interval:
            raise ValueError("RetryPolicy.maximum_interval cannot be less than its "
                             "initial_interval")

    def to_durable(self, deadline: float | None = None) -> _DurableRetry:
        """The Durable policy that retries as Temporal would; `deadline` (clock seconds) is the
        activity's schedule-to-close limit: no attempt starts after it."""
        initial = self.initial_interval.total_seconds()
        maximum = (self.maximum_interval.total_seconds() if self.maximum_interval is not None
                   else initial * 100)
        return TemporalRetry(
            max_attempts=self.maximum_attempts or sys.maxsize, initial_interval=initial,
            backoff=self.backoff_coefficient, max_interval=maximum, jitter=0.0,
            non_retryable_names=frozenset(self.non_retryable_error_types or ()),
            deadline=deadline)


@dataclass(frozen=True, slots=True)
class TemporalRetry(_DurableRetry):
    """Durable's exponential backoff plus Temporal's two other ways to stop: error types named
    as non-retryable (by class name, or an ApplicationError's `type`), and the schedule-to-close
    deadline. The decision is checkpointed with the failure, so reading the clock here is safe."""

    non_retryable_names: frozenset[str] = frozenset()
    deadline: float | None = None

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        if isinstance(error, CancelledError):  # the workflow cancelled the activity
            return None
        if isinstance(error, ApplicationError) and (
                error.non_retryable or error.type in self.non_retryable_names):
            return None
        if type(error).__name__ in self.non_retryable_names:
            return None
        delay = _DurableRetry.next_delay(self, attempt, error)
        if delay is not None and self.deadline is not None and (
                WALL_CLOCK.get()() + delay >= self.deadline):
            return None
        return delay


DEFAULT_ACTIVITY_RETRY = RetryPolicy()
