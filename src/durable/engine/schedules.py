"""Schedules: which tick of a cron schedule fires, exactly once however many workers fire it.

The declaration (`model.schedule.Schedule`) says when ticks fall; the worker calls
`fire_schedule` at each tick; this module decides, in the store, whether the tick is due, and
starts its run through `machine.start_run` in the same transaction that records the tick.
"""

from __future__ import annotations

import math
from dataclasses import replace

from durable.engine.machine import start_run
from durable.model import ScheduleState
from durable.model.schedule import MISSED_GRACE, Schedule, ScheduleInfo
from durable.store.tx import Tx


def fire_schedule(tx: Tx, workflow: str, schedule: Schedule, tick: float | None,
                  input: str | None, now: float) -> str | None:
    """Start the run of `tick`, the schedule's latest tick at or before `now`, if it is due, and
    record the tick as fired in the same transaction; returns the run id if it fired.

    Every worker serving the workflow calls this at each tick. The first one starts the run; the
    others find the tick recorded (and the run id taken, start being idempotent by id), so a tick
    makes one run however many workers fire it, and a crash cannot separate the run from the
    record of its tick. `input` is the run's input for that tick, encoded by the SDK.
    """
    state = tx.get_schedule(workflow, lock=True)
    if state is None:
        tx.register_schedule(workflow, schedule.cron, schedule.timezone, now)
        state = tx.get_schedule(workflow, lock=True)
        assert state is not None
    if (state.cron, state.timezone) != (schedule.cron, schedule.timezone):
        # A deploy changed the schedule: count its ticks from now, none "missed" before it.
        state = replace(state, cron=schedule.cron, timezone=schedule.timezone, since=now)
        tx.put_schedule(state, now)
    if tick is None or not _is_due(schedule, state, tick, now):
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
    tick = schedule.latest(now)
    next_fire = tick if tick is not None and _is_due(schedule, current, tick, now) else (
        schedule.next_after(now))
    last = None if state is None or state.last_tick is None else schedule.moment(state.last_tick)
    return ScheduleInfo(workflow, schedule.cron, schedule.timezone, schedule.missed,
                        schedule.moment(next_fire), last,
                        None if state is None else state.last_run_id, state is not None)
