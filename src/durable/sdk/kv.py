"""`ctx.kv`: the key-value store shared by all runs, from workflow code.

Every call is an operation of the run (a STEP of sub type `Kv`) whose checkpoint carries the
command; the engine applies it in the transaction that records the operation and returns the
outcome as the operation's result. A replay reads that result: it sees the values the first
execution saw and applies no write again. A call waits for its checkpoint, since what it
answers depends on what other runs wrote meanwhile.

`mutate` runs its function here, in the workflow, not in the engine: it reads the value (one
operation), computes the new one, and writes it only if nobody wrote the key in between (a
versioned write, another operation); if somebody did, it computes again from the value that
write found. Each round is recorded, so a replay computes from the same values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable.errors import KvTypeError, SerializationError
from durable.model import OperationAction, OperationStatus, OperationType, OperationUpdate, SubType
from durable.model.kv import KvCommand, KvOp, KvOutcome, check_key, check_number, check_prefix
from durable.sdk.executor import Executor, Scope
from durable.sdk.serializer import DEFAULT_SERIALIZER


def encode(key: str, value: Any, where: str) -> str:
    """`value` as the JSON text the store keeps, or one error naming the key and the fix."""
    try:
        return DEFAULT_SERIALIZER.encode(value)
    except SerializationError as e:
        raise SerializationError(
            f"{where}: the value for key {key!r} cannot be stored: {e}. Key-value values are "
            "JSON, encoded by the default serializer whatever the workflow's own; store JSON "
            "data, a dataclass or a pydantic model (e.g. convert it to a dict first)") from None


def decode(text: str | None, default: Any = None, as_type: Any = Any) -> Any:
    return default if text is None else DEFAULT_SERIALIZER.decode(text, as_type)


class WorkflowKv:
    """`ctx.kv`. Every method is awaited and recorded (see the module docstring)."""

    def __init__(self, ex: Executor, scope: Callable[[], Scope]) -> None:
        self._ex = ex
        self._scope = scope

    async def get(self, key: str, default: Any = None, *, as_type: Any = Any) -> Any:
        """The key's value (decoded to `as_type` if given), or `default` if it has none."""
        out = await self._run(KvCommand(KvOp.GET, check_key(key, "ctx.kv.get")))
        return decode(out.value, default, as_type)

    async def set(self, key: str, value: Any) -> None:
        where = "ctx.kv.set"
        await self._run(KvCommand(KvOp.SET, check_key(key, where), encode(key, value, where)))

    async def delete(self, key: str) -> bool:
        """Remove the key; whether it had a value."""
        return (await self._run(KvCommand(KvOp.DELETE, check_key(key, "ctx.kv.delete")))).ok

    async def check_and_set(self, key: str, expected: Any, new: Any) -> bool:
        """Set the key to `new` only if its value equals `expected` (None: it has none);
        whether it did."""
        where = "ctx.kv.check_and_set"
        cmd = KvCommand(KvOp.CHECK_AND_SET, check_key(key, where), encode(key, new, where),
                        expected=None if expected is None else encode(key, expected, where))
        return (await self._run(cmd)).ok

    async def add(self, key: str, n: int | float = 1) -> int | float:
        """Add `n` to the number the key holds (an absent key counts as 0); the new number."""
        where = "ctx.kv.add"
        out = await self._run(KvCommand(KvOp.ADD, check_key(key, where),
                                        n=check_number(n, where)))
        return decode(out.value)  # type: ignore[no-any-return]

    async def keys(self, prefix: str = "") -> list[str]:
        """The keys that have a value and begin with `prefix`, in order."""
        cmd = KvCommand(KvOp.KEYS, check_prefix(prefix, "ctx.kv.keys"))
        return (await self._run(cmd)).keys

    async def mutate(self, key: str, fn: Callable[[Any], Any]) -> Any:
        """Set the key to `fn(old value)` (None if it has none) atomically: `fn` runs again on
        the newer value should another writer come in between. `fn` must be a pure function
        of the value (it is workflow code: deterministic, no I/O). Returns the new value."""
        where = "ctx.kv.mutate"
        out = await self._run(KvCommand(KvOp.GET, check_key(key, where)))
        while True:
            new = encode(key, fn(decode(out.value)), where)
            out = await self._run(KvCommand(KvOp.SET_IF_VERSION, key, new,
                                            version=out.version))
            if out.ok:
                return decode(new)

    async def _run(self, cmd: KvCommand) -> KvOutcome:
        ex, scope, name = self._ex, self._scope(), cmd.describe()
        with scope.exclusive(name):
            op_id, op = ex.begin(scope, OperationType.STEP, name, SubType.KV)
            if op is None:
                (op,) = await ex.checkpoint(OperationUpdate(
                    op_id, OperationType.STEP, OperationAction.SUCCEED, name=name,
                    parent_id=scope.parent_id, sub_type=SubType.KV, payload=cmd.to_json()))
        if op.status is OperationStatus.FAILED:
            raise KvTypeError(op.error.message if op.error else name)
        assert op.result is not None, f"{name}: recorded without its outcome"
        return KvOutcome.from_json(op.result)
