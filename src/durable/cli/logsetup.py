"""How `durable worker`, `server` and `run` log: to stderr (stdout is for what a command
prints as its result), at `--log-level`, as text or as one JSON object per line
(`--log-format json`) carrying the structured fields the engine and workflows attach to their
records (`run_id`, `workflow`, `operation`, `attempt`, and others such as `queue`)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}
"""Attributes every record has: whatever else a record carries came in `extra=`."""


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record was logged with (`extra=`)."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the structured fields, and
    the traceback if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            **fields(record)}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual line, with the structured fields after the message as `key=value`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        extra = " ".join(f"{k}={v}" for k, v in fields(record).items() if v is not None)
        return f"{line} [{extra}]" if extra else line


def configure(level: str = "info", fmt: str = "text", *,
              quiet: tuple[str, ...] = ()) -> None:
    """Send every record at `level` and above to stderr in `fmt`. `quiet` loggers show only
    warnings and above unless `level` is debug: housekeeping that is noise for one command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in quiet:
        logging.getLogger(name).setLevel(
            logging.DEBUG if level == "debug" else max(logging.WARNING, root.level))


F = TypeVar("F", bound=Callable[..., Any])


def logging_options(fn: F) -> F:
    """`--log-level` and `--log-format` on a command."""
    fn = click.option("--log-format", type=click.Choice(FORMATS), default="text",
                      show_default=True, help="text, or one JSON object per line.")(fn)
    return click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False),
                        default="info", show_default=True,
                        help="Log records at this level and above, to stderr.")(fn)
