"""Shared fixtures. Each test gets its own database file; nothing is shared between tests.

`make test` runs the suite in several processes (pytest-xdist, `--dist loadfile`): each module
goes whole to one process, and `pytest_xdist_make_scheduler` keeps the modules of `ALONE` off
each other's time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from xdist.scheduler import LoadFileScheduling

import durable
from durable.sdk.workflow import REGISTRY
from tests import pgkit

if TYPE_CHECKING:
    from tests.crashkit import CrashLab
    from tests.kit import Procs


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'durable.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[durable.Client]:
    c = durable.Client(db_url)
    yield c
    c.close()


ALONE = frozenset({"tests/test_chaos.py", "tests/test_postgres_chaos.py",
                   "tests/test_takeover.py", "tests/test_ui_scale.py"})
"""The modules that load the machine most (fleets of workers SIGKILLed, frozen and cut off,
10,000-operation pages) and whose bounds are the most timing-bound: under xdist they take
turns in one process, each still beside the rest of the suite but never beside another."""


class _LoadFileAloneTogether(LoadFileScheduling):
    """--dist loadfile, but with the modules of ALONE one unit of work."""

    def _split_scope(self, nodeid: str) -> str:
        module = super()._split_scope(nodeid)
        return "ALONE" if module in ALONE else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> LoadFileScheduling | None:
    if config.getoption("dist") != "loadfile":
        return None  # another --dist asked for: xdist's own
    return _LoadFileAloneTogether(config, log)  # type: ignore[arg-type]  # xdist's Producer


# -- crash suite (tests/test_crash.py, tests/test_properties.py; harness in tests/crashkit.py) ----

@pytest.fixture
def crash_lab(tmp_path: Path) -> Iterator[CrashLab]:
    """A fresh database and effects directory; every process started through it is killed after."""
    from tests.crashkit import CrashLab  # here: importing it registers the crash workflows

    with CrashLab(tmp_path) as lab:
        yield lab


@pytest.fixture
def crash_lab_any_db(any_db: str, tmp_path: Path) -> Iterator[CrashLab]:
    """`crash_lab` on each store in turn: a fresh SQLite file, then a fresh PostgreSQL schema."""
    from tests.crashkit import CrashLab

    with CrashLab(tmp_path, any_db) as lab:
        yield lab


# -- PostgreSQL (tests/test_store_contract.py, tests/test_postgres_chaos.py; in tests/pgkit.py) --

@pytest.fixture(scope="session")
def pg_server() -> str:
    """The PostgreSQL server's URL; the test fails (CI=true) or skips without one."""
    return pgkit.require_server()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL into a fresh schema of that server, dropped after the test."""
    with pgkit.fresh_schema(pg_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def any_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs twice: on a fresh SQLite file, then on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'durable.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def any_client(any_db: str) -> Iterator[durable.Client]:
    """A client of `any_db`: the test runs on SQLite, then on PostgreSQL."""
    c = durable.Client(any_db)
    yield c
    c.close()


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    """Processes a test starts (tests/kit.py); killed at its end, not drained: nothing is owed
    to them."""
    from tests.kit import Procs

    with Procs(tmp_path, grace=0) as p:
        yield p


@pytest.fixture
def registry_restored() -> Iterator[None]:
    """Workflows defined by a test leave the registry after it: a scheduled one left there would
    have its ticks fired by any later worker that serves the whole registry."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)
