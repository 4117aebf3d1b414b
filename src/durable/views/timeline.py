"""A run's history and state told for people: one line per event, what the run waits on, what it
published. Plain text and a tone per line, no terminal codes, so that `durable show`, the progress
of `durable run` and any other viewer tell a run the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from durable.model import (
    ABANDONED,
    LOST,
    ErrorObject,
    EventType,
    ExecutionStatus,
    HistoryEvent,
    LogLine,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
    SubType,
)

E = EventType
S = OperationStatus


def duration(seconds: float) -> str:
    """Short and readable at every scale: 0.4ms, 12ms, 1.50s, 2m03s, 1h02m, 3d04h."""
    s = max(seconds, 0.0)
    if s < 0.01:
        return f"{s * 1000:.1f}ms"
    if s < 1:
        return f"{s * 1000:.0f}ms"
    if s < 60:
        return f"{s:.2f}s"
    minutes, secs = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def offset(ts: float, t0: float) -> str:
    """A time relative to the run's start, as the timeline shows it."""
    return f"+{duration(ts - t0)}"


def elapsed(run: RunInfo, now: float) -> float:
    """Seconds from the run's creation to its end, or to `now` while it goes on."""
    return (run.ended_at or now) - run.created_at


def error_text(error: ErrorObject | dict[str, Any] | None) -> str:
    """`Type: message` of a stored error, or of its dict form in event details."""
    if error is None:
        return "-"
    if isinstance(error, dict):
        error = ErrorObject.from_dict(error)
    return f"{error.type}: {error.message}"


class Tone(StrEnum):
    """How loud a line is; each viewer maps it to its own colours."""

    PLAIN = "plain"
    OK = "ok"
    WARN = "warn"
    ERROR = "error"
    ALARM = "alarm"  # a parked run: it needs a person
    MUTED = "muted"


@dataclass(frozen=True, slots=True)
class Entry:
    """One history event as a person reads it: which operation, what happened, how loud."""

    subject: str
    text: str
    tone: Tone = Tone.PLAIN


# -- operation labels ---------------------------------------------------------------------------

_VALUE_LABELS: dict[str, str] = {
    SubType.NOW: "now()", SubType.RANDOM: "random()", SubType.UUID: "uuid4()"}
_KIND_LABELS: dict[str, str] = {
    SubType.STEP: "step", SubType.WAIT_FOR_CONDITION: "wait_for_condition",
    SubType.SET_EVENT: "event", SubType.SET_ATTRIBUTES: "attributes", SubType.KV: "kv",
    SubType.SLEEP: "sleep",
    SubType.CALLBACK: "callback", SubType.SIGNAL: "signal", SubType.PATCH: "patch",
    SubType.PARALLEL: "gather", SubType.PARALLEL_BRANCH: "branch", SubType.MAP: "map",
    SubType.MAP_ITERATION: "map item", SubType.INVOKE: "child", SubType.START_CHILD: "child"}


def op_label(op: Operation) -> str:
    """`step 'charge'`, `sleep`, `signal 'approve'`, `now()`...: what the workflow code called."""
    sub_type = op.sub_type or ""
    if sub_type in _VALUE_LABELS:
        return _VALUE_LABELS[sub_type]
    kind = _KIND_LABELS.get(sub_type, op.type.value.lower())
    return f"{kind} {op.name!r}" if op.name else kind


def _subject(event: HistoryEvent, op: Operation | None) -> str:
    if op is not None:
        return op_label(op)
    if event.type == E.SIGNAL_RECEIVED:
        return f"signal {event.name!r}"
    if event.type in (E.INVOCATION_COMPLETED, E.WORKER_LOST):
        return "invocation"
    if event.operation_id is not None:
        return f"operation {event.name or event.operation_id!r}"
    return "run"


# -- what each event says -----------------------------------------------------------------------

Telling = tuple[str, Tone]
TellFn = Callable[[HistoryEvent, float], Telling]


def _fixed(text: str, tone: Tone = Tone.PLAIN) -> TellFn:
    return lambda event, t0: (text, tone)


def _detail(event: HistoryEvent, key: str) -> Any:
    return event.details.get(key)


def _run_started(event: HistoryEvent, t0: float) -> Telling:
    return f"started ({_detail(event, 'workflow')})", Tone.PLAIN


def _run_failed(event: HistoryEvent, t0: float) -> Telling:
    return f"failed: {error_text(_detail(event, 'error'))}", Tone.ERROR


def _run_parked(event: HistoryEvent, t0: float) -> Telling:
    return f"PARKED: {error_text(_detail(event, 'error'))}", Tone.ALARM


def _continued(event: HistoryEvent, t0: float) -> Telling:
    return f"continued as new (generation {_detail(event, 'generation')})", Tone.PLAIN


def _rerun(event: HistoryEvent, t0: float) -> Telling:
    return (f"rerun of {_detail(event, 'source_run_id')} from {_detail(event, 'from')!r}, "
            f"reusing {_detail(event, 'reused')} operation(s)", Tone.PLAIN)


def _invocation(event: HistoryEvent, t0: float) -> Telling:
    took = duration(_detail(event, "duration") or 0.0)
    return f"ended {_detail(event, 'status')} after {took} of compute", Tone.MUTED


def _step_started(event: HistoryEvent, t0: float) -> Telling:
    return f"attempt {_detail(event, 'attempt')} started", Tone.PLAIN


def _step_succeeded(event: HistoryEvent, t0: float) -> Telling:
    started = _detail(event, "started_at")
    took = f", took {duration(event.timestamp - started)}" if started else ""
    return f"succeeded (attempt {_detail(event, 'attempt')}{took})", Tone.OK


def _worker_lost(event: HistoryEvent, t0: float) -> Telling:
    steps = _detail(event, "in_flight") or []
    running = ", ".join(f"step {s['name']!r} attempt {s['attempt']}" for s in steps)
    return (f"worker {_detail(event, 'worker')} lost (last seen at "
            f"{offset(_detail(event, 'last_seen'), t0)}, lease expired at "
            f"{offset(_detail(event, 'lease_expired_at'), t0)}); in flight: {running or 'no step'}"
            f"; {duration(_detail(event, 'compute_lost') or 0.0)} of compute lost", Tone.WARN)


def _step_failed(event: HistoryEvent, t0: float) -> Telling:
    attempt, error = _detail(event, "attempt"), error_text(_detail(event, "error"))
    if (_detail(event, "error") or {}).get("type") == LOST:
        return f"attempt {attempt} lost with its worker; it runs again", Tone.WARN
    due = _detail(event, "next_attempt_at")
    if _detail(event, "retry") and due is not None and _detail(event, "error") is None:
        return (f"check {attempt}: condition not met yet (state {_detail(event, 'state')}); "
                f"next check at {offset(due, t0)}", Tone.PLAIN)
    if _detail(event, "retry") and due is not None:
        return (f"attempt {attempt} failed: {error}; next attempt at {offset(due, t0)} "
                f"(after {duration(due - event.timestamp)})", Tone.WARN)
    return f"failed after {attempt} attempt(s): {error}", Tone.ERROR


def _step_ready(event: HistoryEvent, t0: float) -> Telling:
    return f"ready for attempt {_detail(event, 'attempt')}", Tone.PLAIN


def _wait_started(event: HistoryEvent, t0: float) -> Telling:
    due = _detail(event, "due_at") or event.timestamp
    return f"until {offset(due, t0)} ({duration(due - event.timestamp)})", Tone.PLAIN


def _callback_started(event: HistoryEvent, t0: float) -> Telling:
    timeout_at = _detail(event, "timeout_at")
    timeout = f", times out at {offset(timeout_at, t0)}" if timeout_at else ""
    callback_id = _detail(event, "callback_id")
    if callback_id:
        return f"issued, callback id {callback_id}{timeout}", Tone.PLAIN
    return f"waiting{timeout}", Tone.PLAIN


def _callback_failed(event: HistoryEvent, t0: float) -> Telling:
    return f"failed: {error_text(_detail(event, 'error'))}", Tone.ERROR


def _context_failed(event: HistoryEvent, t0: float) -> Telling:
    error = _detail(event, "error")
    if error and error.get("type") == ABANDONED:  # ended FAILED only as the contract requires
        return f"abandoned: {error.get('message')}", Tone.MUTED
    return ("failed" + (f": {error_text(error)}" if error else ""), Tone.ERROR)


def _run_stopped(event: HistoryEvent, t0: float) -> Telling:
    if not _detail(event, "terminated"):
        return "stopped (cancelled)", Tone.WARN
    return (f"terminated: {error_text(_detail(event, 'error'))}; running child runs: "
            f"{_detail(event, 'children')}", Tone.WARN)
def _operated(verb: str) -> TellFn:
    return lambda event, t0: (f"{verb} by {_detail(event, 'by')}", Tone.WARN)


def _edited(event: HistoryEvent, t0: float) -> Telling:
    before, after = _detail(event, "before") or {}, _detail(event, "after") or {}

    def outcome(o: dict[str, Any]) -> str:
        told = error_text(o["error"]) if o.get("error") else o.get("result")
        return f"{o.get('status')} {told}" if told is not None else str(o.get("status"))
    return (f"edited by {_detail(event, 'by')}: was {outcome(before)}, now {outcome(after)}",
            Tone.WARN)


def _child(verb: str, tone: Tone) -> TellFn:
    def tell(event: HistoryEvent, t0: float) -> Telling:
        tenant = _detail(event, "tenant_id")
        return (f"child run {_detail(event, 'child_run_id')} {verb}"
                + (f" for tenant {tenant}" if tenant is not None else ""), tone)
    return tell


_TELLINGS: dict[str, TellFn] = {
    E.EXECUTION_STARTED: _run_started,
    E.EXECUTION_SUCCEEDED: _fixed("succeeded", Tone.OK),
    E.EXECUTION_FAILED: _run_failed,
    E.EXECUTION_STOPPED: _run_stopped,
    E.EXECUTION_CANCEL_REQUESTED: _fixed("cancel requested", Tone.WARN),
    E.EXECUTION_PARKED: _run_parked,
    E.EXECUTION_CONTINUED_AS_NEW: _continued,
    E.EXECUTION_RERUN: _rerun,
    E.INVOCATION_COMPLETED: _invocation,
    E.WORKER_LOST: _worker_lost,
    E.STEP_STARTED: _step_started,
    E.STEP_SUCCEEDED: _step_succeeded,
    E.STEP_FAILED: _step_failed,
    E.STEP_READY: _step_ready,
    E.STEP_CANCELLED: _fixed("cancelled", Tone.WARN),
    E.WAIT_STARTED: _wait_started,
    E.WAIT_SUCCEEDED: _fixed("done"),
    E.WAIT_CANCELLED: _fixed("cancelled", Tone.WARN),
    E.CALLBACK_STARTED: _callback_started,
    E.CALLBACK_SUCCEEDED: _fixed("delivered", Tone.OK),
    E.CALLBACK_FAILED: _callback_failed,
    E.CALLBACK_TIMED_OUT: _fixed("timed out", Tone.WARN),
    E.CALLBACK_CANCELLED: _fixed("cancelled", Tone.WARN),
    E.CALLBACK_HEARTBEAT: _fixed("heartbeat", Tone.MUTED),
    E.SIGNAL_RECEIVED: _fixed("arrived"),
    E.CHAINED_INVOKE_STARTED: _child("started", Tone.PLAIN),
    E.CHAINED_INVOKE_SUCCEEDED: _child("succeeded", Tone.OK),
    E.CHAINED_INVOKE_FAILED: _child("failed", Tone.ERROR),
    E.CHAINED_INVOKE_CANCELLED: _fixed("cancelled", Tone.WARN),
    E.CONTEXT_STARTED: _fixed("started", Tone.MUTED),
    E.CONTEXT_SUCCEEDED: _fixed("done", Tone.MUTED),
    E.CONTEXT_FAILED: _context_failed,
    E.EXECUTION_TIMED_OUT: _fixed("timed out (execution timeout)", Tone.ERROR),
    E.EXECUTION_PAUSED: _operated("paused"),
    E.EXECUTION_RESUMED: _operated("resumed"),
    E.OPERATION_EDITED: _edited,
}

_RECORDED: dict[str, str] = {
    SubType.SET_EVENT: "published", SubType.SET_ATTRIBUTES: "set attributes",
    SubType.NOW: "recorded", SubType.RANDOM: "recorded",
    SubType.UUID: "recorded", SubType.PATCH: "recorded"}


def describe(event: HistoryEvent, op: Operation | None, t0: float) -> Entry:
    """Tell one event, times relative to `t0` (the run's creation). `op` is the operation the
    event belongs to, if any: it names what the code called. Unknown types show raw details."""
    subject = _subject(event, op)
    if event.type == E.STEP_SUCCEEDED and op is not None and op.sub_type in _RECORDED:
        return Entry(subject, f"{_RECORDED[op.sub_type]} {op.result}")
    tell = _TELLINGS.get(event.type)
    if tell is None:
        return Entry(subject, f"{event.type} {json.dumps(event.details)}")
    text, tone = tell(event, t0)
    return Entry(subject, text, tone)


# -- what a run waits on, what it published -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Pending:
    """Something a RUNNING run waits on: `kind` is sleep, retry, step, callback, signal or child;
    `due_at` is when it ends by itself (a sleep's end, a retry, a timeout), if ever."""

    kind: str
    label: str
    due_at: float | None
    detail: str = ""
    callback_id: str | None = None
    signal: str | None = None
    child_run_id: str | None = None


def pending(run: RunInfo, ops: list[Operation]) -> list[Pending]:
    """What the run waits on now, in the order the workflow got there."""
    if not run.status.live:
        return []
    return [p for op in ops if (p := _pending(op)) is not None]


def _pending(op: Operation) -> Pending | None:
    label, started = op_label(op), op.status is S.STARTED
    if op.type is OperationType.WAIT and started:
        return Pending("sleep", label, op.due_at)
    if op.type is OperationType.STEP:
        return _pending_step(op, label)
    if op.type is OperationType.CALLBACK and started:
        if op.sub_type == SubType.SIGNAL:
            return Pending("signal", label, op.due_at, "times out then", signal=op.name)
        return Pending("callback", label, op.due_at, "times out then",
                       callback_id=op.callback_id)
    if op.type is OperationType.CHAINED_INVOKE and started:
        return Pending("child", label, None, child_run_id=op.child_run_id)
    return None


def _pending_step(op: Operation, label: str) -> Pending | None:
    if op.status is S.PENDING:
        return Pending("retry", label, op.due_at,
                       f"attempt {op.attempt + 1} then, after {error_text(op.error)}")
    if op.status is S.READY:
        return Pending("step", label, None, f"attempt {op.attempt + 1} due now")
    if op.status is S.STARTED:  # at-least-once steps checkpoint their start only if long
        return Pending("step", label, None, f"attempt {op.attempt} running, or interrupted")
    return None


def published(ops: list[Operation]) -> dict[str, str | None]:
    """What the run published with ctx.set_event, latest payload per key: the SetEvent
    operations record exactly what was published, in order."""
    return {op.name: op.result for op in ops
            if op.sub_type == SubType.SET_EVENT and op.name is not None
            and op.status is S.SUCCEEDED}


# -- a run's state in a few lines: what `durable run` and `show --follow` keep on screen -----------

@dataclass(frozen=True, slots=True)
class Fanout:
    """A map or gather and its branches known so far (a map records its items as it reaches
    them, so `total` can grow while the run goes on)."""

    label: str
    unit: str  # item(s) of a map, branch(es) of a gather
    done: int
    failed: int
    total: int


@dataclass(frozen=True, slots=True)
class Summary:
    """How far a run has got, read from its operations alone: any run's state can be told,
    whether this process serves it or only watches it."""

    run: RunInfo
    steps_done: int
    steps_total: int
    failed_attempts: int
    fanouts: list[Fanout]
    waiting: list[Pending]
    failures: list[tuple[str, str]]  # (operation, `Type: message`), in the order reached


_BRANCH_OF: dict[str, str] = {SubType.MAP: SubType.MAP_ITERATION,
                              SubType.PARALLEL: SubType.PARALLEL_BRANCH}
_UNITS: dict[str, str] = {SubType.MAP: "item(s)", SubType.PARALLEL: "branch(es)"}
_FAILED = (S.FAILED, S.TIMED_OUT)


def summarize(run: RunInfo, ops: list[Operation]) -> Summary:
    steps = [op for op in ops if op.sub_type == SubType.STEP]
    branches: dict[str, list[Operation]] = {}
    for op in ops:
        if op.parent_id is not None and op.sub_type in _BRANCH_OF.values():
            branches.setdefault(op.parent_id, []).append(op)
    fanouts = [Fanout(op_label(op), _UNITS[op.sub_type or ""],
                      sum(b.status is S.SUCCEEDED for b in mine),
                      sum(b.status in _FAILED for b in mine), len(mine))
               for op in ops if op.sub_type in _BRANCH_OF
               for mine in [branches.get(op.id, [])]]
    failed = [op for op in ops if op.status in _FAILED and op.sub_type not in _BRANCH_OF
              and (op.error is None or op.error.type != ABANDONED)]
    # a branch failed by a failed step in it is that step's failure, told once
    within = {op.parent_id for op in failed}
    failures = [(op_label(op), error_text(op.error)) for op in failed if op.id not in within]
    return Summary(run, sum(op.status is S.SUCCEEDED for op in steps), len(steps),
                   sum(_failed_attempts(op) for op in steps), fanouts, pending(run, ops),
                   failures)


def _failed_attempts(step: Operation) -> int:
    """A step's attempt counts the one under way or done; a step waiting to retry, or failed
    for good, has failed every attempt it counts."""
    if step.status in (S.SUCCEEDED, S.STARTED):
        return max(step.attempt - 1, 0)
    return step.attempt


def until(ts: float, now: float) -> str:
    return f"in {duration(ts - now)}" if ts >= now else f"{duration(now - ts)} overdue"


SHOWN = 3
"""Waits and failures named in a summary; the rest are counted."""


def summary_lines(summary: Summary, now: float) -> list[Telling]:
    """The summary as a few lines, a fixed number whatever the run's size but for one per map
    or gather: the run's state, steps, each fan-out, what it waits on, its failures."""
    run = summary.run
    lines = [_state_line(run, now), (
        f"steps {summary.steps_done}/{summary.steps_total} done, "
        f"{summary.failed_attempts} failed attempt(s)",
        Tone.WARN if summary.failed_attempts else Tone.PLAIN)]
    lines += [(f"{f.label} {f.done}/{f.total} {f.unit} done"
               + (f", {f.failed} failed" if f.failed else ""),
               Tone.ERROR if f.failed else Tone.PLAIN) for f in summary.fanouts]
    if summary.waiting:
        waits = ", ".join(w.label + (f" ({until(w.due_at, now)})" if w.due_at else "")
                          for w in summary.waiting[:SHOWN])
        lines.append((f"waiting on {waits}{_more(summary.waiting)}", Tone.PLAIN))
    if summary.failures:
        named = "; ".join(f"{label}: {error}" for label, error in summary.failures[:SHOWN])
        lines.append((f"{len(summary.failures)} failed: {named}{_more(summary.failures)}",
                      Tone.ERROR))
    return lines


def _more(items: list[Any]) -> str:
    return f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else ""


def _state_line(run: RunInfo, now: float) -> Telling:
    took = duration(elapsed(run, now))
    if run.parked is not None:
        return f"run PARKED after {took}: {error_text(run.parked)}", Tone.ALARM
    if run.status is ExecutionStatus.PAUSED:
        return f"run PAUSED after {took}: `durable resume {run.run_id}` runs it on", Tone.ALARM
    if run.status is ExecutionStatus.ENQUEUED:
        return f"run enqueued on {run.queue} for {took}", Tone.PLAIN
    if run.status.live:
        return f"run running for {took}", Tone.PLAIN
    tone = Tone.OK if run.status is ExecutionStatus.SUCCEEDED else Tone.ERROR
    return f"run {run.status.value.lower().replace('_', ' ')} after {took}", tone


def log_where(line: LogLine, ops: dict[str, Operation]) -> str:
    """Where a kept `ctx.logger` line was logged, for people: the step and attempt whose body
    logged it, or the branch; empty for the workflow body."""
    op = ops.get(line.operation_id or "")
    if op is None:
        return ""
    return f"{op.name} #{line.attempt}" if line.attempt is not None else op.name or ""
