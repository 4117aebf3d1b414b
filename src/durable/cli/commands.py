"""The commands of `durable`, one function each, in the order `durable --help` lists them."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import datetime
from typing import Any

import click

from durable.cli import logsetup
from durable.cli.bulk import bulk
from durable.cli.deploy import deploy
from durable.cli.events import events, publish
from durable.cli.exits import ExitCode, error, exit_with
from durable.cli.kv import kv
from durable.cli.metrics import serve_metrics
from durable.cli.operate import edit, pause, resume
from durable.cli.options import (
    Moment,
    Seconds,
    db_option,
    existing_option,
    id_option,
    input_option,
    json_option,
    open_client,
    parse_json,
    parse_size,
    payload_option,
    payload_value,
    retention_option,
    run_filter_options,
)
from durable.cli.render import (
    LiveStatus,
    Progress,
    Text,
    WorkerStatus,
    conclude,
    echo_done,
    echo_json,
    live_line,
    make_console,
    not_ended,
    operation_value,
    plain_table,
    printable,
    render_logs,
    render_run,
    runs_table,
)
from durable.cli.streams import stream
from durable.cli.targets import load_workflow, load_workflows
from durable.client import PAGE_LIMIT, Client
from durable.engine.worker import Worker
from durable.errors import UsageError, requires_extra
from durable.model import ENDED, ChildPolicy
from durable.model.attributes import parse_assignment
from durable.model.listing import run_filter
from durable.model.queues import PRIORITY_MAX
from durable.model.schedule import ScheduleInfo
from durable.sdk.workflow import REGISTRY, Workflow
from durable.store import diagnose, resolve_url
from durable.store import migrate as store_migrate
from durable.views.jsonio import (
    JsonValue,
    RunView,
    listed_json,
    log_json,
    run_json,
    schedule_json,
    workflow_args,
)


async def _serve(client: Client, wf: Workflow[..., Any], progress: Progress) -> None:
    """Serve until the run ends or parks, or SIGINT/SIGTERM asks to stop; like `run_async`, the
    worker also knows every other imported workflow, so child runs can be served too."""
    worker = Worker([*REGISTRY.values(), wf], client.store, fire_schedules=False,
                    clock=client.clock)
    await worker.run_async(install_signals=True, until=progress.poll)
    progress.poll()



# -- commands -------------------------------------------------------------------------------

LEASE_RANGE = (1.0, 86_400.0)
"""`durable worker --lease`, in seconds: renewals every third of a second or less would cost more
than they save; a day is longer than anyone means to wait for a frozen worker's runs."""

EXIT_CODES = """\b
Exit codes:
  0    success
  1    the run ended FAILED, STOPPED or TIMED_OUT
  2    bad input (target, JSON, run or callback id, database)
  3    the run has not ended (still RUNNING, or parked)
  130  interrupted
"""


@click.group(epilog=EXIT_CODES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="durable-serverless", prog_name="durable")
def cli() -> None:
    """Durable: workflows that survive crashes, deploys and month-long waits.

    TARGET is path/to/file.py:name, package.module:name, or a file or module alone (all the
    workflows defined in it).
    """


events_option = click.option(
    "--events", is_flag=True,
    help="Print every history event on stderr as it happens, not only the summary.")


@cli.command()
@click.argument("target")
@input_option
@id_option
@existing_option
@db_option
@json_option
@events_option
@logsetup.logging_options
def run(target: str, input_: JsonValue | None, run_id: str | None, existing: bool,
        db: str | None, as_json: bool, events: bool, log_level: str, log_format: str) -> None:
    """Start a run of TARGET and serve it to completion in this process.

    A summary of its progress goes to stderr (kept current on a terminal), the result JSON to
    stdout. Ctrl-C stops serving; the run stays RUNNING and any `durable worker` carries it on.
    """
    wf = load_workflow(target)
    args = workflow_args(wf, input_)
    logsetup.configure(log_level, log_format, quiet=("durable.worker",))
    err = make_console(stderr=True)
    with open_client(db) as client:
        handle = client.start(wf, *args, id=run_id, existing=existing)
        err.print(Text(f"run {handle.run_id} ({wf.name})", style="bold"))
        progress = Progress(client, handle.run_id, err, events=events)
        progress.live = err.is_terminal
        with live_line(err, LiveStatus(progress)):
            asyncio.run(_serve(client, wf, progress))
        progress.finish()
        final = client.get(handle.run_id)
    if final.status.live:
        not_ended(final, "interrupted before it ended; `durable worker` carries it on",
                   ExitCode.NOT_ENDED if final.parked is not None else ExitCode.INTERRUPTED)
    conclude(final, as_json)


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("--concurrency", type=click.IntRange(min=1), default=100, show_default=True,
              help="Invocations running at once.")
@click.option("--lease", "lease", type=Seconds(LEASE_RANGE[0], LEASE_RANGE[1]),
              default=30.0, show_default=True, metavar="SECONDS",
              help="How long a run stays this worker's without a renewal (renewed every third "
                   "of it): how soon a worker frozen or cut off from the database loses its "
                   "runs to the others. One whose process dies loses them at once on "
                   "PostgreSQL, on SQLite when a worker of its host starts.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Serve Prometheus metrics on this port (GET /metrics) [default: none].")
@click.option("--metrics-host", default="127.0.0.1", show_default=True,
              help="Address the metrics port binds.")
@retention_option
@db_option
@json_option
@logsetup.logging_options
def worker(targets: tuple[str, ...], concurrency: int, lease: float, metrics_port: int | None,
           metrics_host: str, retention: float | None, db: str | None, as_json: bool,
           log_level: str, log_format: str) -> None:
    """Serve every workflow of the TARGETs until SIGTERM or Ctrl-C, then drain and exit 0.

    With --json, logs are JSON lines (as --log-format json) and, once stopped, what the worker
    did is one JSON object on stdout."""
    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    logsetup.configure(log_level, "json" if as_json else log_format)
    w = Worker(workflows.values(), db, concurrency=concurrency, retention=retention,
               lease_seconds=lease)
    try:
        if metrics_port is not None:
            serve_metrics(Client(w.store), w.queues, metrics_host, metrics_port)
        err = make_console(stderr=True)
        err.print(f"worker serving {', '.join(workflows)} on {w.store.url} "
                  f"(concurrency {concurrency}, lease {lease:g}s); Ctrl-C or SIGTERM drains "
                  "and stops")
        with live_line(err, WorkerStatus(w)):
            w.run()
        err.print("worker stopped")
    finally:
        w.store.close()
    if as_json:
        echo_json({"worker": w.owner, "workflows": w.names, "stopped": True,
                   **dataclasses.asdict(w.stats)})


@cli.command()
@click.argument("target")
@input_option
@id_option
@click.option("--attr", "attrs", multiple=True, metavar="KEY=VALUE",
              help="A searchable attribute of the run (repeat for more): a number or an ISO "
                   "time where the value reads as one, else text; quote it (\"3\") for text.")
@existing_option
@click.option("--priority", type=click.IntRange(-PRIORITY_MAX - 1, PRIORITY_MAX), metavar="N",
              help="On a queue: higher is admitted first (default 0).")
@click.option("--dedup-id", "dedup_id", metavar="ID",
              help="On a queue: while a run with this dedup id is live, print its id instead "
                   "of starting another.")
@db_option
@json_option
def start(target: str, input_: JsonValue | None, run_id: str | None, attrs: tuple[str, ...],
          existing: bool, priority: int | None, dedup_id: str | None,
          db: str | None, as_json: bool) -> None:
    """Enqueue a run of TARGET for a worker and print its id."""
    wf = load_workflow(target)
    args = workflow_args(wf, input_)
    attributes = dict(parse_assignment(a) for a in attrs)
    with open_client(db) as client:
        handle = client.start(wf, *args, id=run_id, attributes=attributes,
                              existing=existing, priority=priority, dedup_id=dedup_id)
    if as_json:
        echo_json({"run_id": handle.run_id, "workflow": wf.name})
    else:
        click.echo(handle.run_id)


@cli.command("ls")
@run_filter_options
@click.option("--limit", type=click.IntRange(1, PAGE_LIMIT), default=50, show_default=True)
@click.option("--cursor", metavar="CURSOR",
              help="Start after the page that printed this cursor (next_cursor in --json).")
@db_option
@json_option
def ls(status: str | None, workflow: str | None, where: str | None, since: str | None,
       until: str | None, parent: str | None, roots: bool, limit: int, cursor: str | None,
       db: str | None, as_json: bool) -> None:
    """List runs, newest first, a page at a time."""
    with open_client(db) as client:
        now = client.clock()
        chosen = run_filter(status=status, workflow=workflow, where=where, since=since,
                            until=until, parent=parent, roots=roots, now=now)
        page = client.runs(chosen, limit, cursor)
    if as_json:
        echo_json({"runs": [listed_json(r, page, now) for r in page.runs],
                   "next_cursor": page.next_cursor})
        return
    err = make_console(stderr=True)
    if not page.runs:
        err.print("no runs")
        return
    make_console().print(runs_table(page.runs, now))
    if page.next_cursor is not None:
        err.print(f"more: durable ls --cursor {page.next_cursor} (with the same filters)")


@cli.command()
@click.argument("run_id")
@click.option("--logs", "logs", is_flag=True,
              help="Print only what the workflow logged through ctx.logger, kept with the run.")
@click.option("--follow", is_flag=True,
              help="First follow the run until it ends or parks, its summary on stderr.")
@click.option("--input", "input_of", metavar="OP_ID",
              help="Print only this operation's whole input, as stored (views cut long ones).")
@click.option("--output", "output_of", metavar="OP_ID",
              help="Print only this operation's whole output, as stored.")
@events_option
@db_option
@json_option
def show(run_id: str, logs: bool, follow: bool, events: bool, db: str | None,
         as_json: bool, input_of: str | None, output_of: str | None) -> None:
    """Status, input, result or error, what the run waits on, each operation's input and
    output, and its history as a timeline."""
    if logs:
        _show_logs(run_id, db, as_json)
        return
    if input_of is not None or output_of is not None:
        with open_client(db) as client:
            click.echo(operation_value(client, run_id, input_of, output_of))
        return
    with open_client(db) as client:
        if follow:
            _follow(client, run_id, events)
        view = RunView.read(client, run_id)
    if as_json:
        echo_json(view.to_json())
    else:
        make_console().print(render_run(view))


FOLLOW_PAUSE = 0.5
"""Longest wait between two reads while following: a commit to the run wakes it sooner."""


def _follow(client: Client, run_id: str, events: bool) -> None:
    err = make_console(stderr=True)
    progress = Progress(client, run_id, err, events=events)
    progress.live = err.is_terminal
    with live_line(err, LiveStatus(progress)):
        while not progress.poll():
            client.wait_ended(run_id, FOLLOW_PAUSE)
    progress.finish()


def _show_logs(run_id: str, db: str | None, as_json: bool) -> None:
    with open_client(db) as client:
        t0 = client.get(run_id).created_at
        lines = client.logs(run_id)
        ops = {op.id: op for op in client.operations(run_id)}
    if as_json:
        echo_json([log_json(n, line, t0) for n, line in lines])
    elif not lines:
        make_console(stderr=True).print("no log lines kept for this run")
    else:
        make_console().print(render_logs(lines, t0, ops))


@cli.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to end.")
@click.option("--timeout", type=Seconds(min=0), metavar="SECONDS",
              help="Wait at most this long (implies --wait).")
@db_option
@json_option
def result(run_id: str, wait: bool, timeout: float | None, db: str | None,
           as_json: bool) -> None:
    """Print the run's result JSON. Exit 1 if it ended FAILED/STOPPED, 3 if still RUNNING."""
    with open_client(db) as client:
        if wait or timeout is not None:
            try:
                run_info = client.wait(run_id, timeout)
            except TimeoutError:
                not_ended(client.get(run_id), f"no end within {timeout}s", ExitCode.NOT_ENDED)
        else:
            run_info = client.get(run_id)
    if run_info.status.live:
        not_ended(run_info, "use --wait to wait for it", ExitCode.NOT_ENDED)
    conclude(run_info, as_json)


@cli.command()
@click.argument("run_id")
@click.argument("name")
@payload_option
@db_option
@json_option
def signal(run_id: str, name: str, payload: JsonValue | None, db: str | None,
           as_json: bool) -> None:
    """Send signal NAME to a run; one sent before the run waits for it is kept until it does."""
    with open_client(db) as client:
        client.signal(run_id, name, payload_value(payload))
    echo_done(as_json, {"run_id": run_id, "signal": name, "sent": True},
              f"signal {name!r} sent to run {run_id}")


@cli.group()
def callback() -> None:
    """Resolve a callback a run waits on (`durable show` lists the callback ids)."""


@callback.command()
@click.argument("callback_id")
@payload_option
@db_option
@json_option
def succeed(callback_id: str, payload: JsonValue | None, db: str | None, as_json: bool) -> None:
    """Resolve CALLBACK_ID with a result: the --payload JSON (default null)."""
    with open_client(db) as client:
        client.complete_callback(callback_id, payload_value(payload))
    echo_done(as_json, {"callback_id": callback_id, "outcome": "succeeded"},
              f"callback {callback_id} succeeded")


@callback.command()
@click.argument("callback_id")
@db_option
@json_option
def heartbeat(callback_id: str, db: str | None, as_json: bool) -> None:
    """Say CALLBACK_ID's work goes on: its heartbeat timeout starts afresh."""
    with open_client(db) as client:
        client.heartbeat_callback(callback_id)
    echo_done(as_json, {"callback_id": callback_id, "heartbeat": True},
              f"heartbeat recorded for callback {callback_id}")


@callback.command()
@click.argument("callback_id")
@click.option("--message", help="The error message.")
@click.option("--payload", metavar="JSON", callback=parse_json,
              help="The error message as JSON (a string, or any JSON value, used as text).")
@db_option
@json_option
def fail(callback_id: str, message: str | None, payload: JsonValue | None,
         db: str | None, as_json: bool) -> None:
    """Resolve CALLBACK_ID with an error: the run's wait raises CallbackFailed."""
    if message is not None and payload is not None:
        raise click.UsageError("give the error as --message or --payload, not both")
    if payload is not None:
        value = payload.value
        message = value if isinstance(value, str) else json.dumps(value)
    with open_client(db) as client:
        client.fail_callback(callback_id, message or "failed from the command line")
    echo_done(as_json, {"callback_id": callback_id, "outcome": "failed"},
              f"callback {callback_id} failed")


@cli.command()
@click.argument("run_id")
@db_option
@json_option
def cancel(run_id: str, db: str | None, as_json: bool) -> None:
    """Cancel a run: `Cancelled` is raised in it at its next durable await; it ends STOPPED."""
    with open_client(db) as client:
        run_info = client.cancel(run_id)
        now = client.clock()
    if run_info.status.live:
        text = (f"cancel requested for run {run_id}; it stops at its next durable await "
                "once a worker serves it")
    else:
        text = f"run {run_id} has already ended ({run_info.status}); nothing to cancel"
    echo_done(as_json, run_json(run_info, now), text)


@cli.command()
@click.argument("run_id")
@click.option("--children", type=click.Choice([p.value for p in ChildPolicy]),
              default=ChildPolicy.TERMINATE.value, show_default=True,
              help="What becomes of the run's running child runs: terminated too, cancelled "
                   "(their handlers run), or abandoned (they run on by themselves).")
@click.option("--reason", metavar="TEXT", help="Why: the error the run ends with.")
@db_option
@json_option
def terminate(run_id: str, children: str, reason: str | None, db: str | None,
              as_json: bool) -> None:
    """End a run STOPPED now, without running its cancellation handlers or compensations
    (unlike `cancel`). An invocation in flight is fenced out: whatever it checkpoints after
    this is refused."""
    with open_client(db) as client:
        before = client.get(run_id)
        client.terminate(run_id, reason, ChildPolicy(children))
        run_info = client.get(run_id)
        now = client.clock()
    terminated = before.status not in ENDED
    if terminated:
        text = f"run {run_id} terminated (STOPPED); its running children: {children}"
    else:
        text = f"run {run_id} had already ended ({run_info.status}); nothing to terminate"
    echo_done(as_json, {**run_json(run_info, now), "terminated": terminated}, text)


@cli.command()
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@db_option
@json_option
def delete(run_ids: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """Delete ended runs with their operations, history, signals, published events and logs.

    A run still running is refused (exit 2): terminate it first. Child runs are runs of their
    own and stay. Each run is deleted in its own transaction, in the order given."""
    with open_client(db) as client:
        for run_id in run_ids:
            client.delete(run_id)
            if not as_json:
                click.echo(f"deleted run {run_id}")
    if as_json:
        echo_json({"deleted": list(run_ids)})


@cli.command()
@click.option("--ended-before", "ended_before", required=True, metavar="WHEN", type=Moment(),
              help="Delete runs that ended before WHEN: an ISO 8601 time with its zone "
                   "(2026-01-31T12:00Z), a date (2026-01-31, midnight UTC) or a span before "
                   "now (30d: thirty days ago; s, m, h, d, w).")
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Runs deleted per transaction: running work waits at most one batch.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Delete at most N runs [default: every one that matches].")
@db_option
@json_option
def purge(ended_before: float, workflow: str | None, batch: int, limit: int | None,
          db: str | None, as_json: bool) -> None:
    """Delete ended runs in batches, oldest first, while workflows keep running: what
    `--retention` on a worker or server does by itself."""
    with open_client(db) as client:
        deleted = client.purge(ended_before, workflow=workflow, batch=batch, limit=limit)
    echo_done(as_json, {"deleted": deleted, "ended_before": ended_before,
                        "workflow": workflow},
              f"deleted {deleted} run(s) that ended before "
              f"{datetime.fromtimestamp(ended_before).isoformat(timespec='seconds')}")


@cli.command()
@db_option
@json_option
def migrate(db: str | None, as_json: bool) -> None:
    """Bring the database's schema up to date now (every process also does it when it opens
    the database, safely when several start at once): for doing it ahead of a deploy."""
    version = store_migrate(db)
    echo_done(as_json, {"schema_version": version},
              f"schema at version {version} on {resolve_url(db)}")


@cli.command()
@db_option
@json_option
def doctor(db: str | None, as_json: bool) -> None:
    """Check the database's integrity, schema version and setup, writing nothing.

    On SQLite: size, header, journal mode, schema version, every page (quick_check) and the
    wake-up directory; on PostgreSQL: the connection and the schema version. Never waits for
    the write lock. Exit 2 if anything is wrong.

    Damage found here, or by any process, stops every process from writing to the file until
    this check finds it sound again (after a restore, say)."""
    findings = diagnose(db)
    problems = [f.name for f in findings if not f.ok]
    if as_json:
        echo_json({"ok": not problems, "findings": [
            {"check": f.name, "ok": f.ok, "detail": f.detail} for f in findings]})
    else:
        table = plain_table("check", "finding")
        for f in findings:
            table.add_row(f.name, f.detail if f.ok else f"PROBLEM: {f.detail}")
        make_console().print(table)
    if problems:
        error(f"the database has problems ({', '.join(problems)}): see above")
        exit_with(ExitCode.USAGE)


class _ListsByDefault(click.Group):
    """A group whose arguments, when they name none of its commands, are those of `ls`: so
    `durable schedules TARGET...` lists as it always did."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["ls", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_ListsByDefault)
def schedules() -> None:
    """List, pause, resume, trigger, backfill, create and delete schedules.

    `durable schedules [TARGET...]` is `durable schedules ls [TARGET...]`."""


@schedules.command("ls")
@click.argument("targets", nargs=-1, metavar="[TARGET...]")
@db_option
@json_option
def schedules_ls(targets: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """List the scheduled workflows of the TARGETs with their next fire time; without TARGET,
    every schedule in the database (declared in code once a worker served it, or created)."""
    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    with open_client(db) as client:
        rows = client.schedules(workflows.values() if targets else None)
    if as_json:
        echo_json([schedule_json(r) for r in rows])
        return
    if not rows:
        make_console(stderr=True).print("no scheduled workflows in the targets" if targets
                                        else "no schedules in this database")
        return
    table = plain_table("workflow", "cron", "timezone", "missed", "next fire", "last tick",
                        "last run", "state")
    for r in rows:
        table.add_row(r.workflow, r.cron, r.timezone, r.missed, r.next_fire.isoformat(),
                      r.last_tick.isoformat() if r.last_tick else "never",
                      r.last_run_id or "", _schedule_state(r))
    make_console().print(table)


def _schedule_state(info: ScheduleInfo) -> str:
    state = "paused" if info.paused else "active" if info.registered else "not served yet"
    return f"{state} ({info.source})" if info.registered else state


def _echo_schedule(info: ScheduleInfo, did: str, as_json: bool) -> None:
    if as_json:
        echo_json(schedule_json(info))
    else:
        click.echo(f"schedule of {info.workflow} {did}: {info.cron} ({info.timezone}), "
                   f"{_schedule_state(info)}, next tick {info.next_fire.isoformat()}")


@schedules.command("pause")
@click.argument("workflow")
@db_option
@json_option
def schedules_pause(workflow: str, db: str | None, as_json: bool) -> None:
    """Stop WORKFLOW's schedule firing; ticks while paused never run (backfill them)."""
    with open_client(db) as client:
        _echo_schedule(client.pause_schedule(workflow), "paused", as_json)


@schedules.command("resume")
@click.argument("workflow")
@db_option
@json_option
def schedules_resume(workflow: str, db: str | None, as_json: bool) -> None:
    """Fire WORKFLOW's schedule again, from its next tick."""
    with open_client(db) as client:
        _echo_schedule(client.resume_schedule(workflow), "resumed", as_json)


@schedules.command("create")
@click.argument("workflow")
@click.argument("cron")
@click.option("--timezone", default="UTC", show_default=True, help="IANA time zone of CRON.")
@click.option("--missed", type=click.Choice(["skip", "run_once"]), default="skip",
              show_default=True, help="Ticks missed while no worker ran: skip, or run once.")
@db_option
@json_option
def schedules_create(workflow: str, cron: str, timezone: str, missed: str, db: str | None,
                     as_json: bool) -> None:
    """Schedule WORKFLOW (by name) on CRON; a worker serving it fires it within seconds."""
    with open_client(db) as client:
        _echo_schedule(client.create_schedule(workflow, cron, timezone, missed), "created",
                       as_json)


@schedules.command("delete")
@click.argument("workflow")
@db_option
@json_option
def schedules_delete(workflow: str, db: str | None, as_json: bool) -> None:
    """Delete WORKFLOW's schedule made by `durable schedules create`."""
    with open_client(db) as client:
        _echo_schedule(client.delete_schedule(workflow), "deleted", as_json)


@schedules.command("trigger")
@click.argument("workflow")
@db_option
@json_option
def schedules_trigger(workflow: str, db: str | None, as_json: bool) -> None:
    """Start a run of WORKFLOW's schedule now, as if a tick fell now; print its id."""
    with open_client(db) as client:
        run = client.trigger_schedule(workflow)
    if as_json:
        echo_json({"run_id": run.run_id, "workflow": run.workflow})
    else:
        click.echo(run.run_id)


@schedules.command("backfill")
@click.argument("workflow")
@click.option("--from", "start", type=Moment(), required=True, metavar="TIME",
              help="First tick time to fill: an ISO 8601 time with its zone, a date, or a span "
                   "before now (2h).")
@click.option("--to", "end", type=Moment(), required=True, metavar="TIME",
              help="Last tick time to fill, in the past.")
@db_option
@json_option
def schedules_backfill(workflow: str, start: float, end: float, db: str | None,
                       as_json: bool) -> None:
    """Start the run of every tick of WORKFLOW's schedule from --from to --to that has none
    (under the ids the schedule gives its ticks: never a tick twice); print their ids."""
    with open_client(db) as client:
        runs = client.backfill_schedule(workflow, start, end)
    if as_json:
        echo_json([{"run_id": run.run_id, "created": created} for run, created in runs])
        return
    for run, created in runs:
        click.echo(f"{run.run_id}{'' if created else '  (had a run already)'}")
    make_console(stderr=True).print(f"{sum(c for _, c in runs)} run(s) started for "
                                    f"{len(runs)} tick(s)")


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
    with open_client(db) as client:
        results = client.replay(workflows, run_ids)
    diverged = [r for r in results if r.divergence is not None]
    if as_json:
        echo_json([{"run_id": r.run_id, "workflow": r.workflow, "status": r.status,
                     "divergence": r.divergence.message if r.divergence else None}
                    for r in results])
    else:
        out = make_console()
        for r in results:
            verdict = (Text("diverges", style="bold red") if r.divergence
                       else Text("ok", style="green"))
            out.print(Text.assemble(printable(f"{r.run_id} ({r.workflow}, {r.status}): "),
                                    verdict))
            if r.divergence:
                out.print(Text(f"  {printable(r.divergence.message, lines=True)}"))
        out.print(f"{len(results)} run(s) replayed, {len(diverged)} diverge")
    if diverged:
        exit_with(ExitCode.FAILED)


@cli.command()
@click.argument("run_id")
@click.option("--from-step", "from_step", required=True, metavar="NAME",
              help="The first step (name or operation id) to execute again.")
@input_option
@click.option("--patch", "patch", metavar="JSON", callback=parse_json,
              help='A JSON merge patch (RFC 7386) of the recorded input, e.g. \'{"qty": 2}\' '
                   "to change that field and keep the others; null removes a field.")
@click.option("--id", "new_id", metavar="ID", help="Run id of the new run (refused if taken).")
@db_option
@json_option
def rerun(run_id: str, from_step: str, input_: JsonValue | None, patch: JsonValue | None,
          new_id: str | None, db: str | None, as_json: bool) -> None:
    """Start a new run that reuses RUN_ID's results before --from-step and executes from it:
    under the recorded input, that input edited by --patch, or the whole new --input. A worker
    serves it; the new run id is printed."""
    if input_ is not None and patch is not None:
        raise click.UsageError("give the whole new input as --input or edit the recorded one "
                               "with --patch, not both")
    with open_client(db) as client:
        handle = client.rerun(run_id, from_step, id=new_id,
                              input_json=None if input_ is None else json.dumps(input_.value),
                              patch=None if patch is None else patch.value)
    if as_json:
        echo_json({"run_id": handle.run_id, "rerun_of": run_id, "from_step": from_step})
    else:
        click.echo(handle.run_id)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8777, show_default=True)
@click.option("--worker", "targets", multiple=True, metavar="TARGET",
              help="Load and serve these workflows here too (repeatable): their input is "
                   "checked on start and their webhooks are exposed.")
@click.option("--token", envvar="DURABLE_TOKEN", metavar="T",
              help="Require this token (16+ characters) on every API call and UI page "
                   "[default: $DURABLE_TOKEN].")
@click.option("--insecure", is_flag=True,
              help="Allow binding beyond loopback without a token.")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              envvar="DURABLE_ALLOWED_HOSTS",
              help="A name this server is reached by (repeatable; `*`: any, e.g. behind a "
                   "proxy that checks it); IP addresses, localhost and the --host name are "
                   "always allowed [default: $DURABLE_ALLOWED_HOSTS, space-separated].")
@click.option("--max-body", metavar="SIZE", envvar="DURABLE_MAX_BODY", default="1MiB",
              show_default=True, callback=parse_size,
              help="The largest request body the API and webhooks take, e.g. 256KiB or 8MiB "
                   "[env: DURABLE_MAX_BODY].")
@click.option("--public-url", metavar="URL", envvar="DURABLE_PUBLIC_URL",
              help="Where registered functions reach this server to checkpoint, when not at "
                   "the address it binds (a proxy, another host) [default: http://HOST:PORT; "
                   "env: DURABLE_PUBLIC_URL].")
@retention_option
@db_option
@json_option
@logsetup.logging_options
def server(host: str, port: int, targets: tuple[str, ...], token: str | None, insecure: bool,
           allowed_hosts: tuple[str, ...], max_body: int, public_url: str | None,
           retention: float | None, db: str | None, as_json: bool, log_level: str,
           log_format: str) -> None:
    """HTTP control API (OpenAPI at /openapi.json), webhooks and the web UI, in one process.

    With --json, logs are JSON lines (as --log-format json) and, once stopped, one JSON object
    on stdout says so."""
    with requires_extra("server", "durable server"):
        from durable.server.serve import serve

    logsetup.configure(log_level, "json" if as_json else log_format)
    workflows = {wf.name: wf for target in targets for wf in load_workflows(target)}
    serve(host, port, list(workflows.values()), db, token or None, insecure,
          make_console(stderr=True), allowed_hosts=allowed_hosts, max_body=max_body,
          public=public_url or None, retention=retention)
    if as_json:
        echo_json({"server": f"{host}:{port}", "workflows": list(workflows), "stopped": True})



# -- functions: what `durable server` invokes over HTTP or Lambda (serverless mode) --------------

@cli.group()
def functions() -> None:
    """Register the functions `durable server` invokes when their runs have work."""
    with requires_extra("server", "durable functions"):  # what the server invokes them with
        import durable.invoke.push  # noqa: F401


@functions.command("add")
@click.argument("name")
@click.option("--url", metavar="URL", help="HTTP endpoint taking the invocation envelope (a "
              "durable.serve app, or a Lambda Invoke-shaped URL .../2015-03-31/functions/NAME/"
              "invocations).")
@click.option("--handler", metavar="MODULE:FN", help="In-process: a @workflow, or a Lambda "
              "handler(event, context) such as one written with AWS's SDK.")
@click.option("--node", "node_handler", metavar="FILE[:EXPORT]", help="A JavaScript handler "
              "(e.g. written with AWS's @aws/durable-execution-sdk-js), hosted by the server "
              "with this machine's node; EXPORT defaults to `handler`.")
@click.option("--lambda", "lambda_function", metavar="FUNCTION_NAME_OR_ARN",
              help="An AWS Lambda function, invoked through Lambda's Invoke API with the "
                   "standard AWS credentials (needs durable-serverless[aws]).")
@click.option("--qualifier", metavar="Q", help="With --lambda: the version or alias to invoke.")
@click.option("--region", metavar="R", help="With --lambda: the function's AWS region "
              "[default: the ARN's, else AWS_DEFAULT_REGION or the AWS config's].")
@click.option("--execution-timeout", type=Seconds(min=0, min_open=True),
              metavar="SECONDS", help="End runs TIMED_OUT after this long.")
@click.option("--retry-deadline", type=click.FloatRange(min=0, min_open=True),
              metavar="SECONDS", help="Park a run (RUNNING, the error shown) once invoking the "
              "function has failed for this long [default: retry without limit].")
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
              help="At most N invocations of the function in flight per server "
                   "[default: no limit].")
@db_option
@json_option
def functions_add(name: str, url: str | None, handler: str | None, node_handler: str | None,
                  lambda_function: str | None, qualifier: str | None, region: str | None,
                  execution_timeout: float | None, retry_deadline: float | None,
                  concurrency: int | None, db: str | None, as_json: bool) -> None:
    """Register function NAME (or replace it); a running server picks it up at once.

    Start runs of it with AWS's Invoke API (`aws lambda invoke --function-name NAME`, or
    boto3 with AWS_ENDPOINT_URL_LAMBDA pointing at the server) or `durable start`. A --handler
    is imported here first, as the server will import it (from the working directory too), and
    a --lambda needs boto3 and a region here too, so a registration that cannot work is refused
    now rather than logged by the server later; a --node file is loaded here with node too.
    A Lambda function checkpoints to the server its own AWS_ENDPOINT_URL_LAMBDA names."""
    from durable.invoke import node
    from durable.invoke.push import FunctionSpec, check, register

    spec = FunctionSpec(name, url, handler, execution_timeout, retry_deadline, concurrency,
                        lambda_function, qualifier, region,
                        node=None if node_handler is None else node.resolve(node_handler))
    with open_client(db) as client:
        check(spec, client.store, client.clock)
        register(client.store, spec)
    echo_done(as_json, dataclasses.asdict(spec), f"function {name} -> {spec.invokes()}")


@functions.command("ls")
@db_option
@json_option
def functions_ls(db: str | None, as_json: bool) -> None:
    """List the registered functions."""
    from durable.invoke.push import registered

    with open_client(db) as client:
        specs = registered(client.store)
    if as_json:
        echo_json([dataclasses.asdict(f) for f in specs])
        return
    for f in specs:
        limits = [f"timeout {f.execution_timeout:g}s" if f.execution_timeout else "",
                  f"retry deadline {f.retry_deadline:g}s" if f.retry_deadline else "",
                  f"concurrency {f.concurrency}" if f.concurrency else ""]
        shown = ", ".join(filter(None, limits))
        click.echo(f"{f.name}\t{f.invokes()}{f' ({shown})' if shown else ''}")


@functions.command("rm")
@click.argument("name")
@db_option
@json_option
def functions_rm(name: str, db: str | None, as_json: bool) -> None:
    """Unregister function NAME; its runs wait until it is registered again."""
    from durable.invoke.push import unregister

    with open_client(db) as client:
        found = unregister(client.store, name)
    if not found:
        raise UsageError(f"no function {name!r}; `durable functions ls` lists them")
    echo_done(as_json, {"removed": name}, f"removed function {name}")


for _command in (deploy, bulk, pause, resume, edit, stream, kv, publish, events):
    cli.add_command(_command)
