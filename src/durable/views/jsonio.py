"""JSON in and out of Durable, the same from the command line and over HTTP: input given as JSON
mapped onto a workflow's parameters (`durable start --input`, `POST /api/runs`, webhooks), and
runs, operations and events as the JSON documents `durable ... --json` prints and the control API
returns.
"""

from __future__ import annotations

import json
import math
import reprlib
import typing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic

from durable.client import Client, RunListing
from durable.errors import SerializationError, UsageError
from durable.model import HistoryEvent, LogLine, Operation, RunInfo, attributes
from durable.model.schedule import ScheduleInfo
from durable.model.streams import StreamEntry, StreamInfo
from durable.sdk.workflow import Workflow
from durable.views.timeline import Pending, elapsed, pending, published
from durable.views.values import Which, shown

# -- input ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JsonValue:
    """A parsed JSON input, wrapped so that input `null` differs from no input at all."""

    value: Any


def parse_json(text: str | bytes, name: str) -> JsonValue:
    """JSON text given as input (`--input`, `--payload`, a webhook's body), parsed and checked
    as `checked_json` checks it; every way it can be refused is a `UsageError` that says why."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UsageError("not valid JSON: nested too deeply for the JSON parser") from None
    except ValueError as e:  # also invalid UTF-8, and integers beyond Python's digit limit
        raise UsageError(f"not valid JSON: {str(e).split('; use sys.')[0]}") from None
    return JsonValue(checked_json(value, name))


def checked_json(value: Any, name: str) -> Any:
    """`value`, parsed JSON input called `name`, once it is known to hold only numbers JSON can
    carry. Python's parser reads NaN and Infinity, which JSON has not, and turns numbers beyond
    a float's range (1e400) into infinity; stored, each would come back as `null` through the
    API but as invalid JSON from the CLI, so they are refused where they come in."""
    stack: list[tuple[Any, _Path]] = [(value, None)]
    while stack:  # a loop, not recursion: input as deep as the parser allows is fine
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise UsageError(f"{name}{_where(path)} is not a finite number ({json.dumps(item)}):"
                             " JSON has no NaN or Infinity, and a number beyond ±1.8e308 "
                             "reads as infinity")
        if isinstance(item, dict):
            stack.extend((v, (path, k)) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, (path, i)) for i, v in enumerate(item))
    return value


_Path = tuple["_Path", str | int] | None
"""Where an item is in a JSON value, linked from the innermost key out (cheap to extend)."""


def _where(path: _Path) -> str:
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    return "".join(f"[{json.dumps(key)}]" for key in reversed(keys))


def workflow_args(wf: Workflow[..., Any], given: JsonValue | None) -> tuple[Any, ...]:
    """Map `--input` onto the workflow's parameters and decode it exactly as the worker will, so
    input that does not fit is refused here instead of becoming a FAILED run."""
    params = wf.params
    if given is None:
        if params:
            raise UsageError(f"workflow {wf.name!r} needs input ({', '.join(params)}); "
                             "pass it with --input JSON")
        return ()
    if not params:
        raise UsageError(f"workflow {wf.name!r} takes no input; drop --input")
    args = _spread(wf, given.value)
    try:
        return wf.decode_input(wf.encode_input(args))
    except SerializationError as e:
        raise UsageError(f"--input does not fit workflow {wf.name!r} ({', '.join(params)}): "
                         f"{_mismatch(wf, args, e)}") from None


def _spread(wf: Workflow[..., Any], value: Any) -> tuple[Any, ...]:
    params = wf.params
    if len(params) == 1:
        return (value,)
    if isinstance(value, list) and len(value) == len(params):
        return tuple(value)
    if isinstance(value, dict) and set(value) == set(params):
        return tuple(value[p] for p in params)
    raise UsageError(f"workflow {wf.name!r} takes {len(params)} inputs ({', '.join(params)}); "
                     f"pass --input as a JSON array of {len(params)} values or an object with "
                     "exactly those keys")


def _mismatch(wf: Workflow[..., Any], args: tuple[Any, ...], error: SerializationError) -> str:
    """Where the input fails to decode, as `parameter.field: problem (got value)`. Each argument
    is checked again with pydantic directly, so the path starts at the parameter, whatever shape
    the serializer gives its own validation; anything else falls back to the serializer's word."""
    try:
        hints = typing.get_type_hints(wf.fn)
    except Exception:  # unresolvable annotations: the serializer decoded as plain JSON anyway
        hints = {}
    for name, value in zip(wf.params, args, strict=True):
        try:
            pydantic.TypeAdapter(hints.get(name, Any)).validate_json(json.dumps(value))
        except pydantic.ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(part) for part in (name, *first["loc"]))
            more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
            return f"{where}: {first['msg']} (got {reprlib.repr(first.get('input'))}){more}"
    return str(error).splitlines()[0]


# -- output ---------------------------------------------------------------------------------

def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _payload(text: str | None) -> Any:
    """A stored payload as JSON data; text a custom serializer wrote stays a string. NaN and
    ±Infinity, which a workflow may return and the serializer stores (Python reads them back),
    have no JSON form: they read as null, as the API has always answered them."""
    if text is None:
        return None
    try:
        return _decoded(text)[0]
    except ValueError:
        return text


PREVIEW = 200
"""Characters of a run's input and result that a listing shows (`run_summary_json`)."""


def payload_text(text: str) -> str:
    """A stored payload as JSON text to print (`durable result`): as stored, unless it holds
    NaN or ±Infinity, then written again with those as null, so that what the CLI prints is
    JSON and says what the API says. Text a custom serializer wrote is printed as it is."""
    try:
        value, changed = _decoded(text)
    except ValueError:
        return text
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")) if changed else text


def _decoded(text: str) -> tuple[Any, bool]:
    """`text` parsed with NaN and ±Infinity as None, and whether it held any."""
    changed = False

    def null(_: str) -> None:
        nonlocal changed
        changed = True

    def number(literal: str) -> float | None:
        value = float(literal)
        if math.isfinite(value):
            return value
        null(literal)
        return None
    return json.loads(text, parse_constant=null, parse_float=number), changed


def run_json(run: RunInfo, now: float) -> dict[str, Any]:
    return _run_document(run, now, {"input": _payload(run.input),
                                    "result": _payload(run.result)})


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule as `durable schedules --json` and the API show it."""
    return {"workflow": info.workflow, "cron": info.cron, "timezone": info.timezone,
            "missed": info.missed, "next_fire": info.next_fire.isoformat(),
            "last_tick": info.last_tick.isoformat() if info.last_tick else None,
            "last_run_id": info.last_run_id, "registered": info.registered,
            "paused": info.paused, "source": info.source}


def run_summary_json(run: RunInfo, now: float) -> dict[str, Any]:
    """A run as a listing shows it: input and result as the start of their stored JSON text,
    so one large payload cannot make every page of the list that large. `run` comes from a
    listing read with `preview=PREVIEW`."""
    return _run_document(run, now, {"input_preview": _preview(run.input),
                                    "result_preview": _preview(run.result)})


def listed_json(run: RunInfo, listing: RunListing, now: float,
                summary: bool = False) -> dict[str, Any]:
    """A run of a listing page: `run_json` (`run_summary_json` with `summary`), with its
    attributes and how many runs it started."""
    doc = run_summary_json(run, now) if summary else run_json(run, now)
    return {**doc, "attributes": attributes_json(listing.attributes.get(run.run_id, [])),
            "children": listing.children.get(run.run_id, 0)}


def attributes_json(attrs: list[attributes.Attribute]) -> dict[str, Any]:
    return {a.key: attributes.shown(a) for a in attrs}


def _run_document(run: RunInfo, now: float, payloads: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status.value,
        "parent_run_id": run.parent_run_id,
        "parked": run.parked.to_dict() if run.parked else None,
        "invocation_failure": invocation_failure_json(run),
        "cancel_requested": run.cancel_requested,
        "queue": run.queue,
        "position": run.position,
        "priority": run.priority,
        "dedup_id": run.dedup_id,
        **payloads,
        "error": run.error.to_dict() if run.error else None,
        "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at),
        "ended_at": _iso(run.ended_at),
        "elapsed_seconds": elapsed(run, now),
        "compute_seconds": run.compute_seconds,
    }


def invocation_failure_json(run: RunInfo) -> dict[str, Any] | None:
    """While invoking the run's function fails (unreachable, throttled, crashed): what failed
    last, since when, and how many attempts in a row."""
    if run.invocation_error is None:
        return None
    return {"error": run.invocation_error.to_dict(), "since": _iso(run.invocation_failing_since),
            "attempts": run.invocation_failures}


def _preview(text: str | None) -> str | None:
    if text is None or len(text) <= PREVIEW:
        return text
    return text[:PREVIEW] + "…"


def operation_json(run_id: str, op: Operation) -> dict[str, Any]:
    """An operation with its input and result: each as JSON data, or as text where it is not
    JSON (a custom serializer's) or too long (its start only), `input_info` / `result_info`
    saying which and where the API answers the whole value."""
    return {
        "id": op.id, "type": op.type.value, "sub_type": op.sub_type, "name": op.name,
        "status": op.status.value, "attempt": op.attempt, "parent_id": op.parent_id,
        **_value_json(run_id, op, "input", "input"), **_value_json(run_id, op, "output", "result"),
        "error": op.error.to_dict() if op.error else None,
        "due_at": _iso(op.due_at), "callback_id": op.callback_id,
        "child_run_id": op.child_run_id, "started_at": _iso(op.started_at),
        "ended_at": _iso(op.ended_at),
    }


def _value_json(run_id: str, op: Operation, which: Which, key: str) -> dict[str, Any]:
    value = shown(run_id, op, which)
    if value is None:
        return {key: None, f"{key}_info": None}
    info = {"chars": value.chars, "truncated": value.truncated, "is_json": value.is_json,
            "url": value.url}
    return {key: value.text if value.truncated else _payload(value.text), f"{key}_info": info}


def event_json(event: HistoryEvent, t0: float) -> dict[str, Any]:
    return {
        "id": event.id, "type": event.type, "timestamp": _iso(event.timestamp),
        "offset_seconds": event.timestamp - t0, "operation_id": event.operation_id,
        "name": event.name, "details": event.details,
    }


def log_json(number: int, line: LogLine, t0: float) -> dict[str, Any]:
    return {"id": number, "timestamp": _iso(line.at), "offset_seconds": line.at - t0,
            "level": line.level, "message": line.message, "operation_id": line.operation_id,
            "attempt": line.attempt}


def pending_json(p: Pending) -> dict[str, Any]:
    return {"kind": p.kind, "operation": p.label, "due_at": _iso(p.due_at),
            "detail": p.detail, "callback_id": p.callback_id, "signal": p.signal,
            "child_run_id": p.child_run_id}


def outcome_json(run: RunInfo) -> dict[str, Any]:
    return {"run_id": run.run_id, "status": run.status.value,
            "result": _payload(run.result),
            "error": run.error.to_dict() if run.error else None}


@dataclass(frozen=True, slots=True)
class RunView:
    """Everything `durable show` and `GET /api/runs/{id}` report about one run, read once."""

    run: RunInfo
    operations: list[Operation]
    history: list[HistoryEvent]
    now: float
    attributes: list[attributes.Attribute]

    @classmethod
    def read(cls, client: Client, run_id: str) -> RunView:
        return cls(client.get(run_id), client.operations(run_id, inputs=True),
                   client.history(run_id), client.clock(), client.attributes(run_id))

    def to_json(self) -> dict[str, Any]:
        t0 = self.run.created_at
        return {
            "run": run_json(self.run, self.now),
            "pending": [pending_json(p) for p in pending(self.run, self.operations)],
            "events": {k: _payload(v) for k, v in published(self.operations).items()},
            "attributes": attributes_json(self.attributes),
            "operations": [operation_json(self.run.run_id, op) for op in self.operations],
            "history": [event_json(e, t0) for e in self.history],
        }


def stream_entry_json(entry: StreamEntry) -> dict[str, Any]:
    """One stream entry, as `durable stream --json` prints it and the SSE route sends it."""
    return {"offset": entry.offset, "kind": entry.kind.value, "value": _payload(entry.value),
            "timestamp": _iso(entry.at), "operation_id": entry.operation_id,
            "attempt": entry.attempt, "attempt_key": entry.attempt_key}


def stream_info_json(info: StreamInfo) -> dict[str, Any]:
    return {"name": info.name, "last_offset": info.last_offset, "closed": info.closed}
