"""`Tx`: one transaction's view of every table, composed of the per-table pieces."""

from __future__ import annotations

from durable.store.admission import Admission
from durable.store.bulk import BulkJobs
from durable.store.contract import Contract
from durable.store.events import Events
from durable.store.history import History
from durable.store.kv import Kv
from durable.store.logs import Logs
from durable.store.observe import Observe
from durable.store.operations import Operations
from durable.store.retention import Retention
from durable.store.runs import Runs
from durable.store.streams import Streams


class Tx(Runs, Operations, History, Logs, Admission, Contract, Retention, Observe,
         BulkJobs, Streams, Kv, Events):
    """Row-level primitives inside one transaction. The engine's state machine is written
    against this alone, so it never knows which database it is on."""

    def schema_version(self) -> int:
        """The latest migration applied to this database (see store/schema.py)."""
        return int(self._one("SELECT max(version) FROM durable_migrations")[0] or 0)

