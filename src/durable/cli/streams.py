"""`durable stream RUN NAME`: print a run's stream, or follow it live until it ends."""

from __future__ import annotations

import json

import click

from durable.cli.options import db_option, open_client
from durable.model.streams import StreamEntry, StreamKind
from durable.views.jsonio import stream_entry_json


@click.command()
@click.argument("run_id")
@click.argument("name")
@click.option("--after", type=click.IntRange(min=0), default=0, show_default=True,
              metavar="OFFSET", help="Print only the entries after this offset (resume here).")
@click.option("--follow", is_flag=True,
              help="Wait for more until the stream is closed or the run ends.")
@click.option("--with-abandoned", is_flag=True,
              help="Also print values of step attempts already known dead.")
@db_option
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per entry and line (offset, kind, value, attempt...).")
def stream(run_id: str, name: str, after: int, follow: bool, with_abandoned: bool,
           db: str | None, as_json: bool) -> None:
    """Print stream NAME of RUN_ID: each entry's offset and value (JSON), oldest first. A
    step attempt that died is marked `abandoned` after its values: disregard them."""
    with open_client(db) as client:
        printed = False
        for entry in client.stream(run_id, name, after, follow=follow,
                                   with_abandoned=with_abandoned):
            click.echo(json.dumps(stream_entry_json(entry), ensure_ascii=False) if as_json
                       else _line(entry))
            printed = True
        if not printed and not as_json:
            click.echo(f"no entries in stream {name!r} of run {run_id} after offset {after}",
                       err=True)


def _line(entry: StreamEntry) -> str:
    if entry.kind is StreamKind.VALUE:
        return f"{entry.offset}\t{entry.value}"
    if entry.kind is StreamKind.CLOSED:
        return f"{entry.offset}\t(closed)"
    return (f"{entry.offset}\t(abandoned: attempt {entry.attempt} of step "
            f"{entry.operation_id}; its values above are void)")
