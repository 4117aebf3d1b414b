"""Temporal cron workflows: `start_workflow(..., cron_schedule="0 * * * *")`.

Temporal runs a cron workflow as a chain of runs under one workflow id: each run starts at the
next tick of the schedule after the previous one closed (the first at the first tick after the
start), whether the previous one succeeded or failed, until the workflow is cancelled or
terminated; a handle on the id follows the latest run, and `workflow.info().cron_schedule`
tells the run it is one.

Durable's own schedules (`@workflow(schedule=...)`) start one run per tick under an id derived
from the tick, for every run of a workflow type; that cannot keep one workflow id, nor let two
cron workflows of one type have two schedules. So the chain is kept inside one Durable run,
and only the tick arithmetic (croniter, zones, validation) is Durable's `Schedule`'s: the run
waits on a durable timer for the next tick, runs the workflow's code, and continues as new
with the same schedule and input (Durable's continue-as-new keeps the run id, so the workflow
id stays, with a fresh history per firing). The timer, the firing's activities and the
continue-as-new are all checkpointed: a worker killed anywhere resumes the same firing, and
no firing runs twice or is skipped.

A cron run's stored input is an envelope (`CronStart`) around the workflow's own input; the
Durable workflow behind a `@workflow.defn` class (`TemporalWorkflow`) reads and writes both.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from durable.errors import UsageError
from durable.model.schedule import Schedule
from durable.sdk.context import Context
from durable.sdk.executor import ContinueAsNew
from durable.sdk.workflow import Workflow
from durable.temporal.exceptions import FailureError

if TYPE_CHECKING:
    from durable.temporal._definition import Definition

ENVELOPE = "temporal.cron"
"""The key of a cron run's stored input: {"temporal.cron": {"schedule", "input", "last"}}."""

_TZ_PREFIXES = ("CRON_TZ=", "TZ=")


@dataclass(frozen=True, slots=True)
class CronStart:
    """A cron run's input: its schedule, the workflow's own arguments, the result of the last
    firing that succeeded (`workflow.get_last_completion_result()`), encoded, and whether this
    is a firing its own code continued as new (it goes on at once, not at the next tick)."""

    schedule: str
    args: Sequence[Any]
    last_result: str | None = None
    continued: bool = False


CURRENT: ContextVar[CronStart | None] = ContextVar("durable_temporal_cron", default=None)
"""The cron run whose firing's code is running here (its tasks inherit it); None otherwise."""


def parse(cron_schedule: str) -> Schedule:
    """Temporal's cron string as a Durable `Schedule`: five fields (or croniter's aliases such
    as `@daily`), optionally after `CRON_TZ=<zone> ` as Temporal allows; UTC otherwise."""
    text = cron_schedule.strip()
    zone = "UTC"
    if text.startswith(_TZ_PREFIXES):
        prefix, _, text = text.partition(" ")
        zone = prefix.partition("=")[2]
    if not text:
        raise UsageError(f"cron_schedule {cron_schedule!r} has no cron expression; use five "
                         "fields, e.g. '0 * * * *' for every hour")
    return Schedule(text, zone)


class TemporalWorkflow(Workflow[..., Any]):
    """The Durable workflow behind a @workflow.defn class: its input is the run method's
    arguments, or a cron run's envelope around them."""

    def encode_input(self, args: tuple[Any, ...]) -> str | None:
        if len(args) == 1 and isinstance(args[0], CronStart):
            start = args[0]
            return json.dumps({ENVELOPE: {
                "schedule": start.schedule, "input": super().encode_input(tuple(start.args)),
                "last": start.last_result, "continued": start.continued}})
        return super().encode_input(args)

    def decode_input(self, data: str | None) -> tuple[Any, ...]:
        envelope = _envelope(data)
        if envelope is None:
            return super().decode_input(data)
        return (CronStart(envelope["schedule"], super().decode_input(envelope["input"]),
                          envelope.get("last"), bool(envelope.get("continued"))),)


def _envelope(data: str | None) -> dict[str, Any] | None:
    if data is None or not data.startswith('{"' + ENVELOPE):
        return None
    found = json.loads(data).get(ENVELOPE)
    return found if isinstance(found, dict) else None


async def run_input(ctx: Context, defn: Definition, args: tuple[Any, ...],
                    execute: Callable[[Sequence[Any]], Awaitable[Any]]) -> Any:
    """Run the workflow's code on its decoded input with `execute`: at once, or, for a cron run,
    as the firings `serve` makes of it."""
    if len(args) == 1 and isinstance(args[0], CronStart):
        await serve(ctx, defn, args[0], execute)
    return await execute(args)


async def serve(ctx: Context, defn: Definition, start: CronStart,
                execute: Callable[[Sequence[Any]], Awaitable[Any]]) -> NoReturn:
    """One firing: wait for the next tick, run the code, continue as new for the one after.
    The code's own continue-as-new goes on at once with its new input, the schedule kept, and
    the next tick is waited for when that firing completes: Temporal's intended behaviour
    (its server has lost the schedule there at times, temporalio/temporal#746)."""
    if not start.continued:
        schedule = parse(start.schedule)
        now = ctx.now().timestamp()
        await ctx.sleep(schedule.next_after(now) - now)
    args, last_result = start.args, start.last_result
    token = CURRENT.set(start)
    try:
        last_result = defn.durable.serializer.encode(await execute(args))
    except ContinueAsNew as e:
        ctx.continue_as_new(CronStart(start.schedule, e.args_, last_result, continued=True))
    except Exception as e:
        if not isinstance(e, (FailureError, *defn.failure_types)):
            raise  # the workflow task failed: the run parks, as any other
        # As in Temporal, a failed firing does not end the cron: the next tick runs anew.
        ctx.logger.warning("cron workflow %s: this firing failed (%s: %s); the next starts at "
                           "the next tick of %r", defn.name, type(e).__name__, e,
                           start.schedule)
    finally:
        CURRENT.reset(token)
    ctx.continue_as_new(CronStart(start.schedule, args, last_result))


def last_completion_result(defn: Definition, type_hint: Any) -> Any:
    """The result of the last firing that succeeded, None before one did or outside cron."""
    start = CURRENT.get()
    if start is None or start.last_result is None:
        return None
    return defn.durable.serializer.decode(start.last_result, type_hint or Any)
