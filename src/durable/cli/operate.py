"""`durable pause`, `durable resume` and `durable edit`: operating a run in place.

A run is paused, its steps' recorded outcomes edited, and resumed: the same run goes on, its
replay seeing the edited values. The history records each change as made by "cli".
"""

from __future__ import annotations

import click

from durable.cli.options import db_option, json_option, open_client, parse_json
from durable.cli.render import echo_json
from durable.model import ErrorObject, RunInfo
from durable.views.jsonio import JsonValue, operation_json, run_json

BY = "cli"
"""Who the history says made a change from the command line."""


def _said(run: RunInfo, as_json: bool, now: float, message: str) -> None:
    if as_json:
        echo_json(run_json(run, now))
    else:
        click.echo(message)


@click.command()
@click.argument("run_id")
@db_option
@json_option
def pause(run_id: str, db: str | None, as_json: bool) -> None:
    """Pause RUN_ID: a step in flight finishes and is checkpointed, then the run holds at its
    next durable await (PAUSED) until `durable resume`; timers, retries, signals and callbacks
    that fall due meanwhile take effect on resume."""
    with open_client(db) as client:
        run = client.pause(run_id, by=BY)
        _said(run, as_json, client.clock(), f"run {run_id} is PAUSED; `durable resume "
              f"{run_id}` runs it on")


@click.command()
@click.argument("run_id")
@db_option
@json_option
def resume(run_id: str, db: str | None, as_json: bool) -> None:
    """Resume RUN_ID, paused (or parked): what fell due meanwhile takes effect now."""
    with open_client(db) as client:
        run = client.resume(run_id, by=BY)
        _said(run, as_json, client.clock(), f"run {run_id} resumed")


@click.command()
@click.argument("run_id")
@click.argument("operation")
@click.option("--result", "result", metavar="JSON", callback=parse_json,
              help="Record the step SUCCEEDED with this JSON result.")
@click.option("--fail", "message", metavar="MESSAGE",
              help="Record the step FAILED with this error message (the workflow's await "
                   "raises StepFailed).")
@click.option("--type", "error_type", default="Edited", show_default=True,
              help="With --fail: the error's type.")
@db_option
@json_option
def edit(run_id: str, operation: str, result: JsonValue | None, message: str | None,
         error_type: str, db: str | None, as_json: bool) -> None:
    """Set the recorded outcome of OPERATION (a step's name or operation id) of RUN_ID, paused
    or parked: whatever it was (completed, in flight, waiting to retry), the replay after
    `durable resume` sees the new one."""
    if (result is None) == (message is None):
        raise click.UsageError("give the new outcome as --result JSON or --fail MESSAGE "
                               "(one of them)")
    with open_client(db) as client:
        op = client.edit_operation(
            run_id, operation, None if result is None else result.value,
            error=None if message is None else ErrorObject(error_type, message), by=BY)
    if as_json:
        echo_json(operation_json(run_id, op))
    else:
        click.echo(f"step {op.name!r} ({op.id}) of run {run_id} is now {op.status}; "
                   f"`durable resume {run_id}` runs on with it")
