"""Recorded values: now(), random(), uuid4() and published events.

Each is a STEP that records its value once and replays it after. They are synchronous, so the
update is buffered and travels with the invocation's next checkpoint, which precedes any effect
that could have depended on the value.
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
)
from durable.sdk.executor import Executor, Scope


def record(ex: Executor, scope: Scope, sub_type: SubType, name: str,
           produce: Callable[[], Any], type_hint: Any = Any) -> Any:
    op_id, op = ex.begin(scope, OperationType.STEP, name, sub_type, interruptible=False)
    if op is not None and op.status is OperationStatus.SUCCEEDED and op.result is not None:
        return ex.serializer.decode(op.result, type_hint)
    payload = ex.serializer.encode(produce())
    ex.buffer(
        OperationUpdate(op_id, OperationType.STEP, OperationAction.SUCCEED, name=name,
                        parent_id=scope.parent_id, sub_type=sub_type, payload=payload),
        Operation(op_id, OperationType.STEP, OperationStatus.SUCCEEDED, name, scope.parent_id,
                  sub_type, attempt=1, result=payload))
    return ex.serializer.decode(payload, type_hint)
