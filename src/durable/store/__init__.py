"""Persistence behind one interface. `open_store` turns a DURABLE_DB URL into a Store."""

from __future__ import annotations

import os

from durable.errors import UsageError
from durable.store.base import Store, Tx

__all__ = ["Store", "Tx", "open_store", "resolve_url"]

DEFAULT_URL = "sqlite:///.durable/durable.db"


def resolve_url(url: str | None = None) -> str:
    return url or os.environ.get("DURABLE_DB") or DEFAULT_URL


def open_store(url: str | None = None) -> Store:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, or `postgresql://...`."""
    url = resolve_url(url)
    if url.startswith("sqlite:///"):
        from durable.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from durable.store.postgres import PostgresStore  # type: ignore[import-not-found,unused-ignore]

        return PostgresStore(url)  # type: ignore[no-any-return,unused-ignore]
    raise UsageError(f"unsupported database URL {url!r}: use sqlite:///path/to/file.db "
                     "or postgresql://user@host/dbname (in DURABLE_DB or --db)")
