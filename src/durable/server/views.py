"""What the UI's pages show, gathered through the client in one place per page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from durable.client import Client
from durable.model import (
    ExecutionStatus,
    HistoryEvent,
    LogLine,
    Operation,
    OperationType,
    RunInfo,
)
from durable.server import gantt
from durable.views.timeline import (
    Entry,
    Pending,
    describe,
    elapsed,
    log_where,
    offset,
    op_label,
    pending,
    published,
)
from durable.views.values import Shown, shown

STATUSES = [s.value for s in ExecutionStatus]
PAGE = 50


@dataclass(frozen=True, slots=True)
class Line:
    """One history event as the page lists it."""

    event: HistoryEvent
    at: str
    entry: Entry


@dataclass(frozen=True, slots=True)
class LogRow:
    """One `ctx.logger` line as the page lists it: when, and in which step."""

    line: LogLine
    at: str
    where: str


@dataclass(frozen=True, slots=True)
class OpValues:
    """One operation's input and output as its row on the page shows them."""

    op: Operation
    label: str
    input: Shown | None
    output: Shown | None


@dataclass(frozen=True, slots=True)
class RunPage:
    run: RunInfo
    operations: list[Operation]
    lines: list[Line]
    waiting: list[Pending]
    events: dict[str, str | None]
    chart: gantt.Chart
    elapsed: float
    steps: list[str]  # what a rerun can start from
    now: float
    logs: list[LogRow]

    @property
    def compute_share(self) -> float:
        return self.run.compute_seconds / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def op_values(self) -> list[OpValues]:
        """The operations that have an input or output recorded, each with both as shown."""
        rows = (OpValues(op, op_label(op), shown(self.run.run_id, op, "input"),
                         shown(self.run.run_id, op, "output")) for op in self.operations)
        return [row for row in rows if row.input is not None or row.output is not None]

    @property
    def step_errors(self) -> list[Operation]:
        return [op for op in self.operations if op.error is not None
                and op.type is OperationType.STEP]


def run_page(client: Client, run_id: str) -> RunPage:
    run = client.get(run_id)
    ops = client.operations(run_id, inputs=True)
    history = client.history(run_id)
    now = client.clock()
    by_id = {op.id: op for op in ops}
    lines = [Line(e, offset(e.timestamp, run.created_at),
                  describe(e, by_id.get(e.operation_id or ""), run.created_at)) for e in history]
    steps = list(dict.fromkeys(op.name for op in ops
                               if op.type is OperationType.STEP and op.name
                               and op.sub_type == "Step"))
    logs = [LogRow(line, offset(line.at, run.created_at), log_where(line, by_id))
            for _, line in client.logs(run_id)]
    return RunPage(run, ops, lines, pending(run, ops), published(ops),
                   gantt.chart(run, ops, history, now), elapsed(run, now),
                   steps, now, logs)



@dataclass(frozen=True, slots=True)
class RunsPage:
    runs: list[RunInfo]
    status: str | None
    q: str
    offset: int
    more: bool
    now: float
    workflows: list[Any]


def runs_page(client: Client, status: str | None, q: str, page_offset: int,
              workflows: list[Any]) -> RunsPage:
    status = status if status in STATUSES else None
    runs = client.list(status, None, PAGE + 1, page_offset, search=q or None,
                       preview=0)  # the list shows no payload
    return RunsPage(runs[:PAGE], status, q, page_offset, len(runs) > PAGE, client.clock(),
                    workflows)
