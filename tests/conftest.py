"""Shared fixtures. Each test gets its own database file; nothing is shared between tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import durable


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'durable.db'}"


@pytest.fixture
def client(db_url: str) -> Iterator[durable.Client]:
    c = durable.Client(db_url)
    yield c
    c.close()
