"""Events inside a workflow, and messages to other runs.

`subscribe` records a STEP the engine reads as "buffer this topic's matching events for this
run from now on"; `next_event` is a CALLBACK the engine resolves with the oldest buffered
event, or with the next one published; its result (the event) is in the history, so a replay
returns the same events in the same order. `signal_run` is a STEP whose recording delivers the
signal, in one transaction, so it is sent exactly once however often the run replays.
`respond` is a STEP whose result is the answer to the webhook request that started the run:
the request reads it from the store once it is committed, so it is given once, and the same
answer however often the run replays or the sender retries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from durable.errors import CallbackFailed, CancelRunFailed, SignalFailed, UsageError, WaitTimeout
from durable.model import (
    ErrorObject,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
)
from durable.model.events import WebhookResponse, check_topic, compile_filter
from durable.sdk.executor import Executor, Scope
from durable.sdk.wait import seconds

S = OperationStatus


@dataclass(frozen=True, slots=True)
class Subscription:
    """What `ctx.subscribe` returns: hand it to `ctx.next_event`."""

    key: str
    topic: str
    filter: str | None


def subscribe(ex: Executor, scope: Scope, topic: str, filter: str | None) -> Subscription:
    check_topic(topic)
    compile_filter(filter, f"ctx.subscribe({topic!r})")  # a bad one fails here, every replay
    op_id, op = ex.begin(scope, OperationType.STEP, topic, SubType.SUBSCRIBE,
                         interruptible=False)
    if op is None:
        payload = json.dumps({"topic": topic, "filter": filter})
        # Buffered as a value: saved before any step body runs or the run waits, and with
        # the next_event that follows, in the same checkpoint and ahead of it.
        ex.buffer(OperationUpdate(op_id, OperationType.STEP, OperationAction.SUCCEED,
                                  name=topic, parent_id=scope.parent_id,
                                  sub_type=SubType.SUBSCRIBE, payload=payload),
                  Operation(op_id, OperationType.STEP, S.SUCCEEDED, topic, scope.parent_id,
                            SubType.SUBSCRIBE, attempt=1, result=payload), value=True)
    return Subscription(op_id, topic, filter)


async def next_event(ex: Executor, scope: Scope, sub: Subscription,
                     timeout: timedelta | float | None) -> dict[str, Any]:
    with scope.exclusive(f"next_event({sub.topic!r})"):
        op_id, op = ex.begin(scope, OperationType.CALLBACK, sub.topic, SubType.NEXT_EVENT)
        if op is None:
            (op,) = await ex.checkpoint(OperationUpdate(
                op_id, OperationType.CALLBACK, OperationAction.START, name=sub.topic,
                parent_id=scope.parent_id, sub_type=SubType.NEXT_EVENT, payload=sub.key,
                timeout=None if timeout is None else seconds(timeout)))
        if op.status is S.STARTED:
            await ex.wait_for_engine(op)
        if op.status is S.SUCCEEDED:
            assert op.result is not None
            event: dict[str, Any] = json.loads(op.result)
            return event
        if op.status is S.TIMED_OUT:
            raise WaitTimeout(f"next_event({sub.topic!r}) timed out: no matching event came")
        if op.status is S.FAILED:
            assert op.error is not None
            raise CallbackFailed(op.error)
        ex.cancelled()


async def signal_run(ex: Executor, scope: Scope, run_id: str, name: str, payload: Any) -> None:
    asked = {"run_id": run_id, "payload": ex.serializer.encode(payload)}
    error = await _act_on_run(ex, scope, f"signal_run({run_id!r}, {name!r})", name,
                              SubType.SIGNAL_RUN, asked)
    if error is not None:
        raise SignalFailed(run_id, name, error)


async def cancel_run(ex: Executor, scope: Scope, run_id: str) -> None:
    error = await _act_on_run(ex, scope, f"cancel_run({run_id!r})", "cancel_run",
                              SubType.CANCEL_RUN, {"run_id": run_id})
    if error is not None:
        raise CancelRunFailed(run_id, error)


async def _act_on_run(ex: Executor, scope: Scope, what: str, name: str, sub_type: SubType,
                      asked: dict[str, Any]) -> ErrorObject | None:
    """A step the engine acts on as it records it (`machine._act_on_another_run`): recorded
    once, so the other run is signalled or cancelled once however often this one replays.
    The engine's refusal (no such run, or it ended) comes back recorded, as the error."""
    with scope.exclusive(what):
        op_id, op = ex.begin(scope, OperationType.STEP, name, sub_type)
        if op is None:
            (op,) = await ex.checkpoint(OperationUpdate(
                op_id, OperationType.STEP, OperationAction.SUCCEED, name=name,
                parent_id=scope.parent_id, sub_type=sub_type, payload=json.dumps(asked)))
        if op.status is S.FAILED:
            assert op.error is not None
            return op.error
        return None


async def respond(ex: Executor, scope: Scope, response: WebhookResponse) -> None:
    if ex.responded:
        raise UsageError("ctx.respond was called twice: a webhook request gets one answer; "
                         "respond once, then carry on")
    payload = response.to_json()  # a body that is not JSON fails here, before anything
    with scope.exclusive("respond"):
        op_id, op = ex.begin(scope, OperationType.STEP, "respond", SubType.RESPOND)
        if op is None:
            await ex.checkpoint(OperationUpdate(
                op_id, OperationType.STEP, OperationAction.SUCCEED, name="respond",
                parent_id=scope.parent_id, sub_type=SubType.RESPOND, payload=payload))
    ex.responded = True
