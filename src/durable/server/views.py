"""What the UI's pages show, gathered through the client in one place per page."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from durable.client import PAGE_LIMIT, Client, RunListing
from durable.errors import UsageError
from durable.model import (
    HistoryEvent,
    LogLine,
    Operation,
    OperationType,
    RunInfo,
)
from durable.model.listing import RunFilter, run_filter
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



RANGES = {"15m": "last 15 minutes", "1h": "last hour", "24h": "last 24 hours",
          "7d": "last 7 days"}
"""The runs list's time ranges: spans before now, as `model.listing.moment` reads them."""
LIVE_OVERLAP = 5.0
"""Seconds a live update of the runs list reads back before the last one's time: a run created
or changed by a process whose clock is a little behind the server's is not missed."""


@dataclass(frozen=True, slots=True)
class RunsQuery:
    """What the runs list was asked for, as its URL carries it."""

    status: str = ""
    q: str = ""
    where: str = ""
    range: str = ""
    children: bool = False  # child runs listed too, not only behind their root's toggle
    cursor: str = ""

    def url(self, **changes: str) -> str:
        """The query string of this listing, `changes` applied (an empty value drops a key)."""
        fields = {"status": self.status, "q": self.q, "where": self.where,
                  "range": self.range, "children": "1" if self.children else "",
                  "cursor": self.cursor, **changes}
        return urlencode({k: v for k, v in fields.items() if v})

    def filter(self, now: float) -> RunFilter:
        return run_filter(status=self.status, search=self.q, where=self.where,
                          since=self.range if self.range in RANGES else None,
                          roots=not self.children, now=now)


@dataclass(frozen=True, slots=True)
class RunsPage:
    query: RunsQuery
    listing: RunListing
    now: float
    workflows: list[Any]
    error: str | None = None  # the filter, refused: the list is empty and says why

    @property
    def runs(self) -> list[RunInfo]:
        return self.listing.runs


_NOTHING = RunListing([], None, {}, {})


def runs_page(client: Client, query: RunsQuery, workflows: list[Any]) -> RunsPage:
    now = client.clock()
    try:
        chosen = query.filter(now)
        listing = client.runs(chosen, PAGE, query.cursor or None, preview=0)  # no payloads
    except UsageError as e:
        return RunsPage(query, _NOTHING, now, workflows, str(e))
    return RunsPage(query, listing, now, workflows)


def runs_changed(client: Client, query: RunsQuery, shown: list[str], since: float) -> RunsPage:
    """The rows of the runs list to replace or add since its last update at `since`: the shown
    runs that changed, and on its first page, the runs created since that match."""
    now = client.clock()
    after = since - LIVE_OVERLAP
    chosen = query.filter(now)
    newer = replace(chosen, since=max(after, chosen.since or after))
    listing = client.runs_changed(shown, after, None if query.cursor else newer,
                                   preview=0)
    return RunsPage(query, listing, now, [])


def children_page(client: Client, parent: str) -> RunsPage:
    """The runs `parent` started, for the toggle under its row."""
    listing = client.runs(RunFilter(parent=parent), PAGE_LIMIT, preview=0)
    return RunsPage(RunsQuery(), listing, client.clock(), [])
