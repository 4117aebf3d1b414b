"""Options shared by several commands, and opening the client they name."""

from __future__ import annotations

import contextlib
import math
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from durable.client import Client
from durable.errors import UsageError
from durable.model.listing import listed_status, listed_statuses, moment
from durable.views import jsonio
from durable.views.jsonio import JsonValue


def parse_json(ctx: click.Context, param: click.Parameter, text: str | None) -> JsonValue | None:
    """Option callback: parse JSON, failing with the option's name and where the JSON breaks."""
    if text is None:
        return None
    try:
        return jsonio.parse_json(text, param.opts[0].lstrip("-"))
    except UsageError as e:
        raise click.BadParameter(str(e), ctx, param) from None


class Seconds(click.FloatRange):
    """A number of seconds, finite: click's FloatRange lets NaN (which compares false with
    every bound) and infinity through, and a wait for NaN seconds never ends."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds


AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(ctx: click.Context, param: click.Parameter, text: str | None) -> float | None:
    """Option callback: a length of time, in seconds or with a unit (`90s`, `30m`, `12h`,
    `30d`, `2w`)."""
    if text is None:
        return None
    seconds = _age(text)
    if seconds is None or seconds <= 0:
        raise click.BadParameter(f"{text!r} is not a length of time: give seconds, or a "
                                 "number with s, m, h, d or w (e.g. 30d)", ctx, param)
    return seconds


def _age(text: str) -> float | None:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text, re.IGNORECASE)
    return None if found is None else float(found[1]) * AGE_UNITS[found[2].lower()]


class Moment(click.types.StringParamType):
    """A point in time as `durable ls --since` takes it (`model.listing.moment`): an ISO 8601
    time with its zone (`2026-01-31T12:00Z`), a date (midnight UTC), or a span before now
    (`30d`: thirty days ago). Converted to epoch seconds."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, float):
            return value
        try:
            return moment(value, param.opts[0] if param is not None else "time", time.time())
        except UsageError as e:
            self.fail(str(e), param, ctx)


SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(ctx: click.Context, param: click.Parameter, text: str) -> int:
    """Option callback: a byte count, bare or with a binary unit (`512KiB`, `8M`, `1mb`)."""
    found = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(?:i?b)?\s*", text, re.IGNORECASE)
    if found is None:
        raise click.BadParameter(f"{text!r} is not a size: give bytes, or a number with KiB, "
                                 "MiB or GiB (e.g. 1MiB)", ctx, param)
    return int(found[1]) * SIZE_UNITS[found[2].lower()]


def payload_value(given: JsonValue | None) -> Any:
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
                         help="Run id; starting an id that exists with the same input "
                              "returns that run (with another input: refused, see --existing).")
existing_option = click.option(
    "--existing", is_flag=True,
    help="With --id: use the run that has the id even if it was started with another input.")
payload_option = click.option("--payload", metavar="JSON", callback=parse_json,
                              help="A JSON value to deliver.")
retention_option = click.option(
    "--retention", metavar="AGE", callback=parse_age, envvar="DURABLE_RETENTION",
    help="Delete runs that ended longer ago than AGE (e.g. 30d, 12h), in the background, in "
         "batches [default: $DURABLE_RETENTION, else keep them all].")


def listed_status_option(ctx: click.Context, param: click.Parameter,
                         value: str | None) -> str | None:
    """Option callback: a status a listing filters by, or an error naming the option."""
    try:
        return listed_status(value)
    except UsageError as e:
        raise click.BadParameter(str(e), ctx, param) from None


_FILTER_OPTIONS = (
    click.option("--status", metavar="STATUS", callback=listed_status_option,
                 help=f"Only runs in this status ({', '.join(listed_statuses())})."),
    click.option("--workflow", metavar="NAME", help="Only runs of this workflow."),
    click.option("--where", metavar="FILTER",
                 help='Only runs whose attributes match, e.g. \'customer = "acme" AND amount >= '
                      "3 AND due < 2026-12-01T00:00:00Z' (= on text; = < <= > >= on numbers, "
                      "times)."),
    click.option("--since", metavar="TIME",
                 help="Only runs created at or after TIME: ISO 8601 (2026-12-01T09:00:00Z), a "
                      "date, or a span before now (15m, 2h, 7d)."),
    click.option("--until", metavar="TIME", help="Only runs created before TIME (as --since)."),
    click.option("--parent", metavar="RUN_ID", help="Only the runs this run started."),
    click.option("--roots", is_flag=True, help="Only runs no other run started."),
)


def run_filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that choose runs, as `durable ls` takes them (`model.listing.run_filter`):
    every command that acts on a listing's runs takes the same."""
    for option in reversed(_FILTER_OPTIONS):
        command = option(command)
    return command


@contextlib.contextmanager
def open_client(db: str | None) -> Iterator[Client]:
    client = Client(db)
    try:
        yield client
    finally:
        client.close()

