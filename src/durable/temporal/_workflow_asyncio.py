"""`asyncio` as the code of Temporal-style workflow classes sees it: the standard module, except
that `sleep`, `gather` and `wait_for` are durable when called from a running workflow's code,
`create_task` and `wait` give tasks deterministic scopes, and `Event`, `Lock`, `Queue`,
`Semaphore`, `BoundedSemaphore` and `Condition` are asyncio's classes whose waits count as
waiting on the engine.

**Why a module of its own, and not patching `asyncio`.** Temporal gives each workflow its own
event loop, so every `asyncio.sleep` in workflow code becomes a server timer. Durable runs many
workflows, their steps, its own native workflows and the worker as tasks of one shared loop (see
`_runtime`), so the loop cannot tell them apart; replacing `asyncio.sleep` and friends in the
`asyncio` module would reach every library in the process, make the answer depend on the order
modules were imported in (a `from asyncio import sleep` taken before the patch keeps the
original, one taken after gets the replacement), and leave it to a context variable to keep the
worker's own sleeps real. Instead `asyncio` itself is never touched, and `bind` gives the
*namespaces the workflow class's code runs in* (the `__globals__` of its methods: normally the
module defining the class, and those of its base classes) this module in place of `asyncio`,
and these `sleep` / `gather` / `wait_for` in place of names bound to asyncio's. Everything else
is looked up on `asyncio` itself (`__getattr__`), so `asyncio.CancelledError`,
`asyncio.TimeoutError`, `asyncio.Queue` ... are the very same objects.

**In those namespaces, outside workflow code, nothing changes:** each function checks whether it
is called from workflow code of a running Temporal-style workflow (`_runtime.active()`: a context
variable, and not inside an activity) and otherwise returns asyncio's own call with the same
arguments (one function call in between, nothing else), so an activity, a native
`@durable.workflow` or a `main()` defined in the same module sleeps and gathers for real.

Supported forms in the defining module (bound when the class is defined, and again when the
workflow first runs in the process, so imports that come after the class work too):
`import asyncio` / `import asyncio as aio` then `asyncio.sleep(...)`; `from asyncio import sleep,
gather, wait_for`, with or without `as` aliases. Not covered: asyncio calls in functions of
*other* modules that workflow code calls (their `asyncio` is the standard one: use
`workflow.sleep` or `workflow.wait_condition(..., timeout=...)` there, or define the helper in
the workflow's module), and `import asyncio` inside a method (refused at definition time, see
`_definition.check_source`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Coroutine, Iterable, MutableMapping
from typing import Any, Literal, TypeVar

from durable.temporal._runtime import active

T = TypeVar("T")


def sleep(delay: float, result: T | None = None) -> Coroutine[Any, Any, T | None]:
    """In workflow code a durable timer (`delay` <= 0: a bare yield); elsewhere asyncio.sleep."""
    rt = active()
    if rt is None:
        return asyncio.sleep(delay, result)
    return rt.sleep(delay, result)


def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> Awaitable[list[Any]]:
    """In workflow code Durable's gather (one deterministic branch scope per awaitable);
    elsewhere asyncio.gather."""
    rt = active()
    if rt is None:
        return asyncio.gather(*aws, return_exceptions=return_exceptions)
    return rt.gather(*aws, return_exceptions=return_exceptions)


def wait_for(fut: Awaitable[T], timeout: float | None) -> Coroutine[Any, Any, T]:
    """In workflow code a recorded race against a durable timer (TimeoutError when the timer
    wins); elsewhere asyncio.wait_for."""
    rt = active()
    if rt is None:
        return asyncio.wait_for(fut, timeout)
    return rt.wait_for(fut, timeout)


def create_task(coro: Coroutine[Any, Any, T], *, name: str | None = None,
                context: Any = None) -> asyncio.Task[T]:
    """In workflow code a task with a deterministic scope of its own (its durable calls replay
    with the same ids), whose awaiting counts as waiting on the engine; elsewhere
    asyncio.create_task."""
    rt = active()
    if rt is None:
        return asyncio.create_task(coro, name=name, context=context)
    return rt.create_task(coro, name)


def wait(fs: Iterable[asyncio.Future[Any]], *, timeout: float | None = None,
         return_when: str = asyncio.ALL_COMPLETED
         ) -> Coroutine[Any, Any, tuple[set[asyncio.Future[Any]], set[asyncio.Future[Any]]]]:
    """In workflow code asyncio.wait with the timeout a durable timer; elsewhere asyncio.wait."""
    rt = active()
    if rt is None:
        return asyncio.wait(fs, timeout=timeout, return_when=return_when)
    return rt.wait(fs, timeout, return_when)


async def _in_memory(aw: Awaitable[T]) -> T:
    """Block on an in-memory primitive: in workflow code counting as waiting on the engine."""
    rt = active()
    if rt is None:
        return await aw
    return await rt.in_memory(aw)


# asyncio's synchronisation primitives, for workflow code: the same classes, except that a wait
# on one counts as waiting on the engine. Only another part of the run can end such a wait, and
# when every part waits, only a signal or a timer can move the run: the invocation suspends.
# Fast paths skip the bookkeeping when nothing would wait.

class Event(asyncio.Event):
    async def wait(self) -> Literal[True]:
        if self.is_set():
            return True
        return await _in_memory(super().wait())


class Lock(asyncio.Lock):
    async def acquire(self) -> Literal[True]:
        if not self.locked():
            return await super().acquire()
        return await _in_memory(super().acquire())


class Semaphore(asyncio.Semaphore):
    async def acquire(self) -> Literal[True]:
        if not self.locked():
            return await super().acquire()
        return await _in_memory(super().acquire())


class BoundedSemaphore(asyncio.BoundedSemaphore):
    async def acquire(self) -> Literal[True]:
        if not self.locked():
            return await super().acquire()
        return await _in_memory(super().acquire())


class Condition(asyncio.Condition):
    def __init__(self, lock: asyncio.Lock | None = None) -> None:
        super().__init__(lock if lock is not None else Lock())

    async def wait(self) -> Literal[True]:
        return await _in_memory(super().wait())


class Queue(asyncio.Queue[T]):
    async def get(self) -> T:
        if not self.empty():
            return self.get_nowait()
        return await _in_memory(super().get())

    async def put(self, item: T) -> None:
        if not self.full():
            return self.put_nowait(item)
        return await _in_memory(super().put(item))

    async def join(self) -> None:
        return await _in_memory(super().join())


def __getattr__(name: str) -> Any:
    """Everything else is asyncio's own."""
    return getattr(asyncio, name)


def __dir__() -> list[str]:
    return sorted(set(dir(asyncio)) | {name for _, name in _REPLACED})


_REPLACED = ((asyncio.sleep, "sleep"), (asyncio.gather, "gather"), (asyncio.wait_for, "wait_for"),
             (asyncio.create_task, "create_task"), (asyncio.wait, "wait"),
             (asyncio.Event, "Event"), (asyncio.Lock, "Lock"), (asyncio.Semaphore, "Semaphore"),
             (asyncio.BoundedSemaphore, "BoundedSemaphore"), (asyncio.Condition, "Condition"),
             (asyncio.Queue, "Queue"))
_REPLACEMENTS: tuple[tuple[object, object], ...] = (
    (asyncio, sys.modules[__name__]),
    *((original, globals()[name]) for original, name in _REPLACED))
"""(what a namespace may hold, what workflow code gets instead), compared by identity."""


def bind(namespace: MutableMapping[str, Any]) -> None:
    """Give workflow code running in `namespace` this module for `asyncio` and its durable
    functions for names bound to asyncio's (idempotent; other names are left alone)."""
    for name, value in list(namespace.items()):
        for original, replacement in _REPLACEMENTS:
            if value is original:
                namespace[name] = replacement
                break
