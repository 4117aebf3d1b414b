"""What the UI's pages show, gathered through the client in one place per page."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from durable.client import PAGE_LIMIT, Client, RunListing
from durable.errors import UsageError
from durable.model import (
    ExecutionStatus,
    HistoryEvent,
    LogLine,
    Operation,
    OperationStatus,
    OperationType,
    RunInfo,
)
from durable.model.listing import RunFilter, run_filter
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
    editable: list[Operation]  # the steps an operator may edit: of a paused or parked run only
    failed_step: str | None  # the first step that failed: where the rerun form starts
    input_text: str  # the recorded input as JSON to edit for a rerun ("" if it is none)

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
    named = [op for op in ops if op.type is OperationType.STEP and op.name
             and op.sub_type == "Step"]
    steps = list(dict.fromkeys(op.name for op in named if op.name))
    failed = next((op.name for op in named if op.status is OperationStatus.FAILED), None)
    logs = [LogRow(line, offset(line.at, run.created_at), log_where(line, by_id))
            for _, line in client.logs(run_id)]
    return RunPage(_state(client, run, ops), tree.Tree(ops).listing(None, 0), len(ops),
                   _history(client, run, by_id, q, after), client.history_watermark(run_id),
                   steps, logs, _editable(run, ops), failed, _editable_input(run.input))


def _editable_input(recorded: str | None) -> str:
    """The recorded input, indented for a person to edit; as stored if it is not JSON (a
    custom serializer's), and nothing if the run had none."""
    if recorded is None:
        return ""
    try:
        return json.dumps(json.loads(recorded), indent=2, ensure_ascii=False)
    except ValueError:
        return recorded


EDITABLE_SHOWN = 500
"""Steps the edit form offers; a larger run's others are edited by id from the CLI or API."""


def _editable(run: RunInfo, ops: list[Operation]) -> list[Operation]:
    if run.status is not ExecutionStatus.PAUSED and not run.parked:
        return []
    return [op for op in ops if op.type is OperationType.STEP
            and op.sub_type == "Step"][:EDITABLE_SHOWN]


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


@dataclass(frozen=True, slots=True)
class OpValues:
    """One operation's input and output as the run page shows them, fetched when a reader
    opens them: reading every operation's input into the page would grow it with the run."""

    op: Operation
    input: Shown | None
    output: Shown | None


def op_values(client: Client, run_id: str, op_id: str) -> OpValues:
    op = client.operation(run_id, op_id)
    return OpValues(op, shown(run_id, op, "input"), shown(run_id, op, "output"))


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
