"""What `durable` prints: consoles, `durable show`, the runs table, and the progress of a run
served here."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import datetime
from typing import Any, NoReturn

import click

try:
    from rich.console import Console, Group, RenderableType
    from rich.live import Live
    from rich.panel import Panel
    from rich.spinner import Spinner
    from rich.table import Column, Table
    from rich.text import Text as Text  # commands.py draws with it too
except ModuleNotFoundError:  # the core install: the same lines, plain (the [cli] extra has rich)
    from durable.cli.plain import (  # type: ignore[assignment]
        Column,
        Console,
        Group,
        Live,
        Panel,
        RenderableType,
        Spinner,
        Table,
        Text,
    )

from durable.cli.exits import ExitCode, error, exit_with
from durable.client import Client
from durable.engine.worker import Worker
from durable.errors import UsageError
from durable.model import (
    ErrorObject,
    EventType,
    ExecutionStatus,
    HistoryEvent,
    LogLine,
    Operation,
    RunInfo,
)
from durable.views.jsonio import RunView, outcome_json, payload_text
from durable.views.timeline import (
    Entry,
    Pending,
    Summary,
    Tone,
    describe,
    duration,
    elapsed,
    error_text,
    log_where,
    offset,
    op_label,
    pending,
    published,
    summarize,
    summary_lines,
    until,
)
from durable.views.values import Which, shown, stored

E = EventType

PIPE_WIDTH = 1000


def make_console(stderr: bool = False) -> Console:
    """A console that never reads user data (names, messages, payloads) as markup or emoji.
    Output to a pipe or file is not wrapped at 80 columns: lines stay whole for grep and less."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False,
                   width=None if stream.isatty() else PIPE_WIDTH)


_ESCAPED = {code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
            for code in (*range(0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F),
                         *range(0x2066, 0x206A))}
"""C0 and C1 controls (ESC starts every terminal escape sequence; C1 CSI is one in a byte)
and the bidirectional overrides that make text display in another order than it reads."""
_ESCAPED_IN_LINES = {code: shown for code, shown in _ESCAPED.items() if chr(code) not in "\n\t"}


def printable(text: str, *, lines: bool = False) -> str:
    """`text` from the data (an id, a name, a message, a payload) as it is safe to print: its
    control characters written as escapes such as `\\x1b`, so that nothing stored can move
    the cursor, recolour, retitle or reprogram the terminal showing it, or fake a line of the
    output. With `lines`, newlines and tabs stay (tracebacks, multi-line messages)."""
    return text.translate(_ESCAPED_IN_LINES if lines else _ESCAPED)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def echo_done(as_json: bool, data: dict[str, Any], text: str) -> None:
    """What a command that acts prints when it has: `data` as JSON, or the sentence `text`."""
    if as_json:
        echo_json(data)
    else:
        click.echo(text)


# -- formatting -----------------------------------------------------------------------------

def _local(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


_STATUS_STYLE = {
    ExecutionStatus.ENQUEUED: "blue",
    ExecutionStatus.RUNNING: "cyan",
    ExecutionStatus.PAUSED: "yellow",
    ExecutionStatus.SUCCEEDED: "green",
    ExecutionStatus.FAILED: "red",
    ExecutionStatus.TIMED_OUT: "red",
    ExecutionStatus.STOPPED: "yellow",
}

_TONE_STYLE = {Tone.PLAIN: "", Tone.OK: "green", Tone.WARN: "yellow", Tone.ERROR: "red",
               Tone.ALARM: "bold red", Tone.MUTED: "dim"}


def _status_text(run: RunInfo) -> Text:
    if run.parked is not None:
        return Text(f"{run.status} (parked)", style="bold red")
    if run.invocation_error is not None:
        return Text(f"{run.status} (function unreachable)", style="bold yellow")
    note = " (cancelling)" if run.cancel_requested and run.status.live else ""
    if run.status is ExecutionStatus.ENQUEUED:
        note = f" #{run.position} on {printable(run.queue or '')}"
    return Text(f"{run.status}{note}", style=_STATUS_STYLE.get(run.status, ""))


def _progress_line(event: HistoryEvent, entry: Entry, t0: float) -> Text:
    return Text(f"{offset(event.timestamp, t0):>9}  {printable(entry.subject)} "
                f"{printable(entry.text, lines=True)}", style=_TONE_STYLE[entry.tone])


def _action(run_id: str, p: Pending) -> str:
    """The command that resolves what the run waits on, where a person can."""
    if p.callback_id is not None:
        return printable(f"durable callback succeed {p.callback_id} --payload JSON")
    if p.signal is not None:
        return printable(f"durable signal {run_id} {p.signal} --payload JSON")
    if p.child_run_id is not None:
        return printable(f"durable show {p.child_run_id}")
    return ""


# -- `durable show` -------------------------------------------------------------------------

def render_run(view: RunView) -> RenderableType:
    """`durable show` for a person: a summary, what is wrong or awaited, then the timeline."""
    run = view.run
    parts: list[RenderableType] = [_summary(view)]
    if run.parked is not None:
        parts.append(_parked_panel(run.parked))
    elif run.invocation_error is not None:
        parts.append(_failing_panel(run))
    if run.error is not None:
        parts.append(_error_block(run.error))
    waiting = pending(run, view.operations)
    if waiting:
        parts.append(_section("Waiting on", _pending_table(view, waiting)))
    events = published(view.operations)
    if events:
        parts.append(_section("Published events", _events_table(events)))
    if view.operations:
        parts.append(_section("Operations", _operations_table(view)))
    parts.append(_section("History", _timeline(view)))
    return Group(*parts)


OP_ID_SHOWN = 12
"""Hex digits of an operation id that `durable show` prints: --input/--output take any start
of an id that no other operation of the run shares."""


SHOW_PREVIEW = 120
"""Characters of an operation's input or output that `durable show` prints in its table."""


def _operations_table(view: RunView) -> Table:
    """One line per operation: the start of its id (what --input/--output take), what it is,
    and the start of its input and output, each cut with the command that prints it whole."""
    run_id = view.run.run_id
    table = plain_table(Column("id", no_wrap=True), "operation", "status", "input", "output")
    for op in view.operations:
        table.add_row(op.id[:OP_ID_SHOWN], printable(op_label(op)), op.status.value,
                      _value_cell(run_id, op, "input"), _value_cell(run_id, op, "output"))
    return table


def _value_cell(run_id: str, op: Operation, which: Which) -> Text:
    value = shown(run_id, op, which, limit=SHOW_PREVIEW)
    if value is None:
        return Text("-", style="dim")
    text = Text(printable(value.text))
    if value.opaque:
        text.append(" (not JSON: a custom serializer's, e.g. encrypted)", style="dim")
    if value.truncated:
        text.append(f"… ({value.chars} chars: durable show {printable(run_id)} "
                    f"--{which} {op.id[:OP_ID_SHOWN]})", style="dim")
    return text


def operation_value(client: Client, run_id: str, input_of: str | None,
                    output_of: str | None) -> str:
    """`durable show RUN --input OP` / `--output OP`: the whole value as stored, JSON as JSON
    (NaN as null, as everywhere), a custom serializer's text as it is."""
    if input_of is not None and output_of is not None:
        raise UsageError("give one of --input and --output: each prints one whole value")
    which: Which = "input" if input_of is not None else "output"
    op = client.operation(run_id, input_of or output_of or "")
    text = stored(op, which)
    if text is None:
        raise UsageError(f"operation {op.id} ({op.name}) of run {run_id!r} has no {which} "
                         "recorded" + (" (its workflow or step has record_input off, or its "
                                       "input could not be encoded)" if which == "input" else ""))
    return payload_text(text)


def render_logs(lines: list[tuple[int, LogLine]], t0: float,
                ops: dict[str, Operation]) -> Table:
    """`durable show --logs`: when (from the run's start), level, the step attempt whose body
    logged it, and the message."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(justify="right", style="dim")
    table.add_column()
    table.add_column(style="dim")
    table.add_column(overflow="fold")
    for _, line in lines:
        table.add_row(offset(line.at, t0), Text(line.level, style=_LEVEL_STYLES.get(
            line.level, "")), printable(log_where(line, ops)), printable(line.message, lines=True))
    return table


_LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red"}


def _summary(view: RunView) -> Table:
    run = view.run
    took = elapsed(run, view.now)
    share = f" ({100 * run.compute_seconds / took:.1f}%)" if took > 0 else ""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("run", printable(run.run_id)),
        ("workflow", printable(run.workflow)),
        *([("parent run", printable(run.parent_run_id))] if run.parent_run_id else []),
        ("status", _status_text(run)),
        *([("queue", printable(f"{run.queue}, priority {run.priority}"
                               + (f", dedup id {run.dedup_id}" if run.dedup_id else "")))]
          if run.queue else []),
        ("created", _local(run.created_at)),
        ("ended", _local(run.ended_at)),
        ("time", f"{duration(took)} elapsed, {duration(run.compute_seconds)} "
                 f"computing{share}"),
        ("input", printable(run.input or "-", lines=True)),
    ]
    if run.status is ExecutionStatus.SUCCEEDED:
        rows.append(("result", printable(run.result or "null", lines=True)))
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _timeline(view: RunView) -> Table:
    ops = {op.id: op for op in view.operations}
    t0 = view.run.created_at
    table = plain_table(Column("time", justify="right", no_wrap=True), "operation", "what happened")
    for event in view.history:
        entry = describe(event, ops.get(event.operation_id or ""), t0)
        table.add_row(offset(event.timestamp, t0), printable(entry.subject),
                      Text(printable(entry.text, lines=True), style=_TONE_STYLE[entry.tone]))
    return table


def _pending_table(view: RunView, waiting: list[Pending]) -> Table:
    table = plain_table("operation", "when", "detail", "what to do")
    for p in waiting:
        when = "-" if p.due_at is None else f"{_local(p.due_at)} ({until(p.due_at, view.now)})"
        table.add_row(printable(p.label), when, printable(p.detail, lines=True),
                      _action(view.run.run_id, p))
    return table


def plain_table(*columns: str | Column) -> Table:
    """A borderless table: easy to read in a terminal, easy to grep in a pipe."""
    return Table(*columns, box=None, pad_edge=False, show_edge=False)


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(""), Text(title, style="bold underline"), body)


def _parked_panel(parked: ErrorObject) -> Panel:
    body = Text.assemble(
        (printable(f"{parked.type}: {parked.message}", lines=True), "bold"),
        "\nParked, not failed: the run stays RUNNING until what the error names is fixed "
        "(code that matches its history, a function registered again).")
    return Panel(body, title="PARKED", title_align="left", border_style="red", expand=False)


def _failing_panel(run: RunInfo) -> Panel:
    assert run.invocation_error is not None
    error = run.invocation_error
    body = Text.assemble(
        (f"{error.type}: {error.message}", "bold"),
        f"\nFailing since {_local(run.invocation_failing_since)}, "
        f"{run.invocation_failures} attempt(s) in a row. Not failed: the run stays RUNNING and "
        "is invoked again with backoff until the function answers.")
    return Panel(body, title="FUNCTION UNREACHABLE", title_align="left", border_style="yellow",
                 expand=False)


def _error_block(error: ErrorObject) -> Group:
    parts: list[RenderableType] = [
        Text(""), Text(f"error: {printable(error_text(error), lines=True)}", style="bold red")]
    if error.traceback:
        parts.append(Text(printable(error.traceback.rstrip(), lines=True), style="dim"))
    return Group(*parts)


def _events_table(events: dict[str, str | None]) -> Table:
    table = plain_table("key", "value")
    for key, value in events.items():
        table.add_row(printable(key), printable(value or "null", lines=True))
    return table


# -- `durable run`: serve one run here, telling its progress --------------------------------

class Progress:
    """Follows a run while this process serves or watches it: keeps its summary, prints each
    new event on stderr if asked (`--events`), and tells when to stop: once the run has ended
    or has parked since watching began (a run parked by older code may well go on under this
    code, so older parkings do not count)."""

    def __init__(self, client: Client, run_id: str, console: Console, *,
                 events: bool = False) -> None:
        self._client = client
        self.clock = client.clock
        self._run_id = run_id
        self._console = console
        self._events = events
        run = client.get(run_id)
        self._t0 = run.created_at
        history = client.history(run_id)
        self._watch_from = history[-1].id if history else 0
        self._shown = 0
        self._parked = False
        self.summary = summarize(run, [])
        self.live = False  # a live summary shows `summary`: keep it current at each poll

    def poll(self) -> bool:
        """Read what happened since the last poll; True once there is nothing left to follow.
        The end is read from the run's status, not from its events, which a continue-as-new
        replaces."""
        while batch := self._client.history_with_operations(self._run_id, after=self._shown):
            for event, op in batch:
                self._show(event, op)
        run = self._client.get(self._run_id)
        if self.live:
            self._refresh(run)
        return not run.status.live or self._parked

    def finish(self) -> None:
        """Print the summary once, as it stands: the last word on a terminal, the only one in
        a pipe."""
        self._refresh(self._client.get(self._run_id))
        self._console.print(render_summary(self.summary, self.clock()))

    def _refresh(self, run: RunInfo) -> None:
        self.summary = summarize(run, self._client.operations(self._run_id))

    def _show(self, event: HistoryEvent, op: Operation | None) -> None:
        if self._events and event.type != E.INVOCATION_COMPLETED:
            self._console.print(_progress_line(event, describe(event, op, self._t0), self._t0))
        if event.type == E.EXECUTION_PARKED and event.id > self._watch_from:
            self._parked = True
        self._shown = event.id


def render_summary(summary: Summary, now: float) -> Group:
    """A run's summary, a line each for its state, steps, fan-outs, waits and failures."""
    return Group(*(Text(printable(text), style=_TONE_STYLE[tone])
                   for text, tone in summary_lines(summary, now)))


class LiveStatus:
    """The summary kept current on a terminal under a spinner. Rendered by rich's refresh
    thread from what the last poll read, so it costs no database reads of its own; the
    countdowns move between polls."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> RenderableType:
        p = self._progress
        return Group(self._spinner, render_summary(p.summary, p.clock()))


class WorkerStatus:
    """`durable worker`'s line on a terminal: what it has done so far."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> RenderableType:
        stats = self._worker.stats
        self._spinner.update(text=Text(
            f"{stats.invocations} invocation(s), {stats.completed} run(s) completed"
            + (f", {stats.stale} fenced out" if stats.stale else ""), style="bold"))
        return self._spinner


def live_line(console: Console, status: RenderableType) -> contextlib.AbstractContextManager[Any]:
    """A live status line on a terminal; nothing when output goes to a file or a pipe."""
    if not console.is_terminal:
        return contextlib.nullcontext()
    return Live(status, console=console, transient=True, refresh_per_second=8)


def conclude(run: RunInfo, as_json: bool) -> None:
    """Print how an ended run ended: the result on stdout, or the error on stderr and exit 1."""
    if as_json:
        echo_json(outcome_json(run))
    elif run.status is ExecutionStatus.SUCCEEDED:
        click.echo(payload_text(run.result) if run.result is not None else "null")
    if run.status is not ExecutionStatus.SUCCEEDED:
        error(printable(f"run {run.run_id} ended {run.status}: {error_text(run.error)}; "
                        f"`durable show {run.run_id}` has the details"))
        exit_with(ExitCode.FAILED)


def not_ended(run: RunInfo, why: str, code: ExitCode) -> NoReturn:
    if run.parked is not None:
        error(printable(f"run {run.run_id} is parked (still RUNNING): {error_text(run.parked)}"))
    else:
        error(printable(f"run {run.run_id} is still RUNNING: {why}"))
    exit_with(code)



def runs_table(runs: list[RunInfo], now: float) -> Table:
    table = plain_table(Column("run id", no_wrap=True), Column("workflow", min_width=8),
                   Column("status", no_wrap=True),
                   *(Column(name, justify="right", no_wrap=True)
                     for name in ("created", "elapsed", "compute")))
    for r in runs:
        table.add_row(printable(r.run_id), printable(r.workflow), _status_text(r),
                      f"{duration(now - r.created_at)} ago",
                      duration(elapsed(r, now)), duration(r.compute_seconds))
    return table


