"""A run laid out as a Gantt chart: one row per operation on the run's own time axis.

Pure layout (numbers and CSS classes), no markup: the run page's template draws it as inline SVG.
Besides the operations, the first row shows the invocations, i.e. when the workflow's code was
actually running: the gaps in it are time the run cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from durable.model import (
    EventType,
    HistoryEvent,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
    SubType,
)
from durable.views.timeline import duration, error_text, op_label

WIDTH = 660.0
"""Length of the time axis in SVG units; the template adds the label column."""
MIN_BAR = 2.0
"""Shortest bar drawn: a 1ms step in a day-long run must still be visible."""

HIDDEN = {SubType.NOW, SubType.RANDOM, SubType.UUID, SubType.PATCH, SubType.SET_EVENT,
          SubType.SET_ATTRIBUTES}
"""Recorded values and markers: instants with nothing to draw (the history lists them)."""

EVENTS = frozenset({EventType.STEP_FAILED, EventType.INVOCATION_COMPLETED})
"""The only events the chart draws: the rest of a long history need not be read into it."""

_KIND = {OperationType.STEP: "step", OperationType.WAIT: "wait",
         OperationType.CALLBACK: "callback", OperationType.CHAINED_INVOKE: "child",
         OperationType.CONTEXT: "scope"}


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    width: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    css: str
    title: str


@dataclass(slots=True)
class Row:
    label: str
    depth: int
    status: str
    bars: list[Bar] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    rows: list[Row]
    ticks: list[Tick]
    now_x: float | None  # where "now" is, for a run still going


class _Axis:
    def __init__(self, t0: float, t1: float) -> None:
        self.t0, self.span = t0, max(t1 - t0, 1e-3)

    def x(self, ts: float) -> float:
        return min(max((ts - self.t0) / self.span, 0.0), 1.0) * WIDTH

    def bar(self, start: float, end: float, css: str, title: str) -> Bar:
        x = self.x(start)
        width = max(self.x(end) - x, MIN_BAR)
        return Bar(min(x, WIDTH - width), width, css, title)


def chart(run: RunInfo, ops: list[Operation], history: list[HistoryEvent], now: float) -> Chart:
    end = run.ended_at or now
    axis = _Axis(run.created_at, end)
    by_id = {op.id: op for op in ops}
    failures = _failures(history)
    rows = [_invocations(axis, history)]
    rows += [_row(axis, op, _depth(op, by_id), failures.get(op.id, []), end)
             for op in ops if op.sub_type not in HIDDEN]
    ticks = [Tick(WIDTH * i / 4, f"+{duration(axis.span * i / 4)}") for i in range(5)]
    return Chart(rows, ticks, None if run.ended_at else axis.x(now))


def _depth(op: Operation, by_id: dict[str, Operation]) -> int:
    depth, parent = 0, op.parent_id
    while parent is not None and parent in by_id and depth < 20:
        depth, parent = depth + 1, by_id[parent].parent_id
    return depth


def _failures(history: list[HistoryEvent]) -> dict[str, list[HistoryEvent]]:
    """Failed step attempts that were retried, by operation id."""
    out: dict[str, list[HistoryEvent]] = {}
    for e in history:
        if e.type == EventType.STEP_FAILED and e.operation_id and e.details.get("retry"):
            out.setdefault(e.operation_id, []).append(e)
    return out


def _invocations(axis: _Axis, history: list[HistoryEvent]) -> Row:
    row = Row("invocations (compute)", 0, "compute")
    for e in history:
        if e.type == EventType.INVOCATION_COMPLETED:
            took = float(e.details.get("duration") or 0.0)
            row.bars.append(axis.bar(e.timestamp - took, e.timestamp, "bar-compute",
                                     f"invocation {e.details.get('status')}, "
                                     f"{duration(took)} of compute"))
    return row


def _row(axis: _Axis, op: Operation, depth: int, failures: list[HistoryEvent],
         end: float) -> Row:
    status = op.status.value
    row = Row(op_label(op), depth, status,
              link=f"/runs/{op.child_run_id}" if op.child_run_id else None)
    kind = _KIND.get(op.type, "step")
    for failed in failures:  # earlier attempts: where each failed, then its backoff
        due = float(failed.details.get("next_attempt_at") or failed.timestamp)
        what = f"attempt {failed.details.get('attempt')} failed: " \
               f"{error_text(failed.details.get('error'))}"
        row.markers.append(Marker(axis.x(failed.timestamp), "mark-failed", what))
        row.bars.append(axis.bar(failed.timestamp, min(due, end), "bar-backoff",
                                 f"backoff until +{duration(due - axis.t0)}"))
    if op.status is OperationStatus.PENDING:  # backing off now: the failure bar says it all
        return row
    start = op.started_at or axis.t0
    stop = op.ended_at or end
    title = f"{row.label}: {status}, {duration(stop - start)}"
    if op.attempt > 1:
        title += f", attempt {op.attempt}"
    if op.error is not None:
        title += f" ({error_text(op.error)})"
    if op.due_at is not None and not op.status.is_final:
        title += f", due at +{duration(op.due_at - axis.t0)}"
    open_ended = "" if op.status.is_final else " open"
    row.bars.append(axis.bar(start, stop, f"bar-{kind} st-{status}{open_ended}", title))
    if op.due_at is not None and not op.status.is_final and op.due_at > end:
        row.markers.append(Marker(WIDTH, "mark-later", f"due at +{duration(op.due_at - axis.t0)}"
                                                       " (past the right edge)"))
    return row
