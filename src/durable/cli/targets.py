"""Finding the workflows a command line names.

A TARGET is `path/to/file.py:name`, `package.module:name`, or a file or module alone, meaning
every workflow defined in it: each @workflow, and each Temporal-style @workflow.defn class of
durable.temporal (as the Durable workflow behind it). Every way this can go wrong raises
`UsageError` with one line that says what was asked, what was found instead and what to type,
because the CLI prints it as is.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from durable.errors import UsageError
from durable.sdk.workflow import Workflow

TARGET_FORMS = "path/to/file.py:name or package.module:name"


def load_workflows(target: str) -> list[Workflow[..., Any]]:
    """Every workflow TARGET names: the one after `:`, or all those its module defines."""
    return [wf for _, wf in _named_workflows(target)]


def load_workflow(target: str) -> Workflow[..., Any]:
    """The single workflow TARGET names; several in one module is an error asking to pick one."""
    found = _named_workflows(target)
    if len(found) > 1:
        names = ", ".join(attr for attr, _ in found)
        raise UsageError(f"{target!r} defines {len(found)} workflows ({names}); pick one, "
                         f"e.g. {target}:{found[0][0]}")
    return found[0][1]


def module_of(target: str) -> ModuleType:
    """The module TARGET names (imported once: a second call returns the same module)."""
    ref = target.partition(":")[0]
    if not ref:
        raise UsageError(f"TARGET {target!r} names no file or module; use {TARGET_FORMS}")
    return _import_file(ref) if _is_path(ref) else _import_module(ref)


def _named_workflows(target: str) -> list[tuple[str, Workflow[..., Any]]]:
    ref, _, attr = target.partition(":")
    module = module_of(target)
    if attr:
        return [(attr, _workflow_attribute(module, ref, attr))]
    found = _defined_in(module)
    if not found:
        raise UsageError(f"no @workflow is defined in {ref!r}; decorate an `async def` with "
                         "@durable.workflow (or a class with durable.temporal's @workflow.defn), "
                         "or name one with TARGET:name")
    return found


def _is_path(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def _import_file(ref: str) -> ModuleType:
    """Import a file as the module named after it, its directory first on sys.path, as
    `python file.py` would: sibling modules the example imports are found, and a sibling that
    imports this file gets the same module rather than a second copy of its workflows."""
    path = Path(ref).resolve()
    if not path.is_file():
        raise UsageError(f"no such file {ref!r}; TARGET is {TARGET_FORMS}")
    _prepend_sys_path(str(path.parent))
    module = _import(path.stem, ref)
    loaded = getattr(module, "__file__", None)
    if loaded is None or Path(loaded).resolve() != path:
        raise UsageError(f"cannot load {ref!r} as module {path.stem!r}: that name is already "
                         f"taken by {loaded or 'a built-in module'}; rename the file")
    return module


def _import_module(ref: str) -> ModuleType:
    """Import a dotted module, the current directory on sys.path as `python -m` would have it
    (a console script does not), so `durable run examples.greeting:greeting` works from the repo."""
    _prepend_sys_path(os.getcwd())
    return _import(ref, ref)


def _prepend_sys_path(directory: str) -> None:
    if directory not in sys.path:
        sys.path.insert(0, directory)


def _import(name: str, ref: str) -> ModuleType:
    """Import `name`, telling a missing module apart from a module that fails while importing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise UsageError(f"no module named {name!r} here or on sys.path; TARGET is "
                             f"{TARGET_FORMS}") from None
        raise _import_failed(ref, e) from None
    except Exception as e:  # the module's own code raised: a bug in the target, shown briefly
        raise _import_failed(ref, e) from None


def _import_failed(ref: str, e: Exception) -> UsageError:
    where = ""
    frames = traceback.extract_tb(e.__traceback__)
    if frames and not isinstance(e, SyntaxError):  # a SyntaxError's message names its line
        where = f" ({frames[-1].filename}, line {frames[-1].lineno})"
    return UsageError(f"importing {ref!r} failed: {type(e).__name__}: {e}{where}")


def _workflow_attribute(module: ModuleType, ref: str, attr: str) -> Workflow[..., Any]:
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            available = ", ".join(name for name, _ in _defined_in(module)) or "none"
            raise UsageError(f"{ref!r} has no attribute {attr!r} "
                             f"(workflows defined there: {available})")
        obj = getattr(obj, part)
    wf = _as_workflow(obj)
    if wf is None:
        raise UsageError(f"{ref}:{attr} is {_kind(obj)}, not a workflow; "
                         "decorate its `async def` with @durable.workflow")
    return wf


def _kind(obj: object) -> str:
    kind = type(obj).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _as_workflow(obj: object) -> Workflow[..., Any] | None:
    """The workflow `obj` is: a @workflow itself, or the Durable workflow behind a Temporal-style
    @workflow.defn class or its @workflow.run method; None for anything else."""
    if isinstance(obj, Workflow):
        return obj
    # Only code that imported durable.temporal can hold a @workflow.defn class; a process that
    # loads only native workflows need not pay for importing it.
    if "durable.temporal" not in sys.modules:
        return None
    from durable.temporal import workflow_behind

    return workflow_behind(obj)

def _defined_in(module: ModuleType) -> list[tuple[str, Workflow[..., Any]]]:
    """Workflows defined in the module itself (not imported into it), each once, in order."""
    seen: set[int] = set()
    found = []
    for attr, obj in vars(module).items():
        wf = _as_workflow(obj)
        if wf is not None and wf.fn.__module__ == module.__name__ and id(wf) not in seen:
            seen.add(id(wf))
            found.append((attr, wf))
    return found
