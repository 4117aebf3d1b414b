"""The `durable` command: start, serve, inspect and talk to runs from a shell.

Every command takes `--db URL` (default: DURABLE_DB, else sqlite:///.durable/durable.db); those
that print data take `--json`. Bad input is one `error: ...` line on stderr, never a traceback.

Exit codes:
  0    success
  1    the run ended FAILED, STOPPED or TIMED_OUT (`run`, `result`), or the command failed
  2    bad input: unknown target, malformed JSON, input not fitting the workflow, unknown run or
       callback id, unusable database
  3    the run has not ended: `result` without --wait or past its --timeout, or `run` found the
       run parked by a NonDeterminismError
  130  interrupted (Ctrl-C; SIGTERM during `run`); a run being served stays RUNNING
"""

from __future__ import annotations

from durable.cli.main import main

__all__ = ["main"]
