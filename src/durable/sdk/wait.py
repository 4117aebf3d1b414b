"""WAIT operations: durable sleeps. The due time is fixed when the sleep starts, so a crash or a
deploy in between never makes it longer; while it runs, the run holds no process at all."""

from __future__ import annotations

from datetime import timedelta

from durable.model import OperationAction, OperationStatus, OperationType, OperationUpdate, SubType
from durable.sdk.executor import Executor, Scope


def seconds(duration: timedelta | float) -> float:
    return duration.total_seconds() if isinstance(duration, timedelta) else float(duration)


async def sleep(ex: Executor, scope: Scope, duration: timedelta | float,
                name: str | None) -> None:
    with scope.exclusive("sleep"):
        op_id, op = ex.begin(scope, OperationType.WAIT, name, SubType.SLEEP)
        if op is None:
            (op,) = await ex.checkpoint(OperationUpdate(
                op_id, OperationType.WAIT, OperationAction.START, name=name,
                parent_id=scope.parent_id, sub_type=SubType.SLEEP, delay=seconds(duration)))
        if op.status is OperationStatus.CANCELLED:
            ex.cancelled()
        if op.status is not OperationStatus.SUCCEEDED:
            await ex.wait_for_engine(op)
