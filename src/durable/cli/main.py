"""The entry point: runs the command and maps every outcome to an exit code."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import click

from durable.cli.commands import cli
from durable.cli.exits import ExitCode, error
from durable.errors import DurableError, UsageError
from durable.store.sqlite import lock_timeout


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and map every outcome to an exit code; the console script exits with it.

    Click runs in non-standalone mode so that its own usage errors, Durable's `UsageError`s and
    Ctrl-C all end the same way: one `error:` line on stderr and a documented exit code.
    """
    try:
        code = cli.main(args=argv, prog_name="durable", standalone_mode=False)
    except click.ClickException as e:
        error(_click_message(e))
        return e.exit_code
    except (click.Abort, KeyboardInterrupt):
        error("interrupted")
        return ExitCode.INTERRUPTED
    except UsageError as e:
        error(str(e))
        return ExitCode.USAGE
    except DurableError as e:
        error(str(e))
        return ExitCode.FAILED
    except sqlite3.OperationalError as e:
        locked = lock_timeout(e)
        if locked is None:
            raise
        error(locked)
        return ExitCode.USAGE
    return code if isinstance(code, int) else ExitCode.OK


def _click_message(e: click.ClickException) -> str:
    message = e.format_message()
    if isinstance(e, click.UsageError) and e.ctx is not None:
        message += f" (see '{e.ctx.command_path} --help')"
    return message

