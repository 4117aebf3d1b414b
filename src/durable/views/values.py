"""An operation's input and output as views show them: whole when small, else the start of the
stored text with a marker and where the whole value is fetched, so that one large value cannot
make a run's page, its JSON or `durable show` that large.

Views never decode a value through a serializer (they may not have the workflow's code): what
the default serializer wrote is JSON and is shown as data; anything else (an encrypting or
compressing serializer's text) is shown as the opaque text it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from durable.model import Operation

Which = Literal["input", "output"]

VALUE_PREVIEW = 2000
"""Characters of an operation's input or output that the JSON views and the UI show whole."""


@dataclass(frozen=True, slots=True)
class Shown:
    """A stored value as a view shows it. `text` is all of it, or its first `limit` characters
    when `truncated`; `is_json` says whether it is JSON (None: too large to check here)."""

    text: str
    chars: int
    truncated: bool
    is_json: bool | None
    url: str

    @property
    def opaque(self) -> bool:
        """Not JSON: a custom serializer's text (encrypted, compressed), shown as it is."""
        return self.is_json is False


def stored(op: Operation, which: Which) -> str | None:
    """The value as stored: the step body's (or child run's) input, or the operation's result."""
    return op.input if which == "input" else op.result


def value_url(run_id: str, op_id: str, which: Which) -> str:
    """Where the API answers the whole value."""
    return f"/api/runs/{quote(run_id, safe='')}/operations/{quote(op_id, safe='')}/{which}"


def shown(run_id: str, op: Operation, which: Which, limit: int = VALUE_PREVIEW) -> Shown | None:
    """`op`'s input or output as a view shows it; None if there is none recorded."""
    text = stored(op, which)
    if text is None:
        return None
    url = value_url(run_id, op.id, which)
    if len(text) > limit:
        return Shown(text[:limit], len(text), True, None, url)
    return Shown(text, len(text), False, is_json(text), url)


def is_json(text: str) -> bool:
    """Whether `text` is JSON: what the default serializer writes."""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
