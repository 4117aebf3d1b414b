"""What `@workflow.defn` makes of a Temporal-style class: a `Definition` holding its run method,
signal and query handlers, and the Durable `Workflow` the engine invokes.

Everything that cannot be mapped is refused here, while the class is being defined: decorators
of unsupported features raise when applied, and the class body's source is scanned for
`workflow.X` and `asyncio.X` names outside the supported subset, so a workflow never starts only
to behave differently from Temporal halfway through.

It is also here that the class's code is given durable `asyncio.sleep`, `gather` and `wait_for`
(`Definition.bind_asyncio`, mechanism and supported forms in `_workflow_asyncio`): explicitly,
for this class's namespaces only, and never by modifying `asyncio`.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from durable.errors import UsageError
from durable.sdk.context import Context
from durable.sdk.workflow import REGISTRY as DURABLE_REGISTRY
from durable.sdk.workflow import Workflow
from durable.temporal.exceptions import UnsupportedFeature

C = TypeVar("C", bound=type)

RUN_ATTR = "__durable_temporal_run__"
SIGNAL_ATTR = "__durable_temporal_signal__"
QUERY_ATTR = "__durable_temporal_query__"
UPDATE_ATTR = "__durable_temporal_update__"
VALIDATOR_ATTR = "__durable_temporal_update_validator__"
INIT_ATTR = "__durable_temporal_init__"
DEFN_ATTR = "__durable_temporal_definition__"
DYNAMIC_ATTR = "__durable_temporal_dynamic__"

DEFINITIONS: dict[str, Definition] = {}
"""Every @workflow.defn class by workflow name: what clients and child calls by name find."""

DURABLE_ASYNCIO = frozenset({"sleep", "gather", "wait_for"})
"""The asyncio calls workflow code gets durable versions of (`_workflow_asyncio`)."""

IN_MEMORY_ASYNCIO = frozenset({
    "create_task", "wait", "Event", "Lock", "Semaphore", "BoundedSemaphore", "Condition",
    "Queue"})
"""asyncio's tasks and in-memory primitives, which workflow code gets versions of that count as
waiting on the engine while they block (`_workflow_asyncio`), so a run whose parts all wait on
each other and on timers or signals suspends instead of hanging."""

ASYNCIO_SUPPORTED = DURABLE_ASYNCIO | IN_MEMORY_ASYNCIO | frozenset({
    "TimeoutError", "CancelledError", "QueueEmpty", "QueueFull", "Task", "FIRST_COMPLETED",
    "FIRST_EXCEPTION", "ALL_COMPLETED", "iscoroutine", "iscoroutinefunction"})
"""asyncio names a workflow class may use: those given workflow versions, and passive ones."""

_ASYNCIO_HINTS = {
    "ensure_future": "use asyncio.create_task(...)",
    "as_completed": "use workflow.wait(..., return_when=asyncio.FIRST_COMPLETED)",
    "timeout": "use asyncio.wait_for(...) or workflow.wait_condition(..., timeout=...)",
}

RUNTIME_SIGNAL_HANDLERS = frozenset({"set_signal_handler", "set_dynamic_signal_handler"})
"""workflow calls that give a class signal handlers its declarations do not show."""


@dataclass
class Definition:
    """One Temporal-style workflow class, and the Durable workflow that runs it."""

    cls: type
    name: str
    run_fn: Callable[..., Any]
    init_takes_args: bool
    signals: dict[str, Callable[..., Any]] = field(default_factory=dict)
    queries: dict[str, Callable[..., Any]] = field(default_factory=dict)
    dynamic_signal: Callable[..., Any] | None = None
    dynamic_query: Callable[..., Any] | None = None
    sets_signal_handlers: bool = False
    """Its code calls workflow.set_signal_handler / set_dynamic_signal_handler."""
    updates: dict[str, UpdateHandler] = field(default_factory=dict)
    failure_types: tuple[type[BaseException], ...] = ()
    durable: Workflow[..., Any] = field(init=False)
    namespaces: list[dict[str, Any]] = field(init=False, repr=False)
    """The global namespaces the class's code runs in (see `code_namespaces`)."""
    _bound_for_run: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.durable = _durable_workflow(self)
        self.namespaces = code_namespaces(self.cls)

    def bind_asyncio(self) -> None:
        """Give the class's code durable asyncio.sleep, gather and wait_for: `asyncio` and names
        imported from it, in the namespaces its code runs in, become `_workflow_asyncio`'s."""
        from durable.temporal import _workflow_asyncio

        for namespace in self.namespaces:
            _workflow_asyncio.bind(namespace)

    def prepare_run(self) -> None:
        """Called as the workflow's code is about to run: bind once more, once per process, so
        that names a module bound after the class statement (an import at its end, a module-level
        `sleep = asyncio.sleep`) are covered too."""
        if not self._bound_for_run:
            self._bound_for_run = True
            self.bind_asyncio()

    @property
    def accepts_signals(self) -> bool:
        """Whether runs take signals at all (updates travel on the signal channel too): only
        then is the signal pump (an operation of its own in each run's history) started, so
        runs of classes without any keep theirs."""
        return (bool(self.signals) or bool(self.updates) or self.dynamic_signal is not None
                or self.sets_signal_handlers)

    def signal_name(self, ref: str | Callable[..., Any]) -> str:
        return _handler_name(self, ref, self.signals, SIGNAL_ATTR, "signal")

    def query_name(self, ref: str | Callable[..., Any]) -> str:
        return _handler_name(self, ref, self.queries, QUERY_ATTR, "query")

    def update_name(self, ref: str | Callable[..., Any]) -> str:
        handlers = {name: u.fn for name, u in self.updates.items()}
        # No update handler can be set at run time, so a name must be one declared.
        return _handler_name(self, ref, handlers, UPDATE_ATTR, "update", settable=False)


@dataclass(frozen=True, slots=True)
class UpdateHandler:
    """An @workflow.update method and the validator that may reject a call before it is
    accepted."""

    fn: Callable[..., Any]
    validator: Callable[..., Any] | None


def _handler_name(defn: Definition, ref: str | Callable[..., Any],
                  handlers: dict[str, Callable[..., Any]], attr: str, kind: str, *,
                  settable: bool = True) -> str:
    if isinstance(ref, str) and settable:  # any name, as in Temporal: set at run time maybe
        return ref
    name = ref if isinstance(ref, str) else getattr(ref, attr, None)
    if not isinstance(name, str) or name not in handlers:
        known = ", ".join(handlers) or "none"
        raise UsageError(f"workflow {defn.name!r} has no {kind} handler {ref!r} "
                         f"(its {kind} handlers: {known})")
    return name


def definition_of(ref: object) -> Definition:
    """The definition behind a class, its run method, or a workflow name."""
    if isinstance(ref, str):
        try:
            return DEFINITIONS[ref]
        except KeyError:
            known = ", ".join(sorted(DEFINITIONS)) or "none is loaded"
            raise UsageError(f"no @workflow.defn class named {ref!r} is loaded in this process "
                             f"(loaded: {known}); import the module that defines it") from None
    found = getattr(ref, DEFN_ATTR, None)
    if isinstance(found, Definition):
        return found
    raise UsageError(f"{ref!r} is not a @workflow.defn class or its @workflow.run method")


# -- decorators --------------------------------------------------------------------------------

def mark_run(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not inspect.iscoroutinefunction(fn):
        raise UsageError(f"@workflow.run {fn.__qualname__} must be an `async def`")
    setattr(fn, RUN_ATTR, True)
    return fn


def mark_handler(fn: Callable[..., Any] | None, name: str | None, dynamic: bool, kind: str,
                 attr: str) -> Any:
    """@workflow.signal and @workflow.query, bare or with options. A dynamic handler takes every
    name without a handler of its own, as `(name, args: Sequence[RawValue])`."""
    if dynamic and name is not None:
        raise UsageError(f"@workflow.{kind}(dynamic=True) takes no name=: it receives every "
                         "name without a handler of its own")

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        if kind == "query" and inspect.iscoroutinefunction(f):
            raise UsageError(f"@workflow.query {f.__qualname__} must not be `async`: queries "
                             "only read state")
        if dynamic:
            setattr(f, DYNAMIC_ATTR, kind)
        else:
            setattr(f, attr, name or f.__name__)
        return f
    return wrap(fn) if fn is not None else wrap


def mark_update(fn: Callable[..., Any] | None, name: str | None, dynamic: bool) -> Any:
    """@workflow.update, bare or with options. The decorated method gains `.validator`, a
    decorator for the method that may reject a call (Temporal's `@my_update.validator`)."""
    if dynamic:
        raise UnsupportedFeature("dynamic update handlers (@workflow.update(dynamic=True))",
                                 "declare each update by name")

    def wrap(f: Callable[..., Any]) -> Callable[..., Any]:
        def validator(check: Callable[..., Any]) -> Callable[..., Any]:
            if inspect.iscoroutinefunction(check):
                raise UsageError(f"update validator {check.__qualname__} must not be `async`: "
                                 "it decides from the workflow's state as it stands")
            setattr(f, VALIDATOR_ATTR, check)
            return check

        setattr(f, UPDATE_ATTR, name or f.__name__)
        f.validator = validator  # type: ignore[attr-defined]
        return f
    return wrap(fn) if fn is not None else wrap


def make_definition(cls: type, name: str | None, failure_types: Sequence[type[BaseException]]
                    ) -> Definition:
    run_fns, signals, queries, updates = [], {}, {}, {}
    dynamic: dict[str, Callable[..., Any]] = {}
    for klass in reversed(cls.__mro__):
        for member in vars(klass).values():
            if isinstance(kind := getattr(member, DYNAMIC_ATTR, None), str):
                dynamic[kind] = member
            if getattr(member, RUN_ATTR, False):
                run_fns.append(member)
            if isinstance(sig := getattr(member, SIGNAL_ATTR, None), str):
                signals[sig] = member
            if isinstance(query := getattr(member, QUERY_ATTR, None), str):
                queries[query] = member
            if isinstance(update := getattr(member, UPDATE_ATTR, None), str):
                updates[update] = UpdateHandler(member, getattr(member, VALIDATOR_ATTR, None))
    if not run_fns:
        raise UsageError(f"@workflow.defn class {cls.__qualname__} has no @workflow.run method")
    if len({fn.__name__ for fn in run_fns}) > 1:
        raise UsageError(f"@workflow.defn class {cls.__qualname__} has several @workflow.run "
                         "methods; keep one")
    used = check_source(cls)
    init = vars(cls).get("__init__")
    defn = Definition(cls, name or cls.__name__, run_fns[-1],
                      init_takes_args=bool(getattr(init, INIT_ATTR, False)), signals=signals,
                      queries=queries, updates=updates, dynamic_signal=dynamic.get("signal"),
                      dynamic_query=dynamic.get("query"),
                      sets_signal_handlers=bool(used & RUNTIME_SIGNAL_HANDLERS),
                      failure_types=tuple(failure_types))
    defn.bind_asyncio()
    setattr(cls, DEFN_ATTR, defn)
    setattr(defn.run_fn, DEFN_ATTR, defn)
    DEFINITIONS[defn.name] = defn
    return defn


def code_namespaces(cls: type) -> list[dict[str, Any]]:
    """The global namespaces the code of `cls` runs in: the `__globals__` of the functions its
    classes (base classes included) define, unwrapped from decorators; normally the defining
    modules' dicts. The standard library's and Durable's own are left out: no workflow code
    lives there, and their asyncio calls must stay asyncio's."""
    found: dict[int, dict[str, Any]] = {}
    for klass in cls.__mro__:
        for member in vars(klass).values():
            fn = member.fget if isinstance(member, property) else getattr(member, "__func__",
                                                                           member)
            if not callable(fn):
                continue
            try:
                fn = inspect.unwrap(fn)
            except ValueError:  # a cycle of __wrapped__
                continue
            namespace = getattr(fn, "__globals__", None)
            if isinstance(namespace, dict) and not _never_bound(namespace):
                found.setdefault(id(namespace), namespace)
    return list(found.values())


def _never_bound(namespace: dict[str, Any]) -> bool:
    module = namespace.get("__name__")
    top = module.partition(".")[0] if isinstance(module, str) else ""
    return top == "durable" or top in sys.stdlib_module_names


def _durable_workflow(defn: Definition) -> Workflow[..., Any]:
    """A Durable workflow whose parameters are the run method's (less `self`), so inputs
    encode and decode by the run method's annotations."""
    from durable.temporal._cron import TemporalWorkflow, run_input  # they import this module
    from durable.temporal._runtime import Runtime

    try:
        hints = typing.get_type_hints(defn.run_fn)
    except Exception:  # unresolvable forward references: plain JSON
        hints = {}
    params = list(inspect.signature(defn.run_fn).parameters.values())[1:]

    async def body(ctx: Context, *args: Any) -> Any:
        return await run_input(ctx, defn, args, Runtime(defn, ctx).execute)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  annotation=Context)
    body.__signature__ = inspect.Signature([ctx_param, *params])  # type: ignore[attr-defined]
    body.__annotations__ = {p.name: hints.get(p.name, Any) for p in params}
    body.__annotations__["return"] = hints.get("return", Any)
    body.__name__ = body.__qualname__ = defn.name
    body.__module__ = defn.cls.__module__
    body.__doc__ = defn.cls.__doc__
    wf: Workflow[..., Any] = TemporalWorkflow(body, name=defn.name)
    DURABLE_REGISTRY[wf.name] = wf
    return wf


# -- definition-time checks --------------------------------------------------------------------

def check_source(cls: type) -> set[str]:
    """Refuse, naming it, any `workflow.X` or `asyncio.X` the class uses that is not mapped;
    returns the `workflow.X` names it uses."""
    from durable.temporal import _workflow_asyncio as workflow_asyncio
    from durable.temporal import workflow as workflow_api

    module = sys.modules.get(cls.__module__)
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # defined where the source is not kept (a REPL): trust it
        return set()
    if module is None:
        return set()
    used: set[str] = set()
    scope = vars(module)
    where = f"workflow class {cls.__qualname__}"
    line0 = inspect.getsourcelines(cls)[1] - 1
    for node in ast.walk(ast.parse(source)):
        at = f"{where} (line {line0 + getattr(node, 'lineno', 1)})"
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = scope.get(node.value.id)
            if owner is workflow_api:
                used.add(node.attr)
            if owner is workflow_api and node.attr not in workflow_api.__all__:
                raise UnsupportedFeature(f"workflow.{node.attr}, used in {at}",
                                         workflow_api.UNSUPPORTED.get(node.attr, ""))
            if (owner is asyncio or owner is workflow_asyncio) and (
                    node.attr not in ASYNCIO_SUPPORTED):
                raise UnsupportedFeature(f"asyncio.{node.attr} inside workflow code, used in {at}",
                                         _ASYNCIO_HINTS.get(node.attr, ""))
        elif isinstance(node, ast.Name):
            obj = scope.get(node.id)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and getattr(
                    obj, "__module__", "").startswith("asyncio.") and (
                    obj.__name__ not in ASYNCIO_SUPPORTED):
                raise UnsupportedFeature(f"asyncio.{obj.__name__} inside workflow code, used in "
                                         f"{at}", _ASYNCIO_HINTS.get(obj.__name__, ""))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            _check_import(node, at)
    return used


_LOCAL_IMPORT_HINT = ("import asyncio (or `from asyncio import sleep, gather, wait_for`) at the "
                      "top of the module: @workflow.defn makes those durable for the class's "
                      "code, while an import inside the class binds the standard ones")


def _check_import(node: ast.Import | ast.ImportFrom, at: str) -> None:
    """An asyncio import inside the class binds asyncio's own module or functions in a local
    scope, which `Definition.bind_asyncio` cannot reach: the sleep would silently not be
    durable. Refused, except for the passive names workflow code may use anyway."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.partition(".")[0] == "asyncio":
                raise UnsupportedFeature(f"`import {alias.name}` inside workflow code, in {at}",
                                         _LOCAL_IMPORT_HINT)
        return
    if node.module is None or node.module.partition(".")[0] != "asyncio":
        return
    for alias in node.names:
        if alias.name in DURABLE_ASYNCIO or alias.name == "*":
            raise UnsupportedFeature(f"`from {node.module} import {alias.name}` inside workflow "
                                     f"code, in {at}", _LOCAL_IMPORT_HINT)
        if alias.name not in ASYNCIO_SUPPORTED:
            raise UnsupportedFeature(f"asyncio.{alias.name} inside workflow code, imported in "
                                     f"{at}", _ASYNCIO_HINTS.get(alias.name, ""))

