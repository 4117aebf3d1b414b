"""Events: publishing one, dispatching it to the triggers that start runs, and offering it to
the subscriptions of running workflows, each exactly once.

Publishing stores the event under its (topic, id), once, and in the same transaction offers it
to every live subscription of the topic whose filter it passes: a `next_event` waiting on it
is resolved with it, else it is buffered in the subscription's inbox. Triggers are declared in
workflow code, so a worker serving the workflow dispatches (`dispatch`): in one transaction it
starts the run of each undelivered event (under an id derived from the workflow, the event
and its generation, the same whoever dispatches it) and records the delivery. A worker killed
mid-dispatch commits nothing of its batch; the next one redoes it. A redispatch starts a new
generation of the event, which the triggers dispatch again, under new run ids.

A webhook request whose event a `respond` trigger matches is answered from the store
(`answer`): the run's first RESPOND step, else its outcome once it ends. Both are committed
before they are read, so an answer recorded by a worker killed a moment later still reaches
the request, and a retried delivery (the same event) reads the same one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from durable.engine.machine import start_run
from durable.errors import EventNotFound, UsageError
from durable.model import EventType, ExecutionStatus, OperationStatus, RunInfo, SubType
from durable.model.events import (
    Delivery,
    Event,
    Trigger,
    WebhookResponse,
    check_event_id,
    check_topic,
    matches,
    trigger_run_id,
)
from durable.store.tx import Tx

log = logging.getLogger("durable.events")

DISPATCH_BATCH = 50
"""Events one dispatch transaction takes per trigger: short enough to keep the write short."""


def publish(tx: Tx, topic: str, event_id: str, data: str, now: float,
            request: str | None = None) -> tuple[Event, bool]:
    """Store the event unless its (topic, id) is stored already; returns it and whether this
    stored it. Only a new event is offered to subscriptions and wakes the dispatchers.
    `request`: the webhook request that posted it (`WebhookRequest.request_json`)."""
    check_topic(topic)
    check_event_id(event_id)
    try:
        json.loads(data)
    except ValueError as e:
        raise UsageError(f"event data for topic {topic!r} is not JSON ({e}); pass a JSON "
                         "value, e.g. '{\"amount\": 120}'") from None
    created = tx.insert_event(topic, event_id, data, now, request)
    event = tx.get_event(topic, event_id)
    assert event is not None
    if created:
        _offer(tx, event, now)
        tx.notify()
    return event, created


def _offer(tx: Tx, event: Event, now: float) -> None:
    for run_id, key, source in tx.subscriptions_of(event.topic):
        if not matches(source, event):
            continue
        run = tx.get_run(run_id, lock=True)  # serialized with its checkpoints (next_event)
        if run is None or not run.status.live:
            continue
        waiter_id = tx.waiter_of(run_id, key)
        waiter = None if waiter_id is None else tx.get_operation(run_id, waiter_id)
        if waiter is None or waiter.status is not OperationStatus.STARTED:
            tx.push_inbox(run_id, key, event.seq)
            continue
        tx.put_operation(run_id, replace(waiter, status=OperationStatus.SUCCEEDED,
                                         result=event.to_json(), due_at=None,
                                         ended_at=now))
        tx.add_event(run_id, EventType.CALLBACK_SUCCEEDED, now, waiter.id, waiter.name,
                     {"event": event.seq})
        tx.set_waiter(run_id, key, None)
        tx.wake(run_id, now)


def register_triggers(tx: Tx, triggers: dict[str, Trigger], now: float) -> None:
    for workflow, trigger in triggers.items():
        tx.register_trigger(workflow, trigger.topic, trigger.filter_source, trigger.respond,
                            now)


def dispatch(tx: Tx, workflow: str, trigger: Trigger, encode: Callable[[Event], str | None],
             now: float, limit: int = DISPATCH_BATCH) -> list[tuple[Event, str | None]]:
    """Dispatch up to `limit` events the workflow's trigger has not dispatched yet: start
    the run of each that passes the filter, and record each delivery (the run, or none), in
    this one transaction. Returns the events dispatched and their runs."""
    since = tx.trigger_since(workflow)
    if since is None:
        return []
    done = []
    for event in tx.undelivered(workflow, trigger.topic, since, limit):
        run_id = None
        if trigger.filter is None or trigger.filter.matches(event):
            try:
                data = encode(event)
            except Exception:  # the workflow cannot take it: dispatch the others on
                log.exception("event %s #%d (%s) cannot be the input of workflow %s; no run "
                              "started for it", event.topic, event.seq, event.id, workflow)
            else:
                run_id = trigger_run_id(workflow, event)
                start_run(tx, run_id, workflow, data, now)
        if tx.add_delivery(event, workflow, run_id, now):
            done.append((event, run_id))
    return done


def redispatch(tx: Tx, seq: int) -> Event:
    """Dispatch the event again: every trigger of its topic starts a new run of it."""
    event = get(tx, seq, lock=True)
    tx.bump_generation(seq)
    tx.notify()
    return replace(event, generation=event.generation + 1)


def get(tx: Tx, seq: int, lock: bool = False) -> Event:
    event = tx.event_by_seq(seq, lock)
    if event is None:
        raise EventNotFound(seq)
    return event


def show(tx: Tx, seq: int) -> tuple[Event, list[Delivery]]:
    return get(tx, seq), tx.deliveries(seq)


@dataclass(frozen=True, slots=True)
class Responder:
    """The trigger answering a webhook request: its workflow, the run it starts (or started)
    for the event, and how long the request waits for that run's answer."""

    workflow: str
    run_id: str
    seconds: float


def responder(tx: Tx, event: Event) -> Responder | None:
    """Which trigger answers the webhook request that posted `event`: the first, by workflow
    name, of the triggers of its topic declaring `respond` whose filter passes it (workers
    refuse to serve two of one topic; two deploys may still disagree for a while). None:
    none does, and the request is answered as a plain publish."""
    for workflow, source, seconds, since in tx.responders(event.topic):
        if event.published_at >= since and matches(source, event):
            return Responder(workflow, trigger_run_id(workflow, event), seconds)
    return None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a webhook request waiting on a run gets: `response` None while the run has not
    answered; `started` False when the trigger started no run for the event after all (its
    workflow could not take it as input)."""

    response: WebhookResponse | None
    started: bool = True


def answer(tx: Tx, event: Event, responding: Responder) -> Answer:
    run = tx.get_run(responding.run_id)
    if run is None:
        delivered = tx.delivery(event, responding.workflow)
        return Answer(None, started=delivered is None or delivered.run_id is not None)
    for op in tx.operations_of_kind(run.run_id, SubType.RESPOND):
        if op.status is OperationStatus.SUCCEEDED:
            assert op.result is not None
            return Answer(WebhookResponse.from_json(op.result))
    return Answer(None if run.status.live else _ended_answer(run))


def _ended_answer(run: RunInfo) -> WebhookResponse:
    """A run that ended without `ctx.respond` answers with its result (200), or says it did
    not succeed (500): the sender learns the outcome either way."""
    if run.status is ExecutionStatus.SUCCEEDED:
        return WebhookResponse(200, {}, None if run.result is None else json.loads(run.result))
    return WebhookResponse(500, {}, {"run_id": run.run_id, "status": run.status.value,
                                     "error": run.error.to_dict() if run.error else None})
