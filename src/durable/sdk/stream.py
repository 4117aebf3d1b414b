"""`ctx.stream(name)`: durable streams, written from workflow code or from a step body.

From workflow code, a write is a recorded value (a STEP of sub-type StreamWrite, see
`values.record`): the engine appends it when it records the operation, and a replay, finding
it recorded, writes nothing. From a step body, a write is a chunk handed to the engine at once
(`Invocation.chunks`), marked with the attempt writing it; if the attempt fails, its streams get
an `abandoned` marker before the failure is checkpointed (model/streams.py).

Values are written with the default JSON serializer, whatever the workflow's: streams are read
by other processes (`durable stream`, the server's SSE route, the UI) that know no workflow's
own serializer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable.errors import UsageError
from durable.model import SubType
from durable.model.streams import check_stream_name
from durable.sdk import values as _values
from durable.sdk.executor import CURRENT_STEP, Executor, Scope
from durable.sdk.serializer import DEFAULT_SERIALIZER


class Stream:
    """A named stream of this run: `write(value)` appends, `close()` ends it."""

    def __init__(self, ex: Executor, scope: Callable[[], Scope], name: str) -> None:
        try:
            self.name = check_stream_name(name)
        except ValueError as e:
            raise UsageError(f"ctx.stream(): {e}") from None
        self._ex, self._scope = ex, scope

    def write(self, value: Any) -> None:
        """Append `value` (JSON data, a dataclass or a pydantic model). In workflow code:
        recorded, so written once however often the run replays. In a step body: written
        at once, marked with the attempt, void if the attempt fails."""
        ex = self._ex
        if self.name in ex.closed_streams:
            raise UsageError(f"run {ex.run_id!r}: stream {self.name!r} is closed; nothing can "
                             "be written to it after ctx.stream(name).close()")
        step = CURRENT_STEP.get()
        if step is not None and step.run_id == ex.run_id:
            ex.stream_chunk(self.name, DEFAULT_SERIALIZER.encode(value), step)
            return
        _values.record(ex, self._scope(), SubType.STREAM_WRITE, self.name, lambda: value,
                       serializer=DEFAULT_SERIALIZER)

    def close(self) -> None:
        """End the stream: readers following it stop after what was written before. Workflow
        code only (recorded like a write)."""
        ex = self._ex
        step = CURRENT_STEP.get()
        if step is not None and step.run_id == ex.run_id:
            raise UsageError(f"run {ex.run_id!r}: stream {self.name!r} can only be closed from "
                             "workflow code, not from inside a step body")
        _values.record(ex, self._scope(), SubType.STREAM_CLOSE, self.name, lambda: None,
                       serializer=DEFAULT_SERIALIZER)
        ex.closed_streams.add(self.name)
