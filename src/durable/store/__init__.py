"""Persistence behind one interface. `open_store` turns a DURABLE_DB URL into a Store."""

from __future__ import annotations

import contextlib
import os

from durable.errors import UsageError, requires_extra
from durable.store.base import Finding, Store
from durable.store.tx import Tx

__all__ = ["Finding", "Store", "Tx", "diagnose", "migrate", "open_store", "resolve_url"]

DEFAULT_URL = "sqlite:///.durable/durable.db"


def resolve_url(url: str | None = None) -> str:
    return url or os.environ.get("DURABLE_DB") or DEFAULT_URL


def open_store(url: str | None = None) -> Store:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or `postgresql://...`."""
    dialect, target = _dialect(url)
    if dialect == "sqlite":
        from durable.store.sqlite import SQLiteStore

        return SQLiteStore(target)
    with _needs_psycopg():
        from durable.store.postgres import PostgresStore
    return PostgresStore(target)


def diagnose(url: str | None = None) -> list[Finding]:
    """What `durable doctor` reports of a database, without migrating or writing to it; a
    finding that is not `ok` is a problem, and says what to do."""
    dialect, target = _dialect(url)
    if dialect == "sqlite":
        from durable.store import sqlite

        return sqlite.diagnose(target)
    with _needs_psycopg():
        from durable.store import postgres
    return postgres.diagnose(target)


def _needs_psycopg() -> contextlib.AbstractContextManager[None]:
    return requires_extra("postgres", "a postgresql:// database")


def _dialect(url: str | None) -> tuple[str, str]:
    """Which store a URL names, and what that store takes: a file's path, or the URL."""
    url = resolve_url(url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path in ("", ":memory:"):
            # SQLite gives each connection its own private database for these, and a store
            # has several connections (the writer's, each reading thread's): they would not
            # see each other's runs, nor the tables.
            raise UsageError(f"database URL {url!r} names no file: Durable needs one that "
                             "every connection and process opens alike; use "
                             "sqlite:///path/to/file.db")
        return "sqlite", path
    if url.startswith(("postgresql://", "postgres://")):
        return "postgres", url
    raise UsageError(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db "
                     "or postgresql://user@host/dbname (in DURABLE_DB or --db)")


def migrate(url: str | None = None) -> int:
    """Bring the database's schema up to date now and return its version (`durable migrate`).

    Every store also migrates when it opens, safely when several processes start at once; this
    is for doing it ahead of a deploy, or with an account allowed to create tables.
    """
    store = open_store(url)
    try:
        return store.read(lambda tx: tx.schema_version())
    finally:
        store.close()
