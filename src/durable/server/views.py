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
from durable.server import gantt, tree
from durable.views.timeline import (
    Entry,
    Pending,
    describe,
    elapsed,
    log_where,
    offset,
    pending,
    published,
)

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


WAITING_SHOWN = 20
"""Waits listed on the run page: a map of 2,000 children waits on 2,000 of them."""
HISTORY_PAGE = 100
GANTT_ROWS = 200
"""Operations drawn in the timeline; a larger run is told in the operation tree."""


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of a run's history, events after `after` that match `q`, oldest first.
    `tail`: it reaches the newest event and filters nothing, so live events extend it."""

    lines: list[Line]
    q: str
    after: int
    next_after: int | None

    @property
    def tail(self) -> bool:
        return self.next_after is None and not self.q


@dataclass(frozen=True, slots=True)
class RunState:
    """The run's head: its facts, what it waits on, what it published. Small whatever the
    run's size, so live updates send it again whole."""

    run: RunInfo
    waiting: list[Pending]
    waiting_total: int
    events: dict[str, str | None]
    elapsed: float
    now: float

    @property
    def compute_share(self) -> float:
        return self.run.compute_seconds / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RunPage:
    state: RunState
    roots: tree.Listing
    operations: int
    history: HistoryPage
    watermark: int  # the newest event id: live updates ask for what comes after it
    steps: list[str]  # what a rerun can start from
    logs: list[LogRow]

    @property
    def run(self) -> RunInfo:
        return self.state.run


def _state(client: Client, run: RunInfo, ops: list[Operation]) -> RunState:
    now = client.clock()
    waits = pending(run, ops)
    return RunState(run, waits[:WAITING_SHOWN], len(waits), published(ops), elapsed(run, now),
                    now)


def run_page(client: Client, run_id: str, q: str = "", after: int = 0) -> RunPage:
    run = client.get(run_id)
    ops = client.operations(run_id)
    by_id = {op.id: op for op in ops}
    steps = list(dict.fromkeys(op.name for op in ops
                               if op.type is OperationType.STEP and op.name
                               and op.sub_type == "Step"))
    logs = [LogRow(line, offset(line.at, run.created_at), log_where(line, by_id))
            for _, line in client.logs(run_id)]
    return RunPage(_state(client, run, ops), tree.Tree(ops).listing(None, 0), len(ops),
                   _history(client, run, by_id, q, after), client.history_watermark(run_id),
                   steps, logs)


def _line(event: HistoryEvent, run: RunInfo, by_id: dict[str, Operation]) -> Line:
    return Line(event, offset(event.timestamp, run.created_at),
                describe(event, by_id.get(event.operation_id or ""), run.created_at))


def _matches(line: Line, q: str) -> bool:
    e = line.event
    return any(q in (text or "").lower() for text in (
        line.entry.subject, line.entry.text, e.type, e.operation_id, e.name))


def _history(client: Client, run: RunInfo, by_id: dict[str, Operation], q: str,
             after: int) -> HistoryPage:
    """Read on until a page is full: a search reads the history in large chunks and keeps the
    events that match, so it costs one pass over the run however rare the matches."""
    needle, cursor = q.strip().lower(), after
    found: list[Line] = []
    while len(found) <= HISTORY_PAGE:
        chunk = client.history(run.run_id, cursor, HISTORY_PAGE + 1 if not needle else 5000)
        if not chunk:
            break
        found += [line for e in chunk if _matches(line := _line(e, run, by_id), needle)]
        cursor = chunk[-1].id
        if not needle:
            break
    page = found[:HISTORY_PAGE]
    more = len(found) > HISTORY_PAGE
    return HistoryPage(page, q, after, page[-1].event.id if more else None)


def history_page(client: Client, run_id: str, q: str, after: int) -> tuple[RunInfo, HistoryPage]:
    run = client.get(run_id)
    by_id = {op.id: op for op in client.operations(run_id)}
    return run, _history(client, run, by_id, q, after)


def children(client: Client, run_id: str, parent: str | None, at: int) -> tuple[RunInfo,
                                                                               tree.Listing]:
    """A page of one operation's children, for expanding it on the run page."""
    run = client.get(run_id)
    return run, tree.Tree(client.operations(run_id)).listing(parent, at)


@dataclass(frozen=True, slots=True)
class Changed:
    """An operation row an update changes: replaced if the page shows it, else added to its
    parent's listing if the page shows that."""

    node: tree.Node
    parent: str | None


@dataclass(frozen=True, slots=True)
class Update:
    """What happened in a run after event `after`: its new events (at most a page; `more`
    says the rest follow at the next ask), the rows they changed, its head again."""

    state: RunState | None  # None: nothing happened
    lines: list[Line]
    changed: list[Changed]
    watermark: int
    more: bool


def update(client: Client, run_id: str, after: int) -> Update:
    events = client.history(run_id, after, HISTORY_PAGE + 1)
    if not events:
        return Update(None, [], [], after, False)
    run = client.get(run_id)
    ops = client.operations(run_id)
    ops_tree = tree.Tree(ops)
    shown = events[:HISTORY_PAGE]
    touched: dict[str, Operation] = {}
    for e in shown:
        for op in ops_tree.lineage(e.operation_id or ""):
            touched.setdefault(op.id, op)
    changed = [Changed(ops_tree.node(op), ops_tree.parent_of(op)) for op in touched.values()]
    return Update(_state(client, run, ops), [_line(e, run, ops_tree.by_id) for e in shown],
                  changed, shown[-1].id, len(events) > HISTORY_PAGE)


def gantt_chart(client: Client, run_id: str) -> tuple[RunInfo, gantt.Chart, int]:
    """The timeline of the run's first GANTT_ROWS operations, and how many it leaves out."""
    run = client.get(run_id)
    ops = client.operations(run_id)
    drawn = [op for op in ops if op.sub_type not in gantt.HIDDEN][:GANTT_ROWS]
    history = [e for e in _all_history(client, run_id)
               if e.type in gantt.EVENTS]
    return run, gantt.chart(run, drawn, history, client.clock()), len(ops) - len(drawn)


def _all_history(client: Client, run_id: str) -> list[HistoryEvent]:
    out: list[HistoryEvent] = []
    while chunk := client.history(run_id, out[-1].id if out else 0):
        out += chunk
    return out


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
