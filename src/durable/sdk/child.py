"""CHAINED_INVOKE operations: child workflows, each its own run with its own history.

The child's run id is derived from the parent's run and the operation's position, so a replay
finds the same child, and starting it twice is harmless (start is idempotent by id). An id the
workflow chooses is checked when the child starts, so a bad one fails at the call that gave it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from durable.errors import ChildFailed
from durable.model import (
    ChildStart,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
)
from durable.model.ids import check_run_id, derived_run_id
from durable.sdk.executor import Executor, Scope

if TYPE_CHECKING:
    from durable.sdk.workflow import Workflow


async def start(ex: Executor, scope: Scope, wf: Workflow[Any], args: tuple[Any, ...],
                run_id: str | None, wait: bool) -> Any:
    """Start the child run; with `wait`, block until it ends and return its result."""
    kind = SubType.INVOKE if wait else SubType.START_CHILD
    with scope.exclusive(f"child workflow {wf.name!r}"):
        op_id, op = ex.begin(scope, OperationType.CHAINED_INVOKE, wf.name, kind)
        if op is None:
            child_id = (derived_run_id(f"{ex.run_id}-{op_id[:12]}") if run_id is None
                        else check_run_id(run_id))
            child = ChildStart(child_id, wf.name, wf.encode_input(args))
            (op,) = await ex.checkpoint(OperationUpdate(
                op_id, OperationType.CHAINED_INVOKE, OperationAction.START, name=wf.name,
                parent_id=scope.parent_id, sub_type=kind, child=child,
                input=child.input if ex.record_inputs else None))
        if not wait:
            return op.child_run_id
        if op.status is OperationStatus.STARTED:
            await ex.wait_for_engine(op)
        if op.status is OperationStatus.CANCELLED:
            ex.cancelled()
        if op.status is OperationStatus.FAILED:
            assert op.error is not None and op.child_run_id is not None
            raise ChildFailed(wf.name, op.child_run_id, op.error)
        return wf.decode_result(op.result)
