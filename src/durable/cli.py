"""The `durable` command: start, serve, inspect and talk to runs from a shell.

Every command takes `--db URL` (default: DURABLE_DB, else sqlite:///.durable/durable.db); those
that print data take `--json`. Bad input is one `error: ...` line on stderr, never a traceback.

Exit codes:
  0    success
  1    the run ended FAILED, STOPPED or TIMED_OUT (`run`, `result`), or the command failed
  2    bad input: unknown target, malformed JSON, input not fitting the workflow, unknown run or
       callback id, unusable database
  3    the run has not ended: `result` without --wait or past its --timeout, or `run` found the
       run parked by a NonDeterminismError
  130  interrupted (Ctrl-C; SIGTERM during `run`); a run being served stays RUNNING
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any, NoReturn

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.spinner import Spinner
from rich.table import Column, Table
from rich.text import Text

from durable.client import Client
from durable.engine.worker import Worker
from durable.errors import DurableError, UsageError
from durable.jsonio import JsonValue, RunView, outcome_json, run_json, workflow_args
from durable.model import (
    ErrorObject,
    EventType,
    ExecutionStatus,
    HistoryEvent,
    Operation,
    RunInfo,
)
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import Tx, resolve_url
from durable.store import migrate as store_migrate
from durable.targets import load_workflow, load_workflows
from durable.timeline import (
    Entry,
    Pending,
    Tone,
    describe,
    duration,
    elapsed,
    error_text,
    offset,
    pending,
    published,
)

E = EventType


class ExitCode(IntEnum):
    """What a script calling `durable` can branch on (the module docstring says when each)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_ENDED = 3
    INTERRUPTED = 130


# -- entry point and error policy ------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and map every outcome to an exit code; the console script exits with it.

    Click runs in non-standalone mode so that its own usage errors, Durable's `UsageError`s and
    Ctrl-C all end the same way: one `error:` line on stderr and a documented exit code.
    """
    try:
        code = cli.main(args=argv, prog_name="durable", standalone_mode=False)
    except click.ClickException as e:
        _error(_click_message(e))
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        _error("interrupted")
        return ExitCode.INTERRUPTED
    except UsageError as e:
        _error(str(e))
        return ExitCode.USAGE
    except DurableError as e:
        _error(str(e))
        return ExitCode.FAILED
    return code if isinstance(code, int) else ExitCode.OK


def _click_message(e: click.ClickException) -> str:
    message = e.format_message()
    if isinstance(e, click.UsageError) and e.ctx is not None:
        message += f" (see '{e.ctx.command_path} --help')"
    return message


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _exit(code: ExitCode) -> NoReturn:
    raise click.exceptions.Exit(code)


# -- options shared by several commands ------------------------------------------------------

def parse_json(ctx: click.Context, param: click.Parameter, text: str | None) -> JsonValue | None:
    """Option callback: parse JSON, failing with the option's name and where the JSON breaks."""
    if text is None:
        return None
    try:
        return JsonValue(json.loads(text))
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON: {e}", ctx, param) from None


def _payload(given: JsonValue | None) -> Any:
    return None if given is None else given.value


db_option = click.option(
    "--db", metavar="URL",
    help="Database URL: sqlite:///path.db or postgresql://... "
         "[default: $DURABLE_DB, else sqlite:///.durable/durable.db]")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
input_option = click.option(
    "--input", "input_", metavar="JSON", callback=parse_json,
    help="The workflow's input as JSON: its one argument's value, or for several arguments an "
         "array or an object keyed by parameter name.")
id_option = click.option("--id", "run_id", metavar="ID",
                         help="Run id; starting an id that exists returns that run.")
payload_option = click.option("--payload", metavar="JSON", callback=parse_json,
                              help="A JSON value to deliver.")


@contextlib.contextmanager
def _client(db: str | None) -> Iterator[Client]:
    client = Client(db)
    try:
        yield client
    finally:
        client.close()


PIPE_WIDTH = 1000


def _console(stderr: bool = False) -> Console:
    """A console that never reads user data (names, messages, payloads) as markup or emoji.
    Output to a pipe or file is not wrapped at 80 columns: lines stay whole for grep and less."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, markup=False, emoji=False, highlight=False,
                   width=None if stream.isatty() else PIPE_WIDTH)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _configure_logging(worker_level: int = logging.INFO) -> None:
    """Let workflows' `ctx.logger` lines reach the terminal, and the worker's notices at
    `worker_level` (housekeeping that is noise when serving a single run)."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("durable.worker").setLevel(worker_level)


# -- formatting -----------------------------------------------------------------------------

def _local(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _until(ts: float, now: float) -> str:
    return f"in {duration(ts - now)}" if ts >= now else f"{duration(now - ts)} overdue"


_STATUS_STYLE = {
    ExecutionStatus.RUNNING: "cyan",
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
    note = " (cancelling)" if run.cancel_requested and run.status is ExecutionStatus.RUNNING else ""
    return Text(f"{run.status}{note}", style=_STATUS_STYLE.get(run.status, ""))


def _progress_line(event: HistoryEvent, entry: Entry, t0: float) -> Text:
    return Text(f"{offset(event.timestamp, t0):>9}  {entry.subject} {entry.text}",
                style=_TONE_STYLE[entry.tone])


def _action(run_id: str, p: Pending) -> str:
    """The command that resolves what the run waits on, where a person can."""
    if p.callback_id is not None:
        return f"durable callback succeed {p.callback_id} --payload JSON"
    if p.signal is not None:
        return f"durable signal {run_id} {p.signal} --payload JSON"
    if p.child_run_id is not None:
        return f"durable show {p.child_run_id}"
    return ""


# -- `durable show` -------------------------------------------------------------------------

def _render(view: RunView) -> RenderableType:
    """`durable show` for a person: a summary, what is wrong or awaited, then the timeline."""
    run = view.run
    parts: list[RenderableType] = [_summary(view)]
    if run.parked is not None:
        parts.append(_parked_panel(run.parked))
    if run.error is not None:
        parts.append(_error_block(run.error))
    waiting = pending(run, view.operations)
    if waiting:
        parts.append(_section("Waiting on", _pending_table(view, waiting)))
    events = published(view.operations)
    if events:
        parts.append(_section("Published events", _events_table(events)))
    parts.append(_section("History", _timeline(view)))
    return Group(*parts)


def _summary(view: RunView) -> Table:
    run = view.run
    took = elapsed(run, view.now)
    share = f" ({100 * run.compute_seconds / took:.1f}%)" if took > 0 else ""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("run", run.run_id),
        ("workflow", run.workflow),
        *([("parent run", run.parent_run_id)] if run.parent_run_id else []),
        ("status", _status_text(run)),
        ("created", _local(run.created_at)),
        ("ended", _local(run.ended_at)),
        ("time", f"{duration(took)} elapsed, {duration(run.compute_seconds)} "
                 f"computing{share}"),
        ("input", run.input or "-"),
    ]
    if run.status is ExecutionStatus.SUCCEEDED:
        rows.append(("result", run.result or "null"))
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _timeline(view: RunView) -> Table:
    ops = {op.id: op for op in view.operations}
    t0 = view.run.created_at
    table = _table(Column("time", justify="right", no_wrap=True), "operation", "what happened")
    for event in view.history:
        entry = describe(event, ops.get(event.operation_id or ""), t0)
        table.add_row(offset(event.timestamp, t0), entry.subject,
                      Text(entry.text, style=_TONE_STYLE[entry.tone]))
    return table


def _pending_table(view: RunView, waiting: list[Pending]) -> Table:
    table = _table("operation", "when", "detail", "what to do")
    for p in waiting:
        when = "-" if p.due_at is None else f"{_local(p.due_at)} ({_until(p.due_at, view.now)})"
        table.add_row(p.label, when, p.detail, _action(view.run.run_id, p))
    return table


def _table(*columns: str | Column) -> Table:
    """A borderless table: easy to read in a terminal, easy to grep in a pipe."""
    return Table(*columns, box=None, pad_edge=False, show_edge=False)


def _section(title: str, body: RenderableType) -> Group:
    return Group(Text(""), Text(title, style="bold underline"), body)


def _parked_panel(parked: ErrorObject) -> Panel:
    body = Text.assemble(
        (f"{parked.type}: {parked.message}", "bold"),
        "\nParked, not failed: the run stays RUNNING, and a worker whose code matches its "
        "history resumes it.")
    return Panel(body, title="PARKED", title_align="left", border_style="red", expand=False)


def _error_block(error: ErrorObject) -> Group:
    parts: list[RenderableType] = [Text(""), Text(f"error: {error_text(error)}", style="bold red")]
    if error.traceback:
        parts.append(Text(error.traceback.rstrip(), style="dim"))
    return Group(*parts)


def _events_table(events: dict[str, str | None]) -> Table:
    table = _table("key", "value")
    for key, value in events.items():
        table.add_row(key, value or "null")
    return table


# -- `durable run`: serve one run here, telling its progress --------------------------------

class Progress:
    """Tails a run's history while this process serves it: prints each new event on stderr, and
    tells the worker to stop once the run has ended or has parked since watching began (a run
    parked by older code may well go on under this code, so older parkings do not count)."""

    def __init__(self, client: Client, run_id: str, console: Console) -> None:
        self._client = client
        self._run_id = run_id
        self._console = console
        self._t0 = client.get(run_id).created_at
        history = client.history(run_id)
        self._watch_from = history[-1].id if history else 0
        self._shown = 0
        self._parked = False
        self.steps_done = 0
        self.retries = 0
        self.waiting: list[Pending] = []
        self.live = False  # a live status line shows `waiting`: keep it current

    def poll(self) -> bool:
        """Print what happened since the last poll; True once there is nothing left to serve.
        The end is read from the run's status, not from its events, which a continue-as-new
        replaces."""
        while batch := self._client.store.read(self._new_events):
            for event, op in batch:
                self._show(event, op)
        run = self._client.get(self._run_id)
        if self.live:
            self.waiting = pending(run, self._client.operations(self._run_id))
        return run.status is not ExecutionStatus.RUNNING or self._parked

    def _show(self, event: HistoryEvent, op: Operation | None) -> None:
        if event.type == E.STEP_SUCCEEDED and op is not None and op.sub_type == "Step":
            self.steps_done += 1
        elif event.type == E.STEP_FAILED and event.details.get("retry"):
            self.retries += 1
        if event.type != E.INVOCATION_COMPLETED:
            self._console.print(_progress_line(event, describe(event, op, self._t0), self._t0))
        if event.type == E.EXECUTION_PARKED and event.id > self._watch_from:
            self._parked = True
        self._shown = event.id

    def _new_events(self, tx: Tx) -> list[tuple[HistoryEvent, Operation | None]]:
        events = tx.history(self._run_id, after=self._shown)
        return [(e, tx.get_operation(self._run_id, e.operation_id) if e.operation_id else None)
                for e in events]


class LiveStatus:
    """The line that stays under the event lines on a terminal: steps done, retries, and what
    the run waits on with a countdown. Rendered by rich's refresh thread from what the last
    poll read, so it costs no database reads of its own."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> RenderableType:
        p, now = self._progress, time.time()
        waits = ", ".join(f"{w.label}" + (f" ({_until(w.due_at, now)})" if w.due_at else "")
                          for w in p.waiting[:3])
        more = f" +{len(p.waiting) - 3}" if len(p.waiting) > 3 else ""
        self._spinner.update(text=Text(
            f"{p.steps_done} step(s) done, {p.retries} retr{'y' if p.retries == 1 else 'ies'}"
            + (f"; waiting on {waits}{more}" if waits else ""), style="bold"))
        return self._spinner


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


def _live(console: Console, status: RenderableType) -> contextlib.AbstractContextManager[Any]:
    """A live status line on a terminal; nothing when output goes to a file or a pipe."""
    if not console.is_terminal:
        return contextlib.nullcontext()
    return Live(status, console=console, transient=True, refresh_per_second=8)


async def _serve(client: Client, wf: Workflow[Any], progress: Progress) -> None:
    """Serve until the run ends or parks, or SIGINT/SIGTERM asks to stop; like `run_async`, the
    worker also knows every other imported workflow, so child runs can be served too."""
    worker = Worker([*REGISTRY.values(), wf], client.store, fire_schedules=False)
    await worker.run_async(install_signals=True, until=progress.poll)
    progress.poll()


def _conclude(run: RunInfo, as_json: bool) -> None:
    """Print how an ended run ended: the result on stdout, or the error on stderr and exit 1."""
    if as_json:
        _echo_json(outcome_json(run))
    elif run.status is ExecutionStatus.SUCCEEDED:
        click.echo(run.result if run.result is not None else "null")
    if run.status is not ExecutionStatus.SUCCEEDED:
        _error(f"run {run.run_id} ended {run.status}: {error_text(run.error)}; "
               f"`durable show {run.run_id}` has the details")
        _exit(ExitCode.FAILED)


def _not_ended(run: RunInfo, why: str, code: ExitCode) -> NoReturn:
    if run.parked is not None:
        _error(f"run {run.run_id} is parked (still RUNNING): {error_text(run.parked)}")
    else:
        _error(f"run {run.run_id} is still RUNNING: {why}")
    _exit(code)


# -- commands -------------------------------------------------------------------------------

EXIT_CODES = """\b
Exit codes:
  0    success
  1    the run ended FAILED, STOPPED or TIMED_OUT
  2    bad input (target, JSON, run or callback id, database)
  3    the run has not ended (still RUNNING, or parked)
  130  interrupted
"""


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Durable: workflows that survive crashes, deploys and month-long waits.

    TARGET is path/to/file.py:name, package.module:name, or a file or module alone (all the
    workflows defined in it).
    """


@cli.command()
@click.argument("target")
@input_option
@id_option
@db_option
@json_option
def run(target: str, input_: JsonValue | None, run_id: str | None, db: str | None,
        as_json: bool) -> None:
    """Start a run of TARGET and serve it to completion in this process.

    Progress goes to stderr, the result JSON to stdout. Ctrl-C stops serving; the run stays
    RUNNING and any `durable worker` carries it on.
    """
    wf = load_workflow(target)
    args = workflow_args(wf, input_)
    _configure_logging(worker_level=logging.WARNING)
    err = _console(stderr=True)
    with _client(db) as client:
        handle = client.start(wf, *args, id=run_id)
        err.print(Text(f"run {handle.run_id} ({wf.name})", style="bold"))
        progress = Progress(client, handle.run_id, err)
        progress.live = err.is_terminal
        with _live(err, LiveStatus(progress)):
            asyncio.run(_serve(client, wf, progress))
        final = client.get(handle.run_id)
    if final.status is ExecutionStatus.RUNNING:
        _not_ended(final, "interrupted before it ended; `durable worker` carries it on",
                   ExitCode.NOT_ENDED if final.parked is not None else ExitCode.INTERRUPTED)
    _conclude(final, as_json)


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True,
              help="Invocations running at once.")
@db_option
def worker(targets: tuple[str, ...], concurrency: int, db: str | None) -> None:
    """Serve every workflow of the TARGETs until SIGTERM or Ctrl-C, then drain and exit 0."""
    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    _configure_logging()
    w = Worker(workflows.values(), db, concurrency=concurrency)
    try:
        err = _console(stderr=True)
        err.print(f"worker serving {', '.join(workflows)} on {w.store.url} "
                  f"(concurrency {concurrency}); Ctrl-C or SIGTERM drains and stops")
        with _live(err, WorkerStatus(w)):
            w.run()
        err.print("worker stopped")
    finally:
        w.store.close()


@cli.command()
@click.argument("target")
@input_option
@id_option
@db_option
@json_option
def start(target: str, input_: JsonValue | None, run_id: str | None, db: str | None,
          as_json: bool) -> None:
    """Enqueue a run of TARGET for a worker and print its id."""
    wf = load_workflow(target)
    args = workflow_args(wf, input_)
    with _client(db) as client:
        handle = client.start(wf, *args, id=run_id)
    if as_json:
        _echo_json({"run_id": handle.run_id, "workflow": wf.name})
    else:
        click.echo(handle.run_id)


@cli.command("ls")
@click.option("--status", type=click.Choice([s.value for s in ExecutionStatus],
                                             case_sensitive=False))
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@db_option
@json_option
def ls(status: str | None, workflow: str | None, limit: int, db: str | None,
       as_json: bool) -> None:
    """List runs, newest first."""
    with _client(db) as client:
        runs = client.list(status=status, workflow=workflow, limit=limit)
    now = time.time()
    if as_json:
        _echo_json([run_json(r, now) for r in runs])
        return
    if not runs:
        _console(stderr=True).print("no runs")
        return
    _console().print(_runs_table(runs, now))


def _runs_table(runs: list[RunInfo], now: float) -> Table:
    table = _table(Column("run id", no_wrap=True), Column("workflow", min_width=8),
                   Column("status", no_wrap=True),
                   *(Column(name, justify="right", no_wrap=True)
                     for name in ("created", "elapsed", "compute")))
    for r in runs:
        table.add_row(r.run_id, r.workflow, _status_text(r), f"{duration(now - r.created_at)} ago",
                      duration(elapsed(r, now)), duration(r.compute_seconds))
    return table


@cli.command()
@click.argument("run_id")
@db_option
@json_option
def show(run_id: str, db: str | None, as_json: bool) -> None:
    """Status, input, result or error, what the run waits on, and its history as a timeline."""
    with _client(db) as client:
        view = RunView.read(client, run_id)
    if as_json:
        _echo_json(view.to_json())
    else:
        _console().print(_render(view))


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end.")
@click.option("--timeout", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Wait at most this long (implies --wait).")
@db_option
@json_option
def result(run_id: str, wait: bool, timeout: float | None, db: str | None,
           as_json: bool) -> None:
    """Print the run's result JSON. Exit 1 if it ended FAILED/STOPPED, 3 if still RUNNING."""
    with _client(db) as client:
        if wait or timeout is not None:
            try:
                run_info = client.wait(run_id, timeout)
            except TimeoutError:
                _not_ended(client.get(run_id), f"no end within {timeout}s", ExitCode.NOT_ENDED)
        else:
            run_info = client.get(run_id)
    if run_info.status is ExecutionStatus.RUNNING:
        _not_ended(run_info, "use --wait to wait for it", ExitCode.NOT_ENDED)
    _conclude(run_info, as_json)


@cli.command()
@click.argument("run_id")
@click.argument("name")
@payload_option
@db_option
def signal(run_id: str, name: str, payload: JsonValue | None, db: str | None) -> None:
    """Send signal NAME to a run; one sent before the run waits for it is kept until it does."""
    with _client(db) as client:
        client.signal(run_id, name, _payload(payload))
    click.echo(f"signal {name!r} sent to run {run_id}")


@cli.group()
def callback() -> None:
    """Resolve a callback a run waits on (`durable show` lists the callback ids)."""


@callback.command()
@click.argument("callback_id")
@payload_option
@db_option
def succeed(callback_id: str, payload: JsonValue | None, db: str | None) -> None:
    """Resolve CALLBACK_ID with a result: the --payload JSON (default null)."""
    with _client(db) as client:
        client.complete_callback(callback_id, _payload(payload))
    click.echo(f"callback {callback_id} succeeded")


@callback.command()
@click.argument("callback_id")
@click.option("--message", help="The error message.")
@click.option("--payload", metavar="JSON", callback=parse_json,
              help="The error message as JSON (a string, or any JSON value, used as text).")
@db_option
def fail(callback_id: str, message: str | None, payload: JsonValue | None,
         db: str | None) -> None:
    """Resolve CALLBACK_ID with an error: the run's wait raises CallbackFailed."""
    if message is not None and payload is not None:
        raise click.UsageError("give the error as --message or --payload, not both")
    if payload is not None:
        value = payload.value
        message = value if isinstance(value, str) else json.dumps(value)
    with _client(db) as client:
        client.fail_callback(callback_id, message or "failed from the command line")
    click.echo(f"callback {callback_id} failed")


@cli.command()
@click.argument("run_id")
@db_option
def cancel(run_id: str, db: str | None) -> None:
    """Cancel a run: `Cancelled` is raised in it at its next durable await; it ends STOPPED."""
    with _client(db) as client:
        run_info = client.cancel(run_id)
    if run_info.status is ExecutionStatus.RUNNING:
        click.echo(f"cancel requested for run {run_id}; it stops at its next durable await "
                   "once a worker serves it")
    else:
        click.echo(f"run {run_id} has already ended ({run_info.status}); nothing to cancel")


@cli.command()
@db_option
def migrate(db: str | None) -> None:
    """Bring the database's schema up to date now (every process also does it when it opens
    the database, safely when several start at once): for doing it ahead of a deploy."""
    version = store_migrate(db)
    click.echo(f"schema at version {version} on {resolve_url(db)}")


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@db_option
@json_option
def schedules(targets: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """List the scheduled workflows of the TARGETs with their next fire time."""
    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    with _client(db) as client:
        rows = client.schedules(workflows.values())
    if as_json:
        _echo_json([{"workflow": r.workflow, "cron": r.cron, "timezone": r.timezone,
                     "missed": r.missed, "next_fire": r.next_fire.isoformat(),
                     "last_tick": r.last_tick.isoformat() if r.last_tick else None,
                     "last_run_id": r.last_run_id, "registered": r.registered} for r in rows])
        return
    if not rows:
        _console(stderr=True).print("no scheduled workflows in the targets")
        return
    table = _table("workflow", "cron", "timezone", "missed", "next fire", "last tick", "last run")
    for r in rows:
        table.add_row(r.workflow, r.cron, r.timezone, r.missed, r.next_fire.isoformat(),
                      r.last_tick.isoformat() if r.last_tick else "never",
                      r.last_run_id or "")
    _console().print(table)


@cli.command()
@click.argument("target")
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID...]")
@db_option
@json_option
def replay(target: str, run_ids: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """Replay stored histories against the current code of TARGET and report every divergence.

    All runs of TARGET's workflows unless RUN_IDs are given. Nothing runs or is written.
    Exit 1 if any run diverges: the check to put in CI before a deploy.
    """
    workflows = load_workflows(target)
    with _client(db) as client:
        results = client.replay(workflows, run_ids)
    diverged = [r for r in results if r.divergence is not None]
    if as_json:
        _echo_json([{"run_id": r.run_id, "workflow": r.workflow, "status": r.status,
                     "divergence": r.divergence.message if r.divergence else None}
                    for r in results])
    else:
        out = _console()
        for r in results:
            verdict = (Text("diverges", style="bold red") if r.divergence
                       else Text("ok", style="green"))
            out.print(Text.assemble(f"{r.run_id} ({r.workflow}, {r.status}): ", verdict))
            if r.divergence:
                out.print(Text(f"  {r.divergence.message}"))
        out.print(f"{len(results)} run(s) replayed, {len(diverged)} diverge")
    if diverged:
        _exit(ExitCode.FAILED)


@cli.command()
@click.argument("run_id")
@click.option("--from-step", "from_step", required=True, metavar="NAME",
              help="The first step (name or operation id) to execute again.")
@input_option
@click.option("--id", "new_id", metavar="ID", help="Run id of the new run.")
@db_option
@json_option
def rerun(run_id: str, from_step: str, input_: JsonValue | None, new_id: str | None,
          db: str | None, as_json: bool) -> None:
    """Start a new run that reuses RUN_ID's results before --from-step and executes from it
    (with --input, under edited input). A worker serves it; the new run id is printed."""
    with _client(db) as client:
        handle = client.rerun(run_id, from_step, id=new_id,
                              input_json=None if input_ is None else json.dumps(input_.value))
    if as_json:
        _echo_json({"run_id": handle.run_id, "rerun_of": run_id, "from_step": from_step})
    else:
        click.echo(handle.run_id)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8777, show_default=True)
@click.option("--worker", "targets", multiple=True, metavar="TARGET",
              help="Load and serve these workflows here too (repeatable): their input is "
                   "checked on start and their webhooks are exposed.")
@click.option("--token", envvar="DURABLE_TOKEN", metavar="T",
              help="Require this token on every API call and UI page [default: $DURABLE_TOKEN].")
@click.option("--insecure", is_flag=True,
              help="Allow binding beyond loopback without a token.")
@db_option
def server(host: str, port: int, targets: tuple[str, ...], token: str | None, insecure: bool,
           db: str | None) -> None:
    """HTTP control API (OpenAPI at /openapi.json), webhooks and the web UI, in one process."""
    from durable.server.serve import serve

    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    serve(host, port, list(workflows.values()), db, token or None, insecure,
          _console(stderr=True))



# -- functions: what `durable server` invokes over HTTP (serverless mode) ------------------------

@cli.group()
def functions() -> None:
    """Register the functions `durable server` invokes when their runs have work."""


@functions.command("add")
@click.argument("name")
@click.option("--url", metavar="URL", help="HTTP endpoint taking the invocation envelope (a "
              "durable.serve app, or a Lambda Invoke-shaped URL .../2015-03-31/functions/NAME/"
              "invocations).")
@click.option("--handler", metavar="MODULE:FN", help="In-process: a @workflow, or a Lambda "
              "handler(event, context) such as one written with AWS's SDK.")
@click.option("--execution-timeout", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="End runs TIMED_OUT after this long.")
@db_option
def functions_add(name: str, url: str | None, handler: str | None,
                  execution_timeout: float | None, db: str | None) -> None:
    """Register function NAME (or replace it); a running server picks it up at once.

    Start runs of it with AWS's Invoke API (`aws lambda invoke --function-name NAME`, or
    boto3 with AWS_ENDPOINT_URL_LAMBDA pointing at the server) or `durable start`."""
    from durable.invoke.push import FunctionSpec, register

    spec = FunctionSpec(name, url, handler, execution_timeout)
    with _client(db) as client:
        register(client.store, spec)
    click.echo(f"function {name} -> {url or handler}")


@functions.command("ls")
@db_option
@json_option
def functions_ls(db: str | None, as_json: bool) -> None:
    """List the registered functions."""
    from durable.invoke.push import registered

    with _client(db) as client:
        specs = registered(client.store)
    if as_json:
        _echo_json([{"name": f.name, "url": f.url, "handler": f.handler,
                     "execution_timeout": f.execution_timeout} for f in specs])
        return
    for f in specs:
        timeout = f" (timeout {f.execution_timeout:g}s)" if f.execution_timeout else ""
        click.echo(f"{f.name}\t{f.url or f.handler}{timeout}")


@functions.command("rm")
@click.argument("name")
@db_option
def functions_rm(name: str, db: str | None) -> None:
    """Unregister function NAME; its runs wait until it is registered again."""
    with _client(db) as client:
        found = client.store.write_sync(lambda tx: tx.delete_function(name))
    if not found:
        raise UsageError(f"no function {name!r}; `durable functions ls` lists them")
    click.echo(f"removed function {name}")


if __name__ == "__main__":
    sys.exit(main())
