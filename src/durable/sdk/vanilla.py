"""Plain Python made durable: `@workflow(auto=True)`.

The workflow function, and every function of the user's project it calls, is recompiled from its
source with each call expression routed through a `_CallSite`: at run time the site looks at what
is being called and either calls it as written (the user's own code, builtins, deterministic
stdlib), records its value (`time.time`, `datetime.now`, `random.*`, `uuid.uuid4`), turns it into a
durable sleep (`time.sleep`, `asyncio.sleep`) or runs it as a STEP named after the callee
(everything else: SDKs, HTTP clients, the database driver). Functions are rewritten lazily, the
first time a workflow calls them, and the originals are left alone: the same module runs normally
outside a workflow, whoever imported it and however. docs/guides/vanilla.md says why this and not
an import hook.

A plain `def` workflow runs in a thread; its durable calls are coroutines handed to the
invocation's event loop, the thread waiting for each. When the run must wait on the engine (a
sleep), the coroutine raises `Suspend`, which unwinds the user's code in the thread like any
exception: the thread ends, the invocation returns PENDING, and the next invocation replays the
function from the top in a new thread, recorded calls answering from history.
"""

from __future__ import annotations

import ast
import asyncio
import contextvars
import functools
import inspect
import os
import site
import sys
import sysconfig
import textwrap
import types
import uuid
import weakref
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from durable.errors import SerializationError, UsageError
from durable.model import SubType
from durable.sdk import values as _values
from durable.sdk import wait as _wait
from durable.sdk.executor import CURRENT_SCOPE, CURRENT_STEP, WALL_CLOCK, Executor, Suspend
from durable.sdk.serializer import Serializer
from durable.sdk.step import StepConfig, run_step

DETERMINISTIC_STDLIB = frozenset({
    "abc", "array", "base64", "binascii", "bisect", "builtins", "calendar", "cmath",
    "collections", "contextlib", "copy", "dataclasses", "datetime", "decimal", "difflib", "enum",
    "fnmatch", "fractions", "functools", "hashlib", "heapq", "hmac", "html", "ipaddress",
    "itertools", "json", "keyword", "logging", "math", "numbers", "operator", "pprint", "re",
    "shlex", "statistics", "string", "struct", "textwrap", "types", "typing", "unicodedata",
    "urllib.parse", "zoneinfo", "zlib", "asyncio",
})
"""Modules whose calls run inline: pure functions of their arguments (or, for logging and asyncio,
plumbing whose effects need no recording). Their C halves (`_functools`, `_heapq`, ...) count as
them. `datetime.now` and `asyncio.sleep` are caught before this list is looked at."""

RECORDED_MODULES = frozenset({"time", "random", "uuid"})
"""Modules whose every function is a value to record once (`time.sleep` aside)."""

_FRAME_SENSITIVE = frozenset({"super", "locals", "globals", "vars", "eval", "exec", "dir"})
"""Builtins that look at the calling frame: called from a `_CallSite` they would see the wrong
one, so calls to these names are left as written."""

_CLOCK_READS = frozenset({"now", "utcnow", "today"})


class _Kind(Enum):
    INLINE = "inline"  # call it as written
    USER = "user"  # the user's code: call its rewritten version
    SLEEP = "sleep"
    VALUE = "value"
    STEP = "step"


@dataclass(frozen=True, slots=True)
class _Route:
    kind: _Kind
    name: str = ""
    target: Callable[..., Any] | None = None


@dataclass
class Boundary:
    """Where the user's project ends: modules whose file lies under the project root (the
    `sys.path` entry the workflow's module was imported from), outside the interpreter's stdlib
    and site-packages, and not named in `external` (module names; a package covers its
    submodules)."""

    module: str
    external: tuple[str, ...] = ()
    _root: Path | None = None
    _verdicts: dict[str, bool] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = _project_root(self.module)
        return self._root

    def is_user_module(self, name: str) -> bool:
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = self._verdicts[name] = self._decide(name)
        return verdict

    def _decide(self, name: str) -> bool:
        if _within(name, self.external) or _within(name, ("durable",)):
            return False
        file = getattr(sys.modules.get(name), "__file__", None)
        if file is None:
            return False
        path = Path(file).resolve()
        return path.is_relative_to(self.root) and not any(
            path.is_relative_to(d) for d in _installed_dirs())


def _within(module: str, packages: Sequence[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _project_root(module: str) -> Path:
    """The directory `module` was imported from: its file, up one level per dotted part."""
    file = getattr(sys.modules.get(module), "__file__", None)
    if file is None:
        return Path.cwd().resolve()
    path = Path(file).resolve()
    depth = module.count(".") + (path.name == "__init__.py")
    return path.parents[depth] if module != "__main__" else path.parent


_INSTALLED: list[Path] = []


def _installed_dirs() -> list[Path]:
    """The interpreter's stdlib and site-packages: a virtualenv inside the project is not it."""
    if not _INSTALLED:
        paths = sysconfig.get_paths()
        dirs = {paths[k] for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
        _INSTALLED.extend(Path(d).resolve() for d in dirs)
    return _INSTALLED


@dataclass(frozen=True, slots=True)
class _AutoRun:
    """What the call sites of one invocation need: the run, its loop, and where its project
    ends."""

    executor: Executor
    loop: asyncio.AbstractEventLoop
    boundary: Boundary


CURRENT_AUTO: ContextVar[_AutoRun | None] = ContextVar("durable_auto_run", default=None)

_WORKFLOW_THREADS: list[ThreadPoolExecutor] = []
"""Where plain `def` workflow code runs, made on first use. Not the loop's default executor:
that one runs sync step bodies, and workflow threads waiting there for their steps could take
every thread of it and wait forever. Past 64 at once, sync workflow code waits its turn (their
steps never do). A forked child makes its own: the parent's threads are not in it."""
os.register_at_fork(after_in_child=_WORKFLOW_THREADS.clear)


async def _in_workflow_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if not _WORKFLOW_THREADS:
        _WORKFLOW_THREADS.append(ThreadPoolExecutor(64, thread_name_prefix="durable-workflow"))
    run = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_WORKFLOW_THREADS[0], run)


async def run_auto(ex: Executor, fn: Callable[..., Any], boundary: Boundary,
                   inputs: tuple[Any, ...]) -> Any:
    """Run an auto workflow's body: an `async def` on this loop, a `def` in a thread."""
    token = CURRENT_AUTO.set(_AutoRun(ex, asyncio.get_running_loop(), boundary))
    try:
        body = rewritten(fn)
        if body is None:
            raise UsageError(f"@workflow(auto=True) {fn.__qualname__}: its source cannot be "
                             "read, so its calls cannot be made durable; define it in a .py file")
        if inspect.iscoroutinefunction(fn):
            return await body(*inputs)
        return await _in_workflow_thread(body, *inputs)
    finally:
        CURRENT_AUTO.reset(token)


def _active() -> _AutoRun | None:
    """The auto run whose workflow code is running here; None in a step body or outside."""
    run = CURRENT_AUTO.get()
    if run is None or CURRENT_STEP.get() is not None or CURRENT_SCOPE.get(None) is None:
        return None
    return run


def _module_of(fn: Any) -> tuple[str, str, Callable[..., Any] | None]:
    """(module, qualified name, the Python function to rewrite if the user's) of a callee."""
    if inspect.ismethod(fn):
        func = fn.__func__
        return getattr(func, "__module__", "") or "", func.__qualname__, func
    if inspect.isfunction(fn):
        return fn.__module__ or "", fn.__qualname__, fn
    owner = getattr(fn, "__self__", None)
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    if isinstance(owner, types.ModuleType):
        return owner.__name__, getattr(fn, "__name__", name), None
    if owner is None:
        return getattr(fn, "__module__", None) or type(fn).__module__, name, None
    cls = owner if isinstance(owner, type) else type(owner)
    return cls.__module__, name, None


def _step_name(fn: Any, module: str, qualname: str) -> str:
    """`module.qualname` under the shortest module the callee is used from: `requests.post`
    for `requests.api.post`, `sqlite3.connect` for `_sqlite3.connect`, `os.getpid` for
    `posix.getpid`: the package that exposes the same object (the function, or a method's
    class) under that name. Only the defining module's own packages are candidates."""
    path = qualname.rpartition(".")[0]
    if not path:
        path = qualname
        held: Any = getattr(fn, "__func__", fn)
    else:
        owner = getattr(fn, "__self__", None)
        held = owner if isinstance(owner, type) else type(owner) if owner is not None else None
    parts = module.split(".")
    candidates = [".".join(parts[:n]) for n in range(1, len(parts))]
    candidates += ["os" if module in ("posix", "nt") else "", module.lstrip("_")]
    for public in candidates:
        found: Any = sys.modules.get(public) if public else None
        for attr in path.split("."):
            found = getattr(found, attr, None)
        if found is not None and found is held:
            return f"{public}.{qualname}"
    return f"{module}.{qualname}"


def _route(run: _AutoRun, fn: Any) -> _Route:
    if isinstance(fn, type):
        return _Route(_Kind.INLINE)  # constructing a value; its methods are routed when called
    owner = getattr(fn, "__self__", None)
    if (isinstance(owner, type) and issubclass(owner, date)
            and getattr(fn, "__name__", "") in _CLOCK_READS):
        return _Route(_Kind.VALUE, f"{owner.__name__}.{fn.__name__}")
    module, qualname, func = _module_of(fn)
    base = module.lstrip("_")
    if (base, qualname) in (("time", "sleep"), ("asyncio", "sleep"), ("asyncio.tasks", "sleep")):
        return _Route(_Kind.SLEEP, f"{base.split('.')[0]}.sleep")
    if base in RECORDED_MODULES:
        return _Route(_Kind.VALUE, f"{base}.{qualname.rpartition('.')[2]}")
    if _within(base, tuple(DETERMINISTIC_STDLIB)) or _within(module, ("durable",)):
        return _Route(_Kind.INLINE)
    if run.boundary.is_user_module(module):
        target = None if func is None else rewritten(func)
        if target is None:
            return _Route(_Kind.INLINE)
        if inspect.ismethod(fn):
            return _Route(_Kind.USER, target=types.MethodType(target, fn.__self__))
        return _Route(_Kind.USER, target=target)
    return _Route(_Kind.STEP, _step_name(fn, module, qualname))


class _CallSite:
    """The calls of one rewritten function: `call` in sync code, `call_async` (awaited) in an
    `async def`. `filename` and the line each call passes name the call in errors."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def call(self, line: int, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        run = _active()
        if run is None:
            return fn(*args, **kwargs)
        route = _route(run, fn)
        if route.kind is _Kind.INLINE:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result) and _is_durable(fn):
                # a @step or ctx operation called from a plain def: it is a durable call
                return self._block(run, line, _awaited(result))
            return result
        if route.kind is _Kind.USER:
            assert route.target is not None
            return route.target(*args, **kwargs)
        return self._block(run, line, self._durable(run, route, line, fn, args, kwargs))

    async def call_async(self, line: int, awaited: bool, fn: Any, /, *args: Any,
                         **kwargs: Any) -> Any:
        run = _active()
        route = _Route(_Kind.INLINE) if run is None else _route(run, fn)
        if route.kind is _Kind.USER and not awaited and _plain_sync(route.target):
            # the user's own blocking code: in a thread, where its durable calls can block
            return await _in_workflow_thread(route.target, *args, **kwargs)  # type: ignore[arg-type]
        if route.kind in (_Kind.INLINE, _Kind.USER):
            result = (route.target or fn)(*args, **kwargs)
            return await result if awaited else result
        assert run is not None
        return await self._durable(run, route, line, fn, args, kwargs)

    def _block(self, run: _AutoRun, line: int, work: Coroutine[Any, Any, Any]) -> Any:
        """Run a durable call on the invocation's loop and wait for it in this thread."""
        try:
            on_loop = asyncio.get_running_loop() is run.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            work.close()
            raise UsageError(
                f"{self.filename}:{line}: a durable call inside a lambda, generator expression "
                "or class body of an `async def` workflow cannot be awaited there; make it a "
                "statement of the function (or a list comprehension)")
        future = asyncio.run_coroutine_threadsafe(work, run.loop)
        while True:
            try:
                return future.result(timeout=1.0)
            except TimeoutError:
                if future.done():
                    raise
                if run.loop.is_closed() or not run.loop.is_running():
                    future.cancel()  # the invocation is gone: end this thread with it
                    raise Suspend from None

    async def _durable(self, run: _AutoRun, route: _Route, line: int, fn: Any,
                       args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ex, scope = run.executor, CURRENT_SCOPE.get()
        if route.kind is _Kind.SLEEP:
            duration = args[0] if args else kwargs.get("delay", kwargs.get("secs", 0))
            if duration > 0:  # sleep(0) only yields to the loop: no timer to keep
                await _wait.sleep(ex, scope, duration, route.name)
            return args[1] if len(args) > 1 else kwargs.get("result")  # asyncio.sleep's result
        if route.kind is _Kind.VALUE:
            produce, hint = _recorded_value(route.name, fn, args, kwargs)
            return _values.record(ex, scope, _value_type(route.name), route.name, produce, hint)
        where = f"{self.filename}:{line}"
        cfg = StepConfig(name=route.name, serializer=_CallResults(ex.serializer, where))
        return await run_step(ex, scope, fn, args, kwargs, cfg)


def _is_durable(fn: Any) -> bool:
    """A callable of Durable's own: a @step function, a Context method."""
    return any(_within(m, ("durable",)) for m in (type(fn).__module__, _module_of(fn)[0]))


def _plain_sync(fn: Callable[..., Any] | None) -> bool:
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    return isinstance(code, types.CodeType) and not code.co_flags & (
        inspect.CO_COROUTINE | inspect.CO_GENERATOR | inspect.CO_ASYNC_GENERATOR)


async def _awaited(work: Any) -> Any:
    return await work


def _value_type(name: str) -> SubType:
    module = name.partition(".")[0]
    return {"random": SubType.RANDOM, "uuid": SubType.UUID}.get(module, SubType.NOW)


def _recorded_value(name: str, fn: Any, args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> tuple[Callable[[], Any], Any]:
    """How to produce a recorded value, and the type to read it back as. Clock reads go
    through WALL_CLOCK, so durable.testing's virtual clock is what a workflow reads."""
    clock = WALL_CLOCK.get()
    match name:
        case "time.time":
            return clock, float
        case "time.time_ns":
            return lambda: int(clock() * 1e9), int
        case "datetime.now":
            tz = args[0] if args else kwargs.get("tz")
            return lambda: datetime.fromtimestamp(clock(), tz), datetime
        case "datetime.utcnow":
            return lambda: datetime.fromtimestamp(clock(), UTC).replace(tzinfo=None), datetime
        case "datetime.today":
            return lambda: datetime.fromtimestamp(clock()), datetime
        case "date.today":
            return lambda: datetime.fromtimestamp(clock()).date(), date
    hint = {"uuid.uuid1": uuid.UUID, "uuid.uuid4": uuid.UUID}.get(name, Any)
    return lambda: fn(*args, **kwargs), hint


class _CallResults:
    """The workflow's serializer, whose failure to encode a call's result says which call it
    was and what to do: the one error a user sees for an unserializable result."""

    def __init__(self, inner: Serializer, where: str) -> None:
        self.inner = inner
        self.where = where

    def encode(self, value: Any) -> str:
        try:
            return self.inner.encode(value)
        except Exception as e:
            raise SerializationError(
                f"called at {self.where}, it returned a {type(value).__qualname__}, which "
                f"cannot be recorded ({e}). Calls that leave your project are steps and their "
                "results are recorded: move the code that uses this value into a function of "
                "your own decorated with @durable.step that returns plain data, or give the "
                "workflow a serializer= that handles this type") from None

    def decode(self, data: str, type_hint: Any = Any) -> Any:
        return self.inner.decode(data, type_hint)


# -- rewriting ------------------------------------------------------------------------------

_CALL = "__durable_call__"
_CALL_ASYNC = "__durable_call_async__"
_REWRITTEN: weakref.WeakKeyDictionary[Callable[..., Any], Callable[..., Any] | None] = (
    weakref.WeakKeyDictionary())


def rewritten(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    """`fn` with its calls routed through call sites; None if it has no readable source (a
    lambda, code typed at a prompt) or would not compile the same outside its class (a method
    using zero-argument super() or private `__names`)."""
    if fn not in _REWRITTEN:
        _REWRITTEN[fn] = _rewrite(fn)
    return _REWRITTEN[fn]


def _rewrite(fn: Callable[..., Any]) -> Callable[..., Any] | None:
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType) or "__class__" in code.co_freevars:
        return None
    if {_CALL, _CALL_ASYNC} & set(code.co_freevars):
        return fn  # defined inside rewritten code (a nested def, a lambda): routed already
    try:
        filename = inspect.getsourcefile(fn) or code.co_filename
        source = textwrap.dedent(inspect.getsource(fn))
        tree = ast.parse(source)
        ast.increment_lineno(tree, code.co_firstlineno - 1)  # lines as in the file, for errors
    except (OSError, TypeError, SyntaxError):
        return None
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    fdef = tree.body[0]
    if fdef.name != fn.__name__ or _uses_private_names(fdef):
        return None
    _strip_evaluated_at_definition(fdef)
    fdef = _Rewriter().visit(fdef)
    # A factory whose parameters are the call sites and fn's free variables, so the rewritten
    # function's free variables can be given fn's own cells: closures keep working.
    factory = ast.FunctionDef(
        name="__durable_factory__",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(a) for a in (
            _CALL, _CALL_ASYNC, *code.co_freevars)], vararg=None, kwonlyargs=[],
            kw_defaults=[], kwarg=None, defaults=[]),
        body=[fdef, ast.Return(ast.Name(fdef.name, ast.Load()))], decorator_list=[],
        returns=None)
    module = ast.Module([factory], type_ignores=[])
    ast.copy_location(factory, fdef)
    ast.fix_missing_locations(module)
    compiled = compile(module, filename, "exec", dont_inherit=True)
    inner = _code_named(_code_named(compiled, "__durable_factory__"), fn.__name__)
    site_ = _CallSite(filename)
    cells = dict(zip(code.co_freevars, getattr(fn, "__closure__", None) or (), strict=True))
    cells[_CALL] = types.CellType(site_.call)
    cells[_CALL_ASYNC] = types.CellType(site_.call_async)
    new = types.FunctionType(inner, fn.__globals__, fn.__name__,
                             getattr(fn, "__defaults__", None),
                             tuple(cells[name] for name in inner.co_freevars))
    new.__kwdefaults__ = getattr(fn, "__kwdefaults__", None)
    new.__annotations__ = dict(getattr(fn, "__annotations__", {}))
    new.__qualname__ = fn.__qualname__
    new.__doc__ = fn.__doc__
    return new


def _uses_private_names(fdef: ast.AST) -> bool:
    """`self.__x` in a method is compiled as `self._Class__x`; recompiled outside its class
    it would not be, so such a function runs as written."""
    return any(name.startswith("__") and not name.endswith("__") for node in ast.walk(fdef)
               for name in (getattr(node, "id", None), getattr(node, "attr", None))
               if isinstance(name, str))


def _code_named(code: types.CodeType, name: str) -> types.CodeType:
    return next(c for c in code.co_consts if isinstance(c, types.CodeType) and c.co_name == name)


def _strip_evaluated_at_definition(fdef: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
    """Decorators, defaults and annotations were evaluated when fn was defined; the new
    function takes fn's, rather than evaluating them again (and calling things) now."""
    fdef.decorator_list = []
    fdef.returns = None
    a = fdef.args
    a.defaults = []
    a.kw_defaults = [None] * len(a.kwonlyargs)
    for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]:
        if arg is not None:
            arg.annotation = None


class _Rewriter(ast.NodeTransformer):
    """Every call `f(a, k=b)` becomes `__durable_call__(line, f, a, k=b)`, or in an `async def`
    (where it can be awaited) `await __durable_call_async__(line, awaited, f, a, k=b)`."""

    def __init__(self) -> None:
        self._can_await = [False]

    def _scoped(self, node: ast.AST, can_await: bool) -> ast.AST:
        self._can_await.append(can_await)
        try:
            return self.generic_visit(node)
        finally:
            self._can_await.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._scoped(node, False)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._scoped(node, True)

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        return self._scoped(node, False)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> ast.AST:
        return self._scoped(node, False)  # an await would make it an async generator

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        return self._scoped(node, False)

    def visit_Await(self, node: ast.Await) -> ast.AST:
        call = node.value
        if not (isinstance(call, ast.Call) and self._can_await[-1] and _rewritable(call)):
            return self.generic_visit(node)
        self.generic_visit(call)
        return ast.copy_location(ast.Await(self._routed(call, awaited=True)), node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not _rewritable(node):
            return node
        if self._can_await[-1]:
            return ast.copy_location(ast.Await(self._routed(node, awaited=False)), node)
        return ast.copy_location(ast.Call(
            ast.Name(_CALL, ast.Load()), [ast.Constant(node.lineno), node.func, *node.args],
            node.keywords), node)

    @staticmethod
    def _routed(node: ast.Call, awaited: bool) -> ast.Call:
        return ast.copy_location(ast.Call(
            ast.Name(_CALL_ASYNC, ast.Load()),
            [ast.Constant(node.lineno), ast.Constant(awaited), node.func, *node.args],
            node.keywords), node)


def _rewritable(node: ast.Call) -> bool:
    return not (isinstance(node.func, ast.Name) and node.func.id in _FRAME_SENSITIVE)

