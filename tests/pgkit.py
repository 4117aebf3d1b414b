"""PostgreSQL for the tests: which server, what to do without one, and a fresh schema per test.

The server is DURABLE_TEST_POSTGRES, else postgresql://postgres@127.0.0.1:5432/test (this
project's machines and CI run one there). Unreachable in CI (CI=true): the PostgreSQL tests FAIL,
so a broken CI setup can never pass by skipping them. Unreachable elsewhere: they skip, saying how
to enable them.
"""

from __future__ import annotations

import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pytest

ENV = "DURABLE_TEST_POSTGRES"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


@functools.cache
def unreachable(url: str) -> str | None:
    """Why the server cannot be used, or None if it can (asked once per session)."""
    try:
        import psycopg

        psycopg.connect(url, connect_timeout=5, autocommit=True).close()
    except Exception as e:  # ImportError included: the [postgres] extra is not installed
        return " ".join(str(e).split()) or type(e).__name__
    return None


def require_server() -> str:
    """The server's URL; otherwise fail (in CI) or skip (elsewhere) the calling test."""
    url = server_url()
    reason = unreachable(url)
    if reason is None:
        return url
    what = f"PostgreSQL at {url} is unreachable ({reason})"
    if in_ci():
        pytest.fail(f"{what}. CI=true: the PostgreSQL tests must run, not skip; start the "
                    f"server (.ci/run does) or point {ENV} at one", pytrace=False)
    pytest.skip(f"{what}; to run the PostgreSQL tests, start a server or set "
                f"{ENV}=postgresql://user@host:port/dbname")


def with_params(url: str, **params: str) -> str:
    """`url` with query parameters set (libpq reads e.g. application_name); `options` (server
    settings, `-cname=value`) are added to those already there, not replaced."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in params.items():
        query[key] = f"{query[key]} {value}" if key == "options" and key in query else value
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))  # libpq: no +


@contextlib.contextmanager
def fresh_schema(server: str) -> Iterator[str]:
    """A new, empty schema, dropped afterwards; yields a URL whose connections use it
    (search_path), so Durable creates its tables there and sees nothing of other tests."""
    import psycopg

    schema = f"durable_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_params(server, options=f"-csearch_path={schema}")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def terminate(server: str, application_name: str) -> int:
    """Cut every connection whose application_name is `application_name`; returns how many."""
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,)).fetchall()
    return sum(1 for (ok,) in rows if ok)
