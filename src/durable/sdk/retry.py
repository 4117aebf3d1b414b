"""Retry policies: how a failed step attempt decides whether and when to try again."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff. The delay before attempt n+1 is
    min(initial_interval * backoff ** (n - 1), max_interval), spread by +/- `jitter` (a fraction).

    The next attempt time is checkpointed with the failure, so the backoff survives a crash.
    Exceptions of a type in `non_retryable` fail the step at once.
    """

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    jitter: float = 0.1
    non_retryable: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0 or self.backoff < 1:
            raise ValueError("RetryPolicy intervals must be >= 0 and backoff >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter is a fraction between 0 and 1")

    def next_delay(self, attempt: int, error: BaseException) -> float | None:
        """Seconds to wait before the next attempt after `attempt` failed, or None to give up."""
        if attempt >= self.max_attempts or isinstance(error, self.non_retryable):
            return None
        delay = capped_backoff(self.initial_interval, self.backoff, attempt, self.max_interval)
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return delay


def capped_backoff(initial: float, rate: float, attempt: int, cap: float) -> float:
    """The delay after `attempt` (from 1) of an exponential backoff, at most `cap`: the one
    rule retries and condition polls share. A rate so large its power leaves the float range
    (or an infinite delay) waits the cap."""
    try:
        delay = min(initial * rate ** (attempt - 1), cap)
    except OverflowError:
        return cap
    return delay if math.isfinite(delay) else cap


DEFAULT_RETRY = RetryPolicy()
