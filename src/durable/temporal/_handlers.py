"""The signal and query handlers of one running Temporal-style workflow instance.

Temporal lets workflow code change its handlers while it runs (`workflow.set_signal_handler`,
`set_query_handler`, and their dynamic forms, which receive every name without a handler of its
own), and keeps a signal that arrives before its handler exists until one is set, then delivers
it. So the handlers are per instance, not per class: the class's declared ones, bound to the
instance, overlaid by what the code sets. A replay runs the same `set_*` calls at the same
points, so the registry it rebuilds, and the moment a buffered signal is delivered, are the
ones the run first had.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from durable.errors import UsageError
from durable.temporal._definition import Definition
from durable.temporal.common import RawValue
from durable.temporal.exceptions import WorkflowQueryFailedError


@dataclass(frozen=True, slots=True)
class Delivery:
    """A signal taken from the run's channel: its place in arrival order names the scope an
    async handler of it runs in, whenever it is finally delivered."""

    index: int
    name: str
    args: list[Any]


class Handlers:
    def __init__(self, defn: Definition) -> None:
        self.defn = defn
        self.signals: dict[str, Callable[..., Any]] = {}
        self.queries: dict[str, Callable[..., Any]] = {}
        self.dynamic_signal: Callable[..., Any] | None = None
        self.dynamic_query: Callable[..., Any] | None = None
        self.unhandled: list[Delivery] = []
        """Signals no handler took yet, in arrival order: delivered once one is set."""

    def bind(self, instance: Any) -> None:
        """The class's declared handlers, as methods of `instance`; set before any can run."""
        defn = self.defn
        self.signals = {n: fn.__get__(instance) for n, fn in defn.signals.items()} | self.signals
        self.queries = {n: fn.__get__(instance) for n, fn in defn.queries.items()} | self.queries
        if defn.dynamic_signal is not None and self.dynamic_signal is None:
            self.dynamic_signal = defn.dynamic_signal.__get__(instance)
        if defn.dynamic_query is not None and self.dynamic_query is None:
            self.dynamic_query = defn.dynamic_query.__get__(instance)

    # -- signals -------------------------------------------------------------------------------
    def call_signal(self, delivery: Delivery) -> Any | None:
        """Run the handler of `delivery` (what it returns: a coroutine for an async handler),
        or keep the signal until a handler for it is set (None)."""
        handler = self.signals.get(delivery.name)
        if handler is not None:
            return handler(*typed_args(self.defn, handler, delivery.args))
        if self.dynamic_signal is not None:
            return self.dynamic_signal(delivery.name, [RawValue(a) for a in delivery.args])
        self.unhandled.append(delivery)
        return None

    def set_signal(self, name: str | None, handler: Callable[..., Any] | None) -> list[Delivery]:
        """Set (None: remove) the handler of `name`, or the dynamic one (name None); returns the
        buffered signals it now takes, to be delivered at once in their order."""
        if name is None:
            self.dynamic_signal = handler
        elif handler is None:
            self.signals.pop(name, None)
        else:
            self.signals[name] = handler
        if handler is None:
            return []
        taken = [d for d in self.unhandled if name is None or d.name == name]
        self.unhandled = [d for d in self.unhandled if d not in taken]
        return taken

    # -- queries -------------------------------------------------------------------------------
    def set_query(self, name: str | None, handler: Callable[..., Any] | None) -> None:
        if name is None:
            self.dynamic_query = handler
        elif handler is None:
            self.queries.pop(name, None)
        else:
            self.queries[name] = handler

    def answer(self, name: str, args: Sequence[Any]) -> Any:
        handler = self.queries.get(name)
        if handler is not None:
            result = handler(*typed_args(self.defn, handler, args))
        elif self.dynamic_query is not None:
            result = self.dynamic_query(name, [RawValue(a) for a in args])
        else:
            known = " ".join(sorted(self.queries)) or "none"
            raise WorkflowQueryFailedError(
                f"Query handler for {name!r} expected but not found, known queries: [{known}]")
        if inspect.iscoroutine(result):
            result.close()
            raise UsageError(f"query handler for {name!r} is `async`: queries only read state; "
                             "make it a plain `def`")
        return result


def typed_args(defn: Definition, handler: Callable[..., Any], args: Sequence[Any]) -> list[Any]:
    """Arguments as the (bound) handler's annotations type them: they arrive as plain JSON."""
    try:
        hints = typing.get_type_hints(handler)
    except Exception:
        hints = {}
    names = list(inspect.signature(handler).parameters)
    serializer = defn.durable.serializer
    return [serializer.decode(serializer.encode(a), hints[n]) if n in hints else a
            for n, a in zip(names, args, strict=False)] + list(args[len(names):])
