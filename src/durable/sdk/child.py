"""CHAINED_INVOKE operations: child workflows, each its own run with its own history.

The child's run id is derived from the parent's run and the operation's position, so a replay
finds the same child, and starting it twice is harmless (start is idempotent by id). An id the
workflow chooses is checked when the child starts, so a bad one fails at the call that gave it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from durable.errors import ChildFailed, UsageError
from durable.model import (
    ChildStart,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
)
from durable.model.ids import check_run_id, child_run_id
from durable.sdk.executor import Executor, Scope

if TYPE_CHECKING:
    from durable.sdk.workflow import Workflow

_TENANT_ID = re.compile(r"[\x20-\x7E]{1,256}")


async def start(ex: Executor, scope: Scope, target: Workflow[..., Any] | str,
                args: tuple[Any, ...], run_id: str | None, wait: bool,
                tenant_id: str | None = None) -> Any:
    """Start the child run; with `wait`, block until it ends and return its result. `target`
    is a workflow, or the name of one (a workflow another deployment serves, a function
    registered with `durable functions add`): then `args` is at most the one input value,
    encoded with this workflow's serializer, and the result comes back decoded the same way."""
    kind = SubType.INVOKE if wait else SubType.START_CHILD
    name = target if isinstance(target, str) else target.name
    if tenant_id is not None and not _TENANT_ID.fullmatch(tenant_id):
        raise UsageError(f"invoke of {name!r}: tenant_id must be 1 to 256 printable ASCII "
                         f"characters (AWS's TenantId), got {tenant_id!r}")
    with scope.exclusive(f"child workflow {name!r}"):
        op_id, op = ex.begin(scope, OperationType.CHAINED_INVOKE, name, kind)
        if op is None:
            child_id = (child_run_id(ex.run_id, op_id) if run_id is None
                        else check_run_id(run_id))
            child = ChildStart(child_id, name, _input(ex, target, args), tenant_id)
            (op,) = await ex.checkpoint(OperationUpdate(
                op_id, OperationType.CHAINED_INVOKE, OperationAction.START, name=name,
                parent_id=scope.parent_id, sub_type=kind, child=child,
                input=child.input if ex.record_inputs else None))
        if wait and op.status is OperationStatus.STARTED:
            await ex.wait_for_engine(op)
        if op.status is OperationStatus.CANCELLED:
            ex.cancelled()
        if op.status is OperationStatus.FAILED:  # also when it could not start the child
            assert op.error is not None
            raise ChildFailed(name, op.child_run_id, op.error)
        if not wait:
            return op.child_run_id
        if isinstance(target, str):
            return None if op.result is None else ex.serializer.decode(op.result)
        return target.decode_result(op.result)


def _input(ex: Executor, target: Workflow[..., Any] | str, args: tuple[Any, ...]) -> str | None:
    if not isinstance(target, str):
        return target.encode_input(args)
    if len(args) > 1:
        raise UsageError(f"ctx.invoke({target!r}, ...) takes one input value (the run's "
                         f"input, as `durable start --input` takes it), got {len(args)}: "
                         "pass several as one list")
    return ex.serializer.encode(args[0]) if args else None
