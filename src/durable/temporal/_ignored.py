"""Options Temporal code passes that have nothing to act on here: accepted, so the code runs
unchanged, and named once per process in the log, so nobody relies on them unawares."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("durable.temporal")

_warned: set[str] = set()
_lock = threading.Lock()


def ignore(option: str, where: str, why: str) -> None:
    key = f"{where}:{option}"
    with _lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning("%s: %s= has no effect on Durable (%s)", where, option, why)
