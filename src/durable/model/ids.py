"""What a run id may be: the one rule that every way of creating a run checks (`Client`, the
control API, a webhook's `Idempotency-Key`, `--id` on the command line, a child run's or a
rerun's chosen id), and the one way Durable makes the ids it derives itself follow it.

The alphabet is ASCII letters, digits and `_ - . : @ +`, because a run id travels everywhere: a
path segment of the API and the UI (no `/`, `?`, `#`, `%`, and no leading `.`, since `.` and `..`
segments are resolved away by HTTP clients), a shell argument (no spaces, quotes or `$`, and no
leading `-` that would read as an option), a terminal line (no control characters or escape
sequences), a log line (no newlines), and a key in SQLite and PostgreSQL (no NUL, which
PostgreSQL refuses). ASCII also keeps away look-alike letters and invisible or right-to-left
characters that would make two different ids read the same. `:`, `@` and `+` are in it for
schedule tick ids (`report@2025-01-31T02:00:00+01:00`) and for keys such as `tenant:order@v2`;
AWS execution names (1-64 of `[a-zA-Z0-9_-]`) all fit. 256 characters leave room for composite
business keys and for the ids derived from them (a child run adds 13) while keeping index keys
and table cells short.

Lookups never check the rule: runs stored before it stay readable under their ids, and asking
for an id that breaks it answers as for any id that names no run ("no run with id ...", a 404
from the API), since no run can have been created with it since.
"""

from __future__ import annotations

import hashlib
import re

from durable.errors import UsageError

RUN_ID_MAX = 256
_FIRST = "A-Za-z0-9_"
_REST = _FIRST + ".:@+-"
RUN_ID_PATTERN = f"^[{_FIRST}][{_REST}]{{0,{RUN_ID_MAX - 1}}}$"
"""The rule as a regular expression, for the OpenAPI schema."""
RUN_ID_RULE = (f"1 to {RUN_ID_MAX} ASCII letters, digits and the characters _ - . : @ +, "
               "starting with a letter, a digit or _")
"""The rule in words, for error messages and documentation."""

_VALID = re.compile(RUN_ID_PATTERN.strip("^$"))
_STARTS_WELL = re.compile(f"[{_FIRST}]")
_DISALLOWED = re.compile(f"[^{_REST}]")
_DIGEST_CHARS = 16


def check_run_id(run_id: str) -> str:
    """`run_id`, if a run may be created with it; else `UsageError` saying what is wrong."""
    if not isinstance(run_id, str):
        raise UsageError(f"a run id is a string, not {type(run_id).__name__}: {RUN_ID_RULE}")
    if _VALID.fullmatch(run_id):
        return run_id
    raise UsageError(f"run id {_shown(run_id)} {_problem(run_id)}: a run id is {RUN_ID_RULE}")


def derived_run_id(text: str) -> str:
    """`text` (a parent run id and an operation, a workflow name and a tick) as a run id:
    unchanged when it already follows the rule, as nearly always. Otherwise (a workflow named
    with spaces or `<locals>`, a parent id near the length limit) the characters the rule does
    not allow become `_` and a digest of the whole text is appended, cut to fit: the same text
    always gives the same id, and two texts mapped alike still get different ones."""
    if _VALID.fullmatch(text):
        return text
    digest = hashlib.blake2b(text.encode(errors="surrogatepass"),
                             digest_size=_DIGEST_CHARS // 2).hexdigest()
    safe = _DISALLOWED.sub("_", text)
    if not _STARTS_WELL.match(safe):
        safe = "_" + safe
    return f"{safe[:RUN_ID_MAX - _DIGEST_CHARS - 1]}-{digest}"


def child_run_id(parent_run_id: str, op_id: str, generation: int = 0) -> str:
    """The id of the child run that operation `op_id` of `parent_run_id` starts when the code
    names none. Operation ids restart with each generation (`ctx.continue_as_new` replays the
    same code from the top), so a later generation's child carries the generation: else it
    would find the earlier generation's child under its id and take that run for its own."""
    base = f"{parent_run_id}-{op_id[:12]}"
    return derived_run_id(base if generation == 0 else f"{base}-g{generation}")


def _shown(run_id: str) -> str:
    """The id as an error message quotes it: escaped, and cut if it is long."""
    return repr(run_id) if len(run_id) <= 80 else f"{run_id[:80]!r}..."


def _problem(run_id: str) -> str:
    if not run_id:
        return "is empty"
    if len(run_id) > RUN_ID_MAX:
        return f"is {len(run_id)} characters long"
    if not _STARTS_WELL.match(run_id):
        return f"starts with {run_id[0]!r}"
    bad = _DISALLOWED.search(run_id)
    assert bad is not None
    return f"contains {bad.group()!r} at position {bad.start()}"
