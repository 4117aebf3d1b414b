"""`workflow.get_external_workflow_handle(...)`: workflow code signalling or cancelling another
workflow, as Temporal's external workflow handles do.

Each call is one Durable operation the engine acts on as it records it (`ctx.signal_run` on the
channel every Temporal-style signal travels on, `ctx.cancel_run`): the other run is signalled or
cancelled exactly once, however often this run replays or a worker crashes around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from durable.errors import CancelRunFailed, SignalFailed
from durable.temporal._definition import SIGNAL_ATTR, Definition
from durable.temporal._runtime import CHANNEL, current
from durable.temporal.exceptions import ApplicationError

NOT_FOUND = "ExternalWorkflowExecutionNotFound"
"""The `ApplicationError.type` of a signal or cancel whose target does not exist or ended."""


_NOARG: Any = object()


class ExternalWorkflowHandle:
    """Another workflow, by id, as workflow code sees it. `run_id` is accepted as Temporal's:
    a Durable workflow id is its run id, so it names the same run."""

    def __init__(self, workflow_id: str, run_id: str | None, defn: Definition | None) -> None:
        self.id = workflow_id
        self.run_id = run_id
        self._defn = defn

    def _signal_name(self, signal: str | Callable[..., Any]) -> str:
        if self._defn is not None:
            return self._defn.signal_name(signal)
        name = signal if isinstance(signal, str) else getattr(signal, SIGNAL_ATTR, None)
        if not isinstance(name, str):
            raise TypeError(f"{signal!r} is neither a signal name nor a @workflow.signal method")
        return name

    async def signal(self, signal: str | Callable[..., Any], arg: Any = _NOARG, *,
                     args: Sequence[Any] = ()) -> None:
        """Deliver the signal to the other workflow, once; its handler runs there in order of
        arrival. An ApplicationError (type `ExternalWorkflowExecutionNotFound`) if that
        workflow does not exist or has ended."""
        if arg is not _NOARG and args:
            raise ValueError("pass either one argument or args=[...], not both")
        rt = current("ExternalWorkflowHandle.signal()")
        payload = {"name": self._signal_name(signal),
                   "args": [arg] if arg is not _NOARG else list(args)}
        try:
            await rt.durable(rt.ctx.signal_run(self.id, CHANNEL, payload))
        except SignalFailed as e:
            raise ApplicationError(f"Unable to signal external workflow {self.id!r}: "
                                   f"{e.error.message}", type=NOT_FOUND) from None

    async def cancel(self) -> None:
        """Ask the other workflow to stop, once: asyncio.CancelledError meets its code at its
        next await, as `handle.cancel()` from a client does."""
        rt = current("ExternalWorkflowHandle.cancel()")
        try:
            await rt.durable(rt.ctx.cancel_run(self.id))
        except CancelRunFailed as e:
            raise ApplicationError(f"Unable to cancel external workflow {self.id!r}: "
                                   f"{e.error.message}", type=NOT_FOUND) from None
