"""Schedules: which tick of a cron schedule fires, exactly once however many workers fire it.

The declaration (`model.schedule.Schedule`) says when ticks fall; the worker calls
`fire_schedule` at each tick; this module decides, in the store, whether the tick is due, and
starts its run through `machine.start_run` in the same transaction that records the tick.

At run time a schedule may also be paused and resumed, triggered now, backfilled over past
ticks, and created or deleted through the API (`source` "api": a worker serving the workflow
fires it). A tick's run id is the same whoever starts it (`Schedule.run_id`), the tick loop or
a backfill, so the two racing never make two runs of one tick.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import cast

from durable.engine.machine import start_run
from durable.errors import ScheduleExists, ScheduleNotFound, UsageError
from durable.model import RunInfo, ScheduleState
from durable.model.schedule import BACKFILL_MAX, MISSED_GRACE, Missed, Schedule, ScheduleInfo
from durable.store.tx import Tx

Encode = Callable[[ScheduleState, datetime], str | None]
"""A tick's moment encoded as the input of its run (None: the workflow takes no input), by the
caller that knows the workflow's code, or failing that the schedule's `tick_input`."""


def fire_schedule(tx: Tx, workflow: str, schedule: Schedule, tick: float | None,
                  input: str | None, now: float, declared: bool = True) -> str | None:
    """Start the run of `tick`, the schedule's latest tick at or before `now`, if it is due, and
    record the tick as fired in the same transaction; returns the run id if it fired.

    Every worker serving the workflow calls this at each tick. The first one starts the run; the
    others find the tick recorded (and the run id taken, start being idempotent by id), so a tick
    makes one run however many workers fire it, and a crash cannot separate the run from the
    record of its tick. `input` is the run's input for that tick, encoded by the SDK.
    `declared`: the schedule is in the workflow's code (registered here when first fired);
    otherwise it was created through the API and fires only while it is stored.
    """
    state = tx.get_schedule(workflow, lock=True)
    if state is None:
        if not declared:
            return None  # deleted since the worker last read the stored schedules
        tx.register_schedule(ScheduleState(workflow, schedule.cron, schedule.timezone, now,
                                           None, None, tick_input=input is not None), now)
        state = tx.get_schedule(workflow, lock=True)
        assert state is not None
    if (state.cron, state.timezone) != (schedule.cron, schedule.timezone):
        if not declared:
            return None  # replaced since the worker read it: it fires once read again
        # A deploy changed the schedule: count its ticks from now, none "missed" before it.
        state = replace(state, cron=schedule.cron, timezone=schedule.timezone, since=now)
        tx.put_schedule(state, now)
    if state.tick_input != (input is not None) and tick is not None:
        state = replace(state, tick_input=input is not None)  # for backfills from elsewhere
        tx.put_schedule(state, now)
    if state.paused or tick is None or not _is_due(schedule, state, tick, now):
        return None
    run_id = schedule.run_id(workflow, tick)
    start_run(tx, run_id, workflow, input, now)
    tx.put_schedule(replace(state, last_tick=tick, last_run_id=run_id), now)
    return run_id


def _is_due(schedule: Schedule, state: ScheduleState | None, tick: float, now: float) -> bool:
    """Whether `tick`, the latest at or before `now`, is to fire: it is newer than the schedule
    and than the last tick fired, and it was not missed (or the policy catches up once)."""
    if state is None or tick <= max(state.since, state.last_tick or -math.inf):
        return False
    return schedule.missed == "run_once" or now - tick <= MISSED_GRACE


def schedule_info(tx: Tx, workflow: str, schedule: Schedule, now: float) -> ScheduleInfo:
    """The schedule as it stands: its next tick (one due now if a worker would fire it at once)
    and the last one fired."""
    state = tx.get_schedule(workflow)
    current = state if state is not None and (state.cron, state.timezone) == (
        schedule.cron, schedule.timezone) else None
    return _info(workflow, schedule, state, current, now)


def stored_schedules(tx: Tx, now: float) -> list[ScheduleInfo]:
    """Every schedule in the store, declared in code (once a worker registered it) or created
    through the API, by workflow name: what needs no code loaded to list."""
    return [_info(s.workflow, stored(s), s, s, now) for s in tx.list_schedules()]


def stored_info(tx: Tx, workflow: str, now: float) -> ScheduleInfo:
    """The stored schedule of `workflow` as `stored_schedules` shows it."""
    state = _existing(tx, workflow)
    return _info(workflow, stored(state), state, state, now)


def stored(state: ScheduleState) -> Schedule:
    """The schedule `state` keeps (for one declared in code, its missed policy is the code's)."""
    return Schedule(state.cron, state.timezone, cast(Missed, state.missed))


def _info(workflow: str, schedule: Schedule, state: ScheduleState | None,
          current: ScheduleState | None, now: float) -> ScheduleInfo:
    tick = schedule.latest(now)
    next_fire = tick if tick is not None and _is_due(schedule, current, tick, now) else (
        schedule.next_after(now))
    last = None if state is None or state.last_tick is None else schedule.moment(state.last_tick)
    return ScheduleInfo(workflow, schedule.cron, schedule.timezone, schedule.missed,
                        schedule.moment(next_fire), last,
                        None if state is None else state.last_run_id, state is not None,
                        state is not None and state.paused,
                        "code" if state is None else state.source)


def _existing(tx: Tx, workflow: str) -> ScheduleState:
    state = tx.get_schedule(workflow, lock=True)
    if state is None:
        raise ScheduleNotFound(workflow)
    return state


def pause(tx: Tx, workflow: str, paused: bool, now: float) -> ScheduleState:
    """Pause or resume the schedule. Ticks that fall while it is paused never fire, whatever
    its missed policy (`backfill` starts them if they are wanted): resuming counts from now.
    Pausing a paused schedule (or resuming a running one) changes nothing."""
    state = _existing(tx, workflow)
    if state.paused == paused:
        return state
    state = replace(state, paused=paused, since=state.since if paused else now)
    tx.put_schedule(state, now)
    tx.notify()  # workers sleeping until a tick look again
    return state


def trigger(tx: Tx, workflow: str, now: float, encode: Encode) -> tuple[RunInfo, bool]:
    """Start a run of the schedule now, as if a tick fell now (its input is `now` where the
    workflow takes the tick), leaving the schedule's own ticks as they were; works paused."""
    state = _existing(tx, workflow)
    schedule = stored(state)
    return start_run(tx, schedule.run_id(workflow, now), workflow, _input(state, encode, now),
                     now)


def backfill(tx: Tx, workflow: str, start: float, end: float, now: float,
             encode: Encode) -> list[tuple[RunInfo, bool]]:
    """Start the run of every tick from `start` to `end` (both included, both past), each under
    the id the tick loop gives that tick, so a tick that has a run (fired, or backfilled
    before) gets no second one; returns each tick's run and whether this made it."""
    if end < start:
        raise UsageError("a backfill's end is before its start; give --from before --to")
    if end > now:
        raise UsageError("a backfill fills past ticks: its end is in the future; the schedule "
                         "itself fires the ticks to come")
    state = _existing(tx, workflow)
    schedule = stored(state)
    ticks: list[float] = []
    tick = schedule.latest(start)
    tick = schedule.next_after(start) if tick is None or tick < start else tick
    while tick <= end:
        if len(ticks) == BACKFILL_MAX:
            raise UsageError(f"the range holds more than {BACKFILL_MAX} ticks of "
                             f"{schedule.cron!r}; backfill it in parts")
        ticks.append(tick)
        tick = schedule.next_after(tick)
    return [start_run(tx, schedule.run_id(workflow, t), workflow, _input(state, encode, t), now)
            for t in ticks]


def _input(state: ScheduleState, encode: Encode, tick: float) -> str | None:
    return encode(state, stored(state).moment(tick))


def create(tx: Tx, workflow: str, schedule: Schedule, now: float) -> ScheduleState:
    """Store a schedule for `workflow`, created through the API: a worker serving the workflow
    fires it from its next tick on. A workflow has one schedule at most."""
    state = ScheduleState(workflow, schedule.cron, schedule.timezone, now, None, None,
                          source="api", missed=schedule.missed)
    if not tx.register_schedule(state, now):
        raise ScheduleExists(f"workflow {workflow!r} has a schedule already; delete it first "
                             f"(`durable schedules delete {workflow}`), or pause it")
    tx.notify()
    return state


def delete(tx: Tx, workflow: str) -> ScheduleState:
    """Delete a schedule created through the API. One declared in code would be registered
    again by the next worker serving it: that one is paused, or removed from the code."""
    state = _existing(tx, workflow)
    if state.source != "api":
        raise UsageError(f"the schedule of {workflow!r} is declared in its code; remove "
                         "schedule= from its @workflow, or pause it "
                         f"(`durable schedules pause {workflow}`)")
    tx.delete_schedule(workflow)
    return state
