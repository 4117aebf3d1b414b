"""Shared fixtures. Each test gets its own database file; nothing is shared between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import durable
from durable.sdk.workflow import REGISTRY
from tests import pgkit

if TYPE_CHECKING:
    from tests.crashkit import CrashLab


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'durable.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[durable.Client]:
    c = durable.Client(db_url)
    yield c
    c.close()


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
def registry_restored() -> Iterator[None]:
    """Workflows defined by a test leave the registry after it: a scheduled one left there would
    have its ticks fired by any later worker that serves the whole registry."""
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)
