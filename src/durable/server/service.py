"""What the API and the webhooks do alike: turn a start request's JSON into the run's input.

Starting checks input against the workflow when the server has it loaded (`--worker` targets),
exactly as `durable start --input` does, so input that cannot fit is refused with a 400 instead
of becoming a FAILED run. A workflow the server has not loaded is started by name with the JSON
taken as its encoded input: the worker that serves it decodes it.
"""

from __future__ import annotations

import json
from typing import Any

from durable.server.deps import ServerState
from durable.views.jsonio import JsonValue, checked_json, workflow_args


def encoded_input(state: ServerState, workflow: str, given: JsonValue | None) -> str | None:
    """The run's input as `Client.start_run` takes it."""
    wf = state.workflows.get(workflow)
    if wf is not None:
        return wf.encode_input(workflow_args(wf, given))
    return None if given is None else json.dumps(given.value)


def given(fields: set[str], value: Any) -> JsonValue | None:
    """`input` as the CLI's `--input`: absent is no input, `null` is the value null; checked
    as the CLI checks it (`checked_json`)."""
    return JsonValue(checked_json(value, "input")) if "input" in fields else None
