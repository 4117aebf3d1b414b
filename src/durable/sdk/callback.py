"""CALLBACK operations: wait for the outside world. A callback is resolved by whoever holds its
id; a signal is a callback the engine resolves from the run's named, buffered messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, overload

from durable.errors import CallbackFailed, CallbackHeartbeatTimeout, UsageError, WaitTimeout
from durable.model import OperationAction, OperationStatus, OperationType, OperationUpdate, SubType
from durable.sdk.executor import Executor, Scope
from durable.sdk.wait import seconds

S = OperationStatus
T = TypeVar("T")


# The engine's error type for a callback that ran out of heartbeats (AWS's, see machine.py).
HEARTBEAT_TIMED_OUT = "Callback.Heartbeat"


async def _start(ex: Executor, scope: Scope, sub_type: SubType, name: str | None,
                 timeout: timedelta | float | None,
                 heartbeat_timeout: timedelta | float | None = None) -> str:
    op_id, op = ex.begin(scope, OperationType.CALLBACK, name, sub_type)
    if op is None:
        await ex.checkpoint(OperationUpdate(
            op_id, OperationType.CALLBACK, OperationAction.START, name=name,
            parent_id=scope.parent_id, sub_type=sub_type,
            timeout=None if timeout is None else seconds(timeout),
            heartbeat_timeout=None if heartbeat_timeout is None else seconds(heartbeat_timeout)))
    return op_id


async def _outcome(ex: Executor, op_id: str, what: str, type_hint: Any) -> Any:
    op = ex.ops[op_id]
    if op.status is S.STARTED:
        await ex.wait_for_engine(op)
    if op.status is S.SUCCEEDED:
        return None if op.result is None else ex.serializer.decode(op.result, type_hint)
    if op.status is S.FAILED:
        assert op.error is not None
        raise CallbackFailed(op.error)
    if op.status is S.TIMED_OUT:
        if op.error is not None and op.error.type == HEARTBEAT_TIMED_OUT:
            raise CallbackHeartbeatTimeout(f"{what} timed out: no heartbeat came in time")
        raise WaitTimeout(f"{what} timed out")
    ex.cancelled()


@dataclass(frozen=True, slots=True)
class Callback:
    """A pending callback. Hand `id` to the outside; `await callback.result()` to wait for it."""

    id: str
    operation_id: str
    name: str | None
    _executor: Executor

    @overload
    async def result(self, type_hint: type[T]) -> T: ...
    @overload
    async def result(self, type_hint: Any = Any) -> Any: ...

    async def result(self, type_hint: Any = Any) -> Any:
        """The callback's result once resolved, decoded as `type_hint` (a class: typed as
        its instance; else JSON)."""
        return await _outcome(self._executor, self.operation_id,
                              f"callback {self.name or self.id!r}", type_hint)


async def create_callback(ex: Executor, scope: Scope, name: str | None,
                          timeout: timedelta | float | None,
                          heartbeat_timeout: timedelta | float | None) -> Callback:
    if heartbeat_timeout is not None and seconds(heartbeat_timeout) <= 0:
        raise UsageError(f"create_callback({name!r}): heartbeat_timeout must be positive, "
                         f"got {heartbeat_timeout!r}")
    with scope.exclusive("create_callback"):
        op_id = await _start(ex, scope, SubType.CALLBACK, name, timeout, heartbeat_timeout)
        callback_id = ex.ops[op_id].callback_id
        assert callback_id is not None
        return Callback(callback_id, op_id, name, ex)


async def wait_for_signal(ex: Executor, scope: Scope, name: str,
                          timeout: timedelta | float | None, type_hint: Any) -> Any:
    with scope.exclusive(f"wait_for_signal({name!r})"):
        op_id = await _start(ex, scope, SubType.SIGNAL, name, timeout)
        return await _outcome(ex, op_id, f"signal {name!r}", type_hint)
