"""`durable bulk ACTION [filters]`: cancel, terminate, pause, resume or rerun every run a
listing filter selects (the filters of `durable ls`), counted first; `durable bulk continue`
finishes a job that was interrupted, `durable bulk jobs` shows them.

One subcommand per action, rather than `durable cancel --where ...`: acting on one run and on
every run of a filter read differently on purpose, and a job id with its progress belongs to
the second only. `continue` rather than `resume`, since `resume` is one of the actions.
"""

from __future__ import annotations

from typing import Any

import click

from durable.cli.options import db_option, json_option, open_client, run_filter_options
from durable.cli.render import echo_json
from durable.model.bulk import ACTIONS, DONE, BulkJob

BATCH = click.option("--batch", type=click.IntRange(1, 10_000), default=200, show_default=True,
                     help="Runs listed per read; each is acted on in a transaction of its own.")
_SAID = {"cancel": "cancelled", "terminate": "terminated", "pause": "paused",
         "resume": "resumed", "rerun": "rerun"}


@click.group()
def bulk() -> None:
    """Act on every run a filter selects; `--dry-run` counts them first. Each job's progress
    is stored: an interrupted one goes on with `durable bulk continue JOB_ID`."""


def _summary(job: BulkJob) -> str:
    if not job.job_id:
        return (f"{job.acted + job.skipped} runs match; {job.action} would apply to {job.acted}"
                f" (the other {job.skipped} are past it)")
    state = "done" if job.status == DONE else "interrupted: `durable bulk continue " \
        f"{job.job_id}` goes on"
    return (f"bulk job {job.job_id}: {_SAID[job.action]} {job.acted} runs, skipped "
            f"{job.skipped} the action no longer applied to ({state})")


def _said(job: BulkJob, as_json: bool) -> None:
    if as_json:
        echo_json(job.to_dict())
    else:
        click.echo(_summary(job))


def _action_command(action: str) -> click.Command:
    @run_filter_options
    @click.option("--dry-run", is_flag=True, help="Count the runs and what would be done; "
                  "change nothing.")
    @click.option("--yes", is_flag=True, help="Act without asking (after printing the count).")
    @BATCH
    @db_option
    @json_option
    def act(dry_run: bool, yes: bool, batch: int, db: str | None, as_json: bool,
            **given: Any) -> None:
        from_step, reason = given.pop("from_step", None), given.pop("reason", None)
        with open_client(db) as client:
            count = client.bulk(action, from_step=from_step, reason=reason, dry_run=True,
                                batch=batch, **given)
            if dry_run:
                _said(count, as_json)
                return
            click.echo(_summary(count), err=True)
            if not yes and not click.confirm(f"{action} them?", err=True):
                click.echo("nothing done", err=True)
                return
            job = client.bulk_create(action, from_step=from_step, reason=reason, **given)
            click.echo(f"bulk job {job.job_id} started; if it is interrupted, `durable bulk "
                       f"continue {job.job_id}` goes on", err=True)
            _said(client.bulk_resume(job.job_id, batch), as_json)

    if action == "rerun":
        act = click.option("--from", "from_step", required=True, metavar="STEP",
                           help="Rerun each from its first operation of this name (or id); "
                                "a run without one is skipped.")(act)
    if action == "terminate":
        act = click.option("--reason", metavar="TEXT",
                           help="Why: the error each run ends with.")(act)
    return click.command(action, help=f"{action.capitalize()} every run the filters select "
                         "(the filters of `durable ls`); runs it no longer applies to are "
                         "skipped and counted. Only runs created before the job began count.",
                         )(act)


for _action in ACTIONS:
    bulk.add_command(_action_command(_action))


@bulk.command("continue")
@click.argument("job_id")
@BATCH
@db_option
@json_option
def continue_(job_id: str, batch: int, db: str | None, as_json: bool) -> None:
    """Go on with bulk job JOB_ID from where it stopped: each run it has not reached yet is
    acted on once; those it did are not touched again."""
    with open_client(db) as client:
        _said(client.bulk_resume(job_id, batch), as_json)


@bulk.command("jobs")
@click.argument("job_id", required=False)
@db_option
@json_option
def jobs(job_id: str | None, db: str | None, as_json: bool) -> None:
    """The bulk jobs, newest first (or JOB_ID alone), with their progress."""
    with open_client(db) as client:
        found = [client.bulk_job(job_id)] if job_id else client.bulk_jobs()
    if as_json:
        echo_json({"jobs": [j.to_dict() for j in found]})
        return
    for job in found:
        click.echo(_summary(job))
    if not found:
        click.echo("no bulk jobs", err=True)
