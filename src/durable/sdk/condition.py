"""wait_for_condition: poll a check until a wait strategy says stop, durably between polls.

Recorded as AWS's SDK records it, so that a run reads the same in either history: one STEP
(sub-type WaitForCondition) whose every poll is an attempt. A poll checkpoints its START with
its outcome: a RETRY carrying the new state as its payload and the delay the strategy chose
(the condition is not met yet; AWS's history shows it as StepSucceeded with RetryDetails),
the SUCCEED with the final state, or the FAIL if the check or the strategy raised. Between
polls the run is suspended like a step's retry backoff: no process waits for the next poll.
A poll recorded is never run again; one in flight at a crash runs again, from the state the
last recorded poll left.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from durable.errors import ConditionNotMet, StepFailed
from durable.model import (
    ErrorObject,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    code_failure,
)
from durable.sdk.executor import WALL_CLOCK, Executor, Scope
from durable.sdk.retry import capped_backoff
from durable.sdk.serializer import Serializer
from durable.sdk.step import call_body, return_type, step_name
from durable.sdk.wait import seconds

T = TypeVar("T")
S = OperationStatus
A = OperationAction


@dataclass(frozen=True, slots=True)
class WaitDecision:
    """What a wait strategy decided after a poll (AWS's WaitForConditionDecision): poll
    again after `delay` seconds, or stop polling and return the state."""

    should_continue: bool
    delay: float = 0.0

    @classmethod
    def continue_waiting(cls, delay: timedelta | float) -> WaitDecision:
        if seconds(delay) < 0:
            raise ValueError("a wait_for_condition delay cannot be negative")
        return cls(True, seconds(delay))

    @classmethod
    def stop_polling(cls) -> WaitDecision:
        return cls(False)


WaitStrategyFn = Callable[[T, int], WaitDecision]
"""Called after each poll with the new state and how many polls were made so far."""


@dataclass(frozen=True, slots=True)
class WaitStrategy(Generic[T]):
    """The ready-made strategy (AWS's `create_wait_strategy(WaitStrategyConfig(...))`): poll
    again while `should_continue_polling(state)`, after `initial_delay * backoff_rate **
    (polls - 1)` seconds, at most `max_delay`, of which the fraction `jitter` is random (1,
    AWS's FULL jitter: anywhere from 0 to that delay). A condition met on the last allowed poll
    still succeeds; unmet after `max_attempts` polls, the operation fails (`ConditionNotMet`)
    rather than return a state that does not meet it. Delays are seconds as floats, where
    AWS's rounds up to whole seconds of at least 1."""

    should_continue_polling: Callable[[T], bool]
    max_attempts: int = 60
    initial_delay: float = 5.0
    max_delay: float = 300.0
    backoff_rate: float = 1.5
    jitter: float = 1.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("WaitStrategy.max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.backoff_rate < 1:
            raise ValueError("WaitStrategy delays must be >= 0 and backoff_rate >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("WaitStrategy.jitter is a fraction between 0 and 1")

    def __call__(self, state: T, attempts: int) -> WaitDecision:
        if not self.should_continue_polling(state):
            return WaitDecision.stop_polling()
        if attempts >= self.max_attempts:
            raise ConditionNotMet(f"wait_for_condition exhausted {self.max_attempts} attempts "
                                  "before the condition was met")
        delay = capped_backoff(self.initial_delay, self.backoff_rate, attempts, self.max_delay)
        return WaitDecision.continue_waiting(delay * (1 - self.jitter * random.random()))


@dataclass(frozen=True, slots=True)
class ConditionConfig(Generic[T]):
    """A wait_for_condition's options (AWS's WaitForConditionConfig): the strategy, the
    state the first poll gets (encoded and decoded first, so that it has the shape later polls
    get from the checkpoint), a name (default: the check's), a serializer for the state."""

    wait_strategy: WaitStrategyFn[T]
    initial_state: T
    name: str | None = None
    serializer: Serializer | None = None


async def wait_for_condition(ex: Executor, scope: Scope, check: Callable[[Any], Any],
                             cfg: ConditionConfig[Any]) -> Any:
    name = cfg.name or step_name(check)
    serializer = cfg.serializer or ex.serializer
    hint = return_type(check)

    def decode(payload: str | None) -> Any:
        return None if payload is None else serializer.decode(payload, hint)

    with scope.exclusive(f"wait_for_condition {name!r}"):
        op_id, op = ex.begin(scope, OperationType.STEP, name, SubType.WAIT_FOR_CONDITION)

        def update(action: OperationAction, started: float, **fields: Any) -> OperationUpdate:
            return OperationUpdate(op_id, OperationType.STEP, action, name=name,
                                   parent_id=scope.parent_id,
                                   sub_type=SubType.WAIT_FOR_CONDITION, started_at=started,
                                   **fields)

        while True:
            if op is not None:
                if op.status is S.SUCCEEDED:
                    return decode(op.result)
                if op.status is S.FAILED:
                    assert op.error is not None
                    raise StepFailed(name, op.error)
                if op.status is S.CANCELLED:
                    ex.cancelled()
                if op.status is S.PENDING:  # the next poll is not due yet
                    await ex.wait_for_engine(op)
            ex.require_lease()
            attempt = (op.attempt if op is not None else 0) + 1
            state = (decode(op.result) if op is not None and op.result is not None
                     else decode(serializer.encode(cfg.initial_state)))
            started = WALL_CLOCK.get()()
            await ex.save_values()  # the check may use them: durable before it runs
            try:
                payload = serializer.encode(await call_body(ex, op_id, attempt, check, (state,),
                                                        {}, None))
                # Decided on the state as a replay would rebuild it from the checkpoint.
                decision = cfg.wait_strategy(decode(payload), attempt)
            except BaseException as e:
                if not code_failure(e):
                    raise
                err = ErrorObject.from_exception(e)
                await ex.checkpoint(update(A.START, started),
                                    update(A.FAIL, started, error=err))
                raise StepFailed(name, err) from e
            if not decision.should_continue:
                await ex.checkpoint(update(A.START, started),
                                    update(A.SUCCEED, started, payload=payload))
                return decode(payload)
            *_, op = await ex.checkpoint(update(A.START, started), update(
                A.RETRY, started, payload=payload, delay=decision.delay))
