"""The exit codes of `durable` and the one way a command reports bad input or failure."""

from __future__ import annotations

from enum import IntEnum
from typing import NoReturn

import click


class ExitCode(IntEnum):
    """What a script calling `durable` can branch on (the module docstring says when each)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    NOT_ENDED = 3
    INTERRUPTED = 130



def error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def exit_with(code: ExitCode) -> NoReturn:
    raise click.exceptions.Exit(code)

