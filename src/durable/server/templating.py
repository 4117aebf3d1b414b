"""Jinja2 templates of the web UI, shipped inside the package (no build step, no CDN)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from durable.model import attributes
from durable.views.timeline import duration

ENV = Environment(loader=PackageLoader("durable.server", "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _clock(ts: float | None) -> str:
    """UTC as text; the page's script turns each <time> into the browser's local time."""
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(text: str) -> str:
    """A stored JSON payload indented for reading; other text (a custom serializer's) as is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


ENV.filters.update(duration=duration, iso=_iso, clock=_clock, pretty=_pretty,
                   attribute=attributes.shown)


def render(request: Request, name: str, context: dict[str, Any],
           status: int = 200) -> HTMLResponse:
    state = getattr(request.app.state, "durable", None)
    page = ENV.get_template(name).render(
        request=request, auth=state is not None and state.token is not None, **context)
    return HTMLResponse(page, status_code=status)


def fragment(name: str, **context: Any) -> str:
    """A template rendered to text, for a part of a page sent inside JSON."""
    return ENV.get_template(name).render(**context)


def macro(name: str, macro_name: str, *args: Any) -> str:
    """One macro of a template called, e.g. one row: the same markup the page rendered."""
    return str(getattr(ENV.get_template(name).module, macro_name)(*args))
