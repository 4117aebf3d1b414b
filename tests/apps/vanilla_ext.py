"""An "external service" for tests/test_vanilla.py: declared outside the project there with
`external=["tests.apps.vanilla_ext"]`, so each call an auto workflow makes into it is a step.
Every call that really runs appends a line to CALLS, which is how a test counts them."""

from __future__ import annotations

import threading

CALLS: list[str] = []
_lock = threading.Lock()


def _called(what: str) -> None:
    with _lock:
        CALLS.append(what)


def charge(account: str, amount: int) -> str:
    _called(f"charge {account} {amount}")
    return f"ch-{account}-{amount}"


def notify(message: str) -> None:
    _called(f"notify {message}")


async def fetch(key: str) -> dict[str, str]:
    _called(f"fetch {key}")
    return {"key": key, "value": key.upper()}


def open_connection() -> threading.Lock:
    _called("open_connection")
    return threading.Lock()  # not data: no serializer can record it


def fail(message: str) -> None:
    _called(f"fail {message}")
    raise ValueError(message)
