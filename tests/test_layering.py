"""The layers of src/durable and the import edges allowed between them (docs/reference/layout.md).

Read from the source with `ast`, so an import inside a function or under TYPE_CHECKING counts
like any other: a layer that may not know another may not name it anywhere. Each rule below has
a counter-example checked against the same functions, so a rule that stopped matching anything
would fail too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

# Which layers each layer may import (besides itself). The SDK meets the engine only through
# the operation model; the store knows only the model; the engine knows no user code, no
# transport and no front end; the front ends (cli, server) reach the engine through `client`.
ALLOWED: dict[str, set[str]] = {
    "errors": {"model"},
    "model": {"errors"},
    "sdk": {"model", "errors"},
    # What user code imports beside the SDK to make another library's calls durable: it meets
    # the engine only as workflow code does, through the SDK.
    "integrations": {"sdk", "errors"},
    "store": {"model", "errors"},
    "engine": {"store", "model", "errors"},
    "invoke": {"engine", "store", "sdk", "model", "errors"},
    "client": {"engine", "store", "sdk", "model", "errors"},
    "views": {"client", "sdk", "model", "errors"},
    "testing": {"client", "engine", "store", "sdk", "model", "errors"},
    "temporal": {"client", "engine", "store", "sdk", "model", "errors"},
    "server": {"client", "views", "invoke", "engine", "store", "sdk", "model", "errors"},
    "cli": {"client", "views", "server", "invoke", "engine", "store", "sdk", "temporal",
            "model", "errors"},
}
ALLOWED[""] = set(ALLOWED)  # durable/__init__.py: the public API, from every layer


@dataclass(frozen=True)
class Edge:
    importer: str  # module path, e.g. durable.store.runs
    imported: str  # the module named, e.g. durable.model
    names: tuple[str, ...]  # names taken from it (empty for `import x`)
    line: int

    def where(self) -> str:
        return f"{self.importer}:{self.line}"


def layer(module: str) -> str:
    """durable.store.runs -> store; durable.client -> client; durable -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def package(module: str, is_package: bool) -> str:
    return module if is_package else module.rpartition(".")[0]


def edges(module: str, source: str, is_package: bool = False) -> Iterator[Edge]:
    """Every import of a `durable` module in `source` (the text of `module`)."""
    here = package(module, is_package)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "durable":
                    yield Edge(module, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")[: len(here.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] == "durable":
                yield Edge(module, target, tuple(a.name for a in node.names), node.lineno)


def layer_violation(edge: Edge) -> str | None:
    source, target = layer(edge.importer), layer(edge.imported)
    if source == target or target in ALLOWED[source]:
        return None
    return f"{edge.where()}: {source or 'durable'} may not import {edge.imported}"


def private_violation(edge: Edge) -> str | None:
    """A `_private` module or name used from outside the package that holds it."""
    parts = edge.imported.split(".")
    for i, part in enumerate(parts):
        if _private(part) and not inside(edge.importer, ".".join(parts[:i])):
            return f"{edge.where()}: imports the private module {edge.imported}"
    holder = package(edge.imported, edge.imported in PACKAGES)
    for name in edge.names:
        if _private(name) and not inside(edge.importer, holder):
            return f"{edge.where()}: imports {edge.imported}.{name}, private to {holder}"
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def inside(module: str, pkg: str) -> bool:
    return module == pkg or module.startswith(pkg + ".")


def modules() -> dict[str, tuple[str, bool]]:
    found = {}
    for path in sorted((SRC / "durable").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        is_package = rel.name == "__init__"
        name = ".".join(rel.parts[:-1] if is_package else rel.parts)
        found[name] = (path.read_text(), is_package)
    return found


ALL_MODULES = modules()
PACKAGES = {m for m, (_, is_package) in ALL_MODULES.items() if is_package}
ALL_EDGES = [e for m, (text, is_package) in ALL_MODULES.items()
             for e in edges(m, text, is_package)]


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({layer(m) for m in ALL_MODULES} - set(ALLOWED))
    assert not unknown, (f"new layers {unknown}: give each a row in ALLOWED and in "
                         f"docs/reference/layout.md")


def test_imports_point_down_the_layers() -> None:
    problems = [p for e in ALL_EDGES if (p := layer_violation(e))]
    assert not problems, "\n".join(problems)


def test_no_module_uses_another_package_s_private_names() -> None:
    problems = [p for e in ALL_EDGES if (p := private_violation(e))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("module", "source"), [
    ("durable.store.runs", "from durable.engine import machine"),
    ("durable.store.runs", "from durable.cli.render import make_console"),
    ("durable.sdk.step", "from durable.engine.worker import Worker"),
    ("durable.sdk.step", "import durable.store"),
    ("durable.engine.machine", "from durable.sdk.workflow import Workflow"),
    ("durable.engine.worker", "from durable.invoke import push"),
    ("durable.engine.worker", "def f():\n    from durable.server import app"),
    ("durable.model", "from durable.store import Tx"),
    ("durable.client", "from durable.cli import main"),
    ("durable.server.api", "from durable.cli.render import render_run"),
    ("durable.views.jsonio", "from ..server import api"),
])
def test_a_reversed_import_is_refused(module: str, source: str) -> None:
    found = list(edges(module, source))
    assert found and all(layer_violation(e) for e in found)


@pytest.mark.parametrize(("module", "source"), [
    ("durable.cli.targets", "from durable.sdk.executor import _Fenced"),
    ("durable.server.api", "from durable.temporal._definition import DEFN_ATTR"),
    ("durable.server.api", "from durable.temporal import _definition"),
])
def test_a_private_name_used_across_packages_is_refused(module: str, source: str) -> None:
    found = list(edges(module, source))
    assert found and all(private_violation(e) for e in found)


def test_private_names_stay_usable_inside_their_package() -> None:
    inside = list(edges("durable.sdk.parallel", "from durable.sdk.executor import _Fenced"))
    assert inside and not any(private_violation(e) for e in inside)


# The front ends act on runs through `Client` only: no state-machine calls, no transactions of
# their own, no reads or writes on a store. What they may hand a store to is the invoke
# package's data plane (registering functions, checkpoints), which opens its transactions itself.
FRONT_ENDS = ("durable.server", "durable.cli", "durable.views")
ENGINE_INSIDES = ("durable.engine.machine", "durable.store.tx", "durable.store.Tx")
STORE_CALLS = {"write_sync", "awrite", "aread"}  # unmistakably a Store's, on whatever name
STORE_VERBS = {"read", "write"}  # a Store's when called on something named like one


def front_end_violations(module: str, source: str) -> Iterator[str]:
    if not any(inside(module, front) for front in FRONT_ENDS):
        return
    for e in edges(module, source):
        named = [e.imported, *(f"{e.imported}.{name}" for name in e.names)]
        if any(inside(n, insides) for n in named for insides in ENGINE_INSIDES):
            yield f"{e.where()}: imports {e.imported} {list(e.names)}: go through Client"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and (
                node.attr in STORE_CALLS
                or (node.attr in STORE_VERBS and _store_like(node.value))):
            yield f"{module}:{node.lineno}: calls .{node.attr} on a store: go through Client"


def _store_like(node: ast.expr) -> bool:
    """`store`, `self._store`, `client.store`, `state.store`..."""
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name.lstrip("_").endswith("store")


def test_front_ends_reach_runs_only_through_the_client() -> None:
    problems = [p for m, (text, _) in ALL_MODULES.items() for p in front_end_violations(m, text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("module", "source"), [
    ("durable.server.api", "from durable.engine import machine"),
    ("durable.server.aws", "import durable.engine.machine"),
    ("durable.cli.render", "from durable.store import Tx"),
    ("durable.cli.commands", "from durable.store.tx import Tx"),
    ("durable.views.jsonio", "def f(client):\n    return client.store.read(lambda tx: tx)"),
    ("durable.server.api", "def f(state):\n    state.store.write_sync(lambda tx: tx)"),
    ("durable.server.aws", "async def f(s):\n    return await s.aread(lambda tx: tx)"),
    ("durable.server.views", "def f(self):\n    return self._store.write(lambda tx: tx)"),
])
def test_a_front_end_touching_the_engine_s_insides_is_refused(module: str, source: str) -> None:
    assert list(front_end_violations(module, source))


@pytest.mark.parametrize(("module", "source"), [
    ("durable.server.api", "def f(state, run_id):\n    return state.client.get(run_id)"),
    ("durable.cli.commands", "def f(client, spec):\n    register(client.store, spec)"),
    ("durable.cli.commands", "from durable.store import migrate, resolve_url"),
    ("durable.client", "def f(self):\n    return self.store.read(lambda tx: tx)"),
])
def test_the_client_and_the_data_plane_stay_open_to_front_ends(module: str, source: str) -> None:
    assert not list(front_end_violations(module, source))
