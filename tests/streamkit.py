"""A reader following a durable stream on a thread of the test, with its own client, as an
application or the server would: what it received, in order."""

from __future__ import annotations

import threading
from typing import Any

import durable
from durable.model.streams import StreamEntry
from tests.kit import DEADLINE


class Follower:
    def __init__(self, db: str, run_id: str, name: str, **options: Any) -> None:
        self.entries: list[StreamEntry] = []
        self.error: BaseException | None = None
        self._args = (db, run_id, name, options)
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        db, run_id, name, options = self._args
        client = durable.Client(db)
        try:
            for entry in client.stream(run_id, name, **options):
                self.entries.append(entry)
        except BaseException as e:  # handed to the test in `join`
            self.error = e
        finally:
            client.close()

    def join(self) -> list[StreamEntry]:
        """What it received, once the stream is over for it."""
        self._thread.join(DEADLINE)
        assert not self._thread.is_alive(), f"still following after {DEADLINE}s: {self.entries}"
        if self.error is not None:
            raise self.error
        return self.entries
