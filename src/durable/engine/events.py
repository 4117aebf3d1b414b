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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import replace

from durable.engine.machine import start_run
from durable.errors import EventNotFound, UsageError
from durable.model import EventType, OperationStatus
from durable.model.events import (
    Delivery,
    Event,
    Trigger,
    check_event_id,
    check_topic,
    matches,
)
from durable.store.tx import Tx

log = logging.getLogger("durable.events")

DISPATCH_BATCH = 50
"""Events one dispatch transaction takes per trigger: short enough to keep the write short."""


def publish(tx: Tx, topic: str, event_id: str, data: str, now: float) -> tuple[Event, bool]:
    """Store the event unless its (topic, id) is stored already; returns it and whether this
    stored it. Only a new event is offered to subscriptions and wakes the dispatchers."""
    check_topic(topic)
    check_event_id(event_id)
    try:
        json.loads(data)
    except ValueError as e:
        raise UsageError(f"event data for topic {topic!r} is not JSON ({e}); pass a JSON "
                         "value, e.g. '{\"amount\": 120}'") from None
    created = tx.insert_event(topic, event_id, data, now)
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
        tx.register_trigger(workflow, trigger.topic, trigger.filter_source, now)


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
                run_id = trigger.run_id(workflow, event)
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
