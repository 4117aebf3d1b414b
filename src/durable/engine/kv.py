"""The key-value store's commands, applied inside a transaction (model/kv.py).

From a workflow, `apply` runs in the checkpoint's transaction, so the write and the operation
that records its outcome commit together or not at all: a worker killed at any moment leaves
either both (the replay reads the outcome) or neither (the replay sends the command again).
Every write first locks the key's row (`Tx.kv_lock`): on PostgreSQL concurrent writers of one
key take turns; on SQLite the write transaction already excludes every other writer.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from durable.errors import KvTypeError
from durable.model.kv import READS, KvCommand, KvOp, KvOutcome, loads
from durable.store.tx import Tx


def apply(tx: Tx, cmd: KvCommand, now: float) -> KvOutcome:
    """Apply `cmd`; raises `KvTypeError` (changing nothing) where it cannot work on the value."""
    if cmd.op is KvOp.KEYS:
        return KvOutcome(keys=tx.kv_keys(cmd.key))
    if cmd.op in READS:
        value, version = tx.kv_read(cmd.key)
        return KvOutcome(value, version)
    value, version = tx.kv_lock(cmd.key, now)
    if cmd.op is KvOp.DELETE:
        if value is None:
            return KvOutcome(None, version, ok=False)
        return KvOutcome(None, tx.kv_write(cmd.key, None, now))
    new = _new_value(cmd, value, version)
    if new is None:
        return KvOutcome(value, version, ok=False)
    return KvOutcome(new, tx.kv_write(cmd.key, new, now))


def _new_value(cmd: KvCommand, value: str | None, version: int) -> str | None:
    """What a write other than DELETE makes of the key's `value` (None: its check failed)."""
    match cmd.op:
        case KvOp.SET:
            return cmd.value
        case KvOp.CHECK_AND_SET:
            return cmd.value if loads(value) == loads(cmd.expected) else None
        case KvOp.SET_IF_VERSION:
            return cmd.value if version == cmd.version else None
        case KvOp.ADD:
            old = loads(value)
            if old is None:
                old = 0
            if isinstance(old, bool) or not isinstance(old, int | float):
                raise KvTypeError(
                    f"kv.add({cmd.key!r}, {cmd.n!r}): the key holds {value}, not a number; "
                    "add works on a number (or an absent key, counted from 0): set the key "
                    "to a number first, or use mutate for other values")
            return json.dumps(old + (cmd.n or 0))
    raise AssertionError(f"not a write: {cmd.op}")


def mutate(tx: Tx, key: str, fn: Callable[[str | None], str], now: float) -> KvOutcome:
    """Give `key` the value `fn(old)` (JSON text to JSON text) in one transaction, the row
    locked meanwhile, so no other writer comes in between. For callers outside a workflow:
    inside one, `fn` is workflow code, which runs where the workflow runs, not in the
    engine's transaction (sdk/kv.py does a read and a versioned write instead)."""
    value, _ = tx.kv_lock(key, now)
    new = fn(value)
    return KvOutcome(new, tx.kv_write(key, new, now))
