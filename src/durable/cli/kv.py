"""`durable kv get|set|delete|ls`: the key-value store shared by runs (`Client.kv`), from a
shell. Values are JSON on the way in and out."""

from __future__ import annotations

import json

import click

from durable.cli.options import db_option, json_option, open_client, parse_json
from durable.cli.render import echo_done, echo_json, make_console, plain_table, printable
from durable.errors import KeyNotFound
from durable.model.kv import KvEntry
from durable.views.jsonio import JsonValue

PREVIEW = 60
"""Characters of a value `durable kv ls` shows in its table (`--json` gives all)."""


@click.group()
def kv() -> None:
    """Read and edit the key-value store that workflows share (`ctx.kv`)."""


def _entry_json(entry: KvEntry) -> dict[str, object]:
    return {"key": entry.key, "value": json.loads(entry.value), "version": entry.version,
            "updated_at": entry.updated_at}


@kv.command()
@click.argument("key")
@db_option
@json_option
def get(key: str, db: str | None, as_json: bool) -> None:
    """Print the value under KEY as JSON (with --json: with its version and last write)."""
    with open_client(db) as client:
        entry = client.kv.entry(key)
    if as_json:
        echo_json(_entry_json(entry))
    else:
        click.echo(entry.value)


@kv.command("set")
@click.argument("key")
@click.argument("value", callback=parse_json, metavar="JSON")
@db_option
@json_option
def set_(key: str, value: JsonValue, db: str | None, as_json: bool) -> None:
    """Set KEY to the JSON value given, e.g. `durable kv set limit 10` or `'{"on": true}'`."""
    with open_client(db) as client:
        client.kv.set(key, value.value)
        entry = client.kv.entry(key)
    echo_done(as_json, _entry_json(entry), f"set {key} (version {entry.version})")


@kv.command()
@click.argument("key")
@db_option
@json_option
def delete(key: str, db: str | None, as_json: bool) -> None:
    """Remove KEY; an error (exit 2) if it has no value."""
    with open_client(db) as client:
        if not client.kv.delete(key):
            raise KeyNotFound(key)
    echo_done(as_json, {"key": key, "deleted": True}, f"deleted {key}")


@kv.command("ls")
@click.option("--prefix", default="", help="Only keys that begin with this.")
@click.option("--after", metavar="KEY", help="Only keys after this one (the next page).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@db_option
@json_option
def ls(prefix: str, after: str | None, limit: int, db: str | None, as_json: bool) -> None:
    """List the keys that have a value, in key order."""
    with open_client(db) as client:
        entries = client.kv.entries(prefix, after, limit)
    if as_json:
        echo_json([_entry_json(e) for e in entries])
        return
    table = plain_table("KEY", "VALUE", "VERSION")
    for e in entries:
        shown = e.value if len(e.value) <= PREVIEW else e.value[:PREVIEW] + "…"
        table.add_row(printable(e.key), printable(shown), str(e.version))
    make_console().print(table)
    if len(entries) == limit:
        click.echo(f"(more: durable kv ls --prefix {prefix!r} --after {entries[-1].key!r})",
                   err=True)
