"""Recorded values: now(), random(), uuid4(), published events and searchable attributes.

Each is a STEP that records its value once and replays it after. They are synchronous, so the
update is buffered: it travels with the invocation's next checkpoint, or is saved on its own just
before the next step body runs, so no effect can depend on a value a crash could change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from durable.model import (
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    operation_id,
)
from durable.sdk.executor import Executor, Scope
from durable.sdk.serializer import Serializer


def patched(ex: Executor, scope: Scope, change_id: str) -> bool:
    """True where the run takes the new code path: runs that reach this point under new code
    record a marker; runs whose history already holds something else here took the old path."""
    if change_id in ex.patches:
        return ex.patches[change_id]
    upcoming = ex.ops.get(operation_id(scope.parent_id, scope.counter + 1))
    new_path = upcoming is None or (upcoming.sub_type == SubType.PATCH
                                     and upcoming.name == change_id)
    if new_path:
        record(ex, scope, SubType.PATCH, change_id, lambda: True)
    ex.patches[change_id] = new_path
    return new_path


def record(ex: Executor, scope: Scope, sub_type: SubType, name: str,
           produce: Callable[[], Any], type_hint: Any = Any,
           serializer: Serializer | None = None) -> Any:
    """`serializer`: the one the payload is written with where the engine reads it too, and
    so cannot be the workflow's own."""
    serializer = serializer or ex.serializer
    op_id, op = ex.begin(scope, OperationType.STEP, name, sub_type, interruptible=False)
    if op is not None and op.status is OperationStatus.SUCCEEDED and op.result is not None:
        return serializer.decode(op.result, type_hint)
    payload = serializer.encode(produce())
    ex.buffer(
        OperationUpdate(op_id, OperationType.STEP, OperationAction.SUCCEED, name=name,
                        parent_id=scope.parent_id, sub_type=sub_type, payload=payload),
        Operation(op_id, OperationType.STEP, OperationStatus.SUCCEEDED, name, scope.parent_id,
                  sub_type, attempt=1, result=payload), value=True)
    return serializer.decode(payload, type_hint)
