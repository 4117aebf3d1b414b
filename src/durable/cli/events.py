"""`durable publish` and `durable events ls|show|redispatch|purge`."""

from __future__ import annotations

import json
from datetime import datetime

import click

from durable.cli.options import Moment, db_option, json_option, open_client
from durable.cli.render import echo_done, echo_json, make_console, plain_table, printable
from durable.errors import UsageError
from durable.model.events import SEQ_MAX, Delivery, Event
from durable.views import jsonio

SEQ = click.IntRange(1, SEQ_MAX)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _delivery_json(d: Delivery) -> dict[str, object]:
    return {"workflow": d.workflow, "generation": d.generation, "run_id": d.run_id,
            "delivered_at": d.at}


@click.command()
@click.argument("topic")
@click.argument("data")
@click.option("--id", "event_id", metavar="ID",
              help="The event's id: publishing an id again starts nothing new "
                   "[default: a fresh one].")
@db_option
@json_option
def publish(topic: str, data: str, event_id: str | None, db: str | None,
            as_json: bool) -> None:
    """Publish DATA (JSON) on TOPIC: it starts the runs of the workflows it triggers
    (`@workflow(on_event=TOPIC)`) and reaches the runs subscribed to the topic."""
    try:
        jsonio.parse_json(data, "DATA")
    except UsageError as e:
        raise click.BadParameter(str(e), param_hint="DATA") from None
    with open_client(db) as client:
        event, created = client.publish_json(topic, data, id=event_id)
    echo_done(as_json, {**event.to_dict(), "created": created},
              f"event #{event.seq} ({event.id}) published on {topic}" if created else
              f"event {event.id} was published on {topic} already (#{event.seq}): "
              "nothing new started")


@click.group()
def events() -> None:
    """List, show, redispatch and purge published events."""


@events.command("ls")
@click.option("--topic", help="Only this topic's events.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", type=SEQ, metavar="SEQ", help="Only events older than #SEQ (paging).")
@db_option
@json_option
def events_ls(topic: str | None, limit: int, before: int | None, db: str | None,
              as_json: bool) -> None:
    """The newest events first."""
    with open_client(db) as client:
        found = client.list_events(topic, limit, before)
    if as_json:
        echo_json([e.to_dict() for e in found])
        return
    if not found:
        make_console(stderr=True).print("no events" + (f" on {topic}" if topic else ""))
        return
    table = plain_table("#", "topic", "id", "published", "dispatches", "data")
    for e in found:
        table.add_row(str(e.seq), e.topic, printable(e.id), _when(e.published_at),
                      str(e.generation + 1), printable(_short(e.data)))
    make_console().print(table)


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


@events.command("show")
@click.argument("seq", type=SEQ)
@db_option
@json_option
def events_show(seq: int, db: str | None, as_json: bool) -> None:
    """Event #SEQ: its data and the run each trigger started of each dispatch of it."""
    with open_client(db) as client:
        event, deliveries = client.event(seq)
    if as_json:
        echo_json({**event.to_dict(), "deliveries": [_delivery_json(d) for d in deliveries]})
        return
    _echo_event(event)
    if not deliveries:
        click.echo("not dispatched to any trigger (yet)")
    for d in deliveries:
        started = f"started run {d.run_id}" if d.run_id else "filtered out"
        click.echo(f"dispatch {d.generation + 1} to {d.workflow}: {started} "
                   f"({_when(d.at)})")


def _echo_event(event: Event) -> None:
    click.echo(f"event #{event.seq} on {event.topic}, id {printable(event.id)}, "
               f"published {_when(event.published_at)}")
    asked = event.request_value
    if asked is not None:  # its headers are in --json
        click.echo(printable(f"posted by a webhook: {asked['method']} {asked['path']}"))
    click.echo(printable(json.dumps(event.value, indent=2), lines=True))


@events.command("redispatch")
@click.argument("seq", type=SEQ)
@db_option
@json_option
def events_redispatch(seq: int, db: str | None, as_json: bool) -> None:
    """Dispatch event #SEQ again: each workflow it triggers starts a new run of it."""
    with open_client(db) as client:
        event = client.redispatch(seq)
    echo_done(as_json, event.to_dict(), f"event #{seq} is dispatched again "
              f"(dispatch {event.generation + 1}); workers serving its triggers start the runs")


@events.command("purge")
@click.option("--published-before", "before", type=Moment(), required=True,
              help="Delete the events published before then.")
@db_option
@json_option
def events_purge(before: float, db: str | None, as_json: bool) -> None:
    """Delete old events (their runs stay)."""
    with open_client(db) as client:
        deleted = client.purge_events(before)
    echo_done(as_json, {"deleted": deleted}, f"deleted {deleted} event(s)")
