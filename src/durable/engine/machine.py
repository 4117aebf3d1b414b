"""The whole state machine of runs and operations, in one place.

Every function here runs inside one store transaction (`Tx`) and is the only code that changes a
run's state. The SDK proposes (checkpoint updates, invocation outcomes); this module decides. Only
here does a WAIT complete, a PENDING step become READY, a callback resolve or time out, a signal
meet its waiter, and a stale invocation get fenced out.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from durable.errors import CallbackNotFound, RunNotFound, StaleToken, UsageError
from durable.model import (
    CheckpointResult,
    ErrorObject,
    EventType,
    ExecutionStatus,
    Invocation,
    InvocationOutput,
    InvocationStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    RunInfo,
    SubType,
)
from durable.store.base import Tx, dump_error

S = OperationStatus
A = OperationAction
E = EventType


class InvalidCheckpoint(UsageError):
    """An update asks for a transition the operation's current state does not allow."""


@dataclass(frozen=True, slots=True)
class Claimed:
    invocation: Invocation
    token: int


# -- starting, claiming, finishing ---------------------------------------------------------------

def start_run(tx: Tx, run_id: str, workflow: str, input: str | None, now: float,
              parent: tuple[str, str] | None = None) -> tuple[RunInfo, bool]:
    """Create the run unless one with this id exists; returns (run, created)."""
    created = tx.insert_run(run_id, workflow, input, now, parent)
    run = tx.get_run(run_id)
    assert run is not None
    if created:
        tx.add_event(run_id, E.EXECUTION_STARTED, now, details={"workflow": workflow})
    elif run.workflow != workflow:
        raise UsageError(f"run id {run_id!r} is already used by a run of workflow "
                         f"{run.workflow!r}; choose another id")
    return run, created


def claim(tx: Tx, owner: str, now: float, limit: int, lease_seconds: float,
          workflows: Sequence[str]) -> list[Claimed]:
    """Lease up to `limit` runs that have work, apply what fell due, and hand them out."""
    run_ids = tx.claimable(now, limit, workflows)
    out = []
    for run_id, token in tx.lease(run_ids, owner, now + lease_seconds):
        run = tx.get_run(run_id)
        assert run is not None
        _advance_due(tx, run_id, now)
        ops = {op.id: op for op in tx.operations(run_id)}
        out.append(Claimed(Invocation(run_id, run.workflow, run.input, ops,
                                      run.cancel_requested), token))
    return out


def release_unstarted(tx: Tx, run_id: str, token: int, now: float) -> None:
    """Give back a lease without invoking (a worker shutting down, a workflow it does not know)."""
    if tx.fence(run_id, token, now) is not None:
        tx.update_run(run_id, lease_owner=None, lease_expires=None, ready_at=now)


def finish_invocation(tx: Tx, run_id: str, token: int, out: InvocationOutput, now: float,
                      duration: float) -> None:
    if tx.fence(run_id, token, now) is None:
        raise StaleToken(f"run {run_id!r}: invocation outcome rejected, another one took over")
    run = tx.get_run(run_id)
    assert run is not None
    tx.add_event(run_id, E.INVOCATION_COMPLETED, now,
                 details={"status": out.status.value, "duration": duration})
    common = {"lease_owner": None, "lease_expires": None, "updated_at": now,
              "compute_seconds": run.compute_seconds + duration}
    if out.status is InvocationStatus.PENDING:
        if out.parked is not None:
            tx.add_event(run_id, E.EXECUTION_PARKED, now, details={"error": out.parked.to_dict()})
            tx.update_run(run_id, parked=dump_error(out.parked), ready_at=None, **common)
            return
        due = [op.due_at for op in tx.waiting_operations(run_id) if op.due_at is not None]
        if run.ready_at is not None:  # something arrived while the invocation ran
            due.append(run.ready_at)
        tx.update_run(run_id, parked=None, ready_at=min(due, default=None), **common)
        return
    if out.continue_as_new is not None:
        tx.update_run(run_id, parked=None, **common)
        generation = tx.restart_run(run_id, out.continue_as_new, now)
        tx.add_event(run_id, E.EXECUTION_CONTINUED_AS_NEW, now,
                     details={"generation": generation})
        return
    if out.status is InvocationStatus.SUCCEEDED:
        status, event = ExecutionStatus.SUCCEEDED, E.EXECUTION_SUCCEEDED
    elif out.stopped:
        status, event = ExecutionStatus.STOPPED, E.EXECUTION_STOPPED
    else:
        status, event = ExecutionStatus.FAILED, E.EXECUTION_FAILED
    tx.add_event(run_id, event, now,
                 details={"error": out.error.to_dict()} if out.error else None)
    tx.update_run(run_id, status=status.value, result=out.result, error=dump_error(out.error),
                  ended_at=now, ready_at=None, parked=None, **common)
    tx.notify()  # clients waiting for the result
    _report_to_parent(tx, run_id, status, out, now)
    _stop_awaited_children(tx, run_id, now)


def _stop_awaited_children(tx: Tx, run_id: str, now: float) -> None:
    """A run that ended no longer waits for the children it invoked (e.g. a quorum was
    reached without them): cancel those. Children started with start_child live on."""
    for child in tx.live_children(run_id):
        link = tx.parent_of(child)
        op = tx.get_operation(run_id, link[1]) if link else None
        if op is not None and op.sub_type == SubType.INVOKE:
            cancel(tx, child, now)


def _report_to_parent(tx: Tx, run_id: str, status: ExecutionStatus, out: InvocationOutput,
                      now: float) -> None:
    """A child run ended: complete the parent's CHAINED_INVOKE and wake the parent."""
    parent = tx.parent_of(run_id)
    if parent is None:
        return
    parent_run, op_id = parent
    op = tx.get_operation(parent_run, op_id)
    if op is None or op.status is not S.STARTED:  # detached, or the parent stopped waiting
        return
    if status is ExecutionStatus.SUCCEEDED:
        tx.put_operation(parent_run, replace(op, status=S.SUCCEEDED, result=out.result,
                                             ended_at=now))
    else:
        error = out.error or ErrorObject(status.value, f"child run {run_id!r} ended {status}")
        tx.put_operation(parent_run, replace(op, status=S.FAILED, error=error, ended_at=now))
    tx.add_event(parent_run, E.CHAINED_INVOKE_SUCCEEDED if status is ExecutionStatus.SUCCEEDED
                 else E.CHAINED_INVOKE_FAILED, now, op_id, op.name, {"child_run_id": run_id})
    tx.wake(parent_run, now)


def heartbeat(tx: Tx, owner: str, run_ids: Sequence[str], until: float) -> None:
    tx.extend_leases(owner, run_ids, until)


def _advance_due(tx: Tx, run_id: str, now: float) -> None:
    """Complete waits, ready retries and time out callbacks whose due time has come."""
    for op in tx.waiting_operations(run_id):
        if op.due_at is None or op.due_at > now:
            continue
        if op.type is OperationType.WAIT:
            tx.put_operation(run_id, replace(op, status=S.SUCCEEDED, ended_at=now))
            tx.add_event(run_id, E.WAIT_SUCCEEDED, now, op.id, op.name)
        elif op.type is OperationType.STEP and op.status is S.PENDING:
            tx.put_operation(run_id, replace(op, status=S.READY, due_at=None))
            tx.add_event(run_id, E.STEP_READY, now, op.id, op.name, {"attempt": op.attempt + 1})
        elif op.type is OperationType.CALLBACK:
            tx.put_operation(run_id, replace(op, status=S.TIMED_OUT, ended_at=now))
            tx.add_event(run_id, E.CALLBACK_TIMED_OUT, now, op.id, op.name)


# -- checkpoints -----------------------------------------------------------------------------------

def checkpoint(tx: Tx, run_id: str, token: int, updates: Sequence[OperationUpdate],
               now: float) -> CheckpointResult:
    """Apply a batch of updates atomically, if `token` is still the run's current one."""
    cancel_requested = tx.fence(run_id, token, now)
    if cancel_requested is None:
        raise StaleToken(f"run {run_id!r}: checkpoint rejected, its invocation is no longer "
                         "current (its lease was taken over)")
    touched = [_apply(tx, run_id, u, now) for u in updates]
    return CheckpointResult(touched, cancel_requested)


def _apply(tx: Tx, run_id: str, u: OperationUpdate, now: float) -> Operation:
    op = tx.get_operation(run_id, u.id)
    if op is not None and (op.type is not u.type or op.status.is_final):
        raise InvalidCheckpoint(f"run {run_id!r}: cannot {u.action} {u.type} operation {u.id} "
                                f"({u.name!r}); it is {op.type} {op.status}")
    new = op or Operation(u.id, u.type, S.STARTED, u.name, u.parent_id, u.sub_type,
                          started_at=u.started_at or now)
    handler = _HANDLERS.get((u.type, u.action))
    if handler is None:
        raise InvalidCheckpoint(f"run {run_id!r}: action {u.action} is not valid for {u.type}")
    new = handler(tx, run_id, new, op, u, now)
    tx.put_operation(run_id, new)
    return new


def _step_start(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
                now: float) -> Operation:
    if old is not None and old.status is not S.READY:
        raise InvalidCheckpoint(f"run {run_id!r}: step {u.name!r} started twice")
    tx.add_event(run_id, E.STEP_STARTED, now, u.id, u.name, {"attempt": new.attempt + 1})
    return replace(new, status=S.STARTED, attempt=new.attempt + 1, started_at=now)


def _attempt(old: Operation | None, new: Operation) -> int:
    """The attempt number an outcome belongs to: START already counted it, else count it now."""
    return new.attempt if old is not None and old.status is S.STARTED else new.attempt + 1


def _step_succeed(tx: Tx, run_id: str, new: Operation, old: Operation | None,
                  u: OperationUpdate, now: float) -> Operation:
    attempt = _attempt(old, new)
    started = u.started_at or new.started_at
    tx.add_event(run_id, E.STEP_SUCCEEDED, now, u.id, u.name,
                 {"attempt": attempt, "started_at": started})
    if u.sub_type == SubType.SET_EVENT and u.name is not None:
        tx.set_published(run_id, u.name, u.payload, now)
    return replace(new, status=S.SUCCEEDED, attempt=attempt, result=u.payload, error=None,
                   started_at=started, ended_at=now)


def _step_fail(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
               now: float) -> Operation:
    attempt = _attempt(old, new)
    tx.add_event(run_id, E.STEP_FAILED, now, u.id, u.name,
                 {"attempt": attempt, "error": _err(u), "retry": False})
    return replace(new, status=S.FAILED, attempt=attempt, error=u.error, ended_at=now)


def _step_retry(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
                now: float) -> Operation:
    attempt = _attempt(old, new)
    due = now + (u.delay or 0.0)
    tx.add_event(run_id, E.STEP_FAILED, now, u.id, u.name,
                 {"attempt": attempt, "error": _err(u), "retry": True, "next_attempt_at": due})
    return replace(new, status=S.PENDING, attempt=attempt, error=u.error, due_at=due)


def _wait_start(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
                now: float) -> Operation:
    _require_new(run_id, old, u)
    due = now + max(u.delay or 0.0, 0.0)
    tx.add_event(run_id, E.WAIT_STARTED, now, u.id, u.name, {"due_at": due})
    if due <= now:
        tx.add_event(run_id, E.WAIT_SUCCEEDED, now, u.id, u.name)
        return replace(new, status=S.SUCCEEDED, due_at=due, ended_at=now)
    return replace(new, due_at=due)


def _callback_start(tx: Tx, run_id: str, new: Operation, old: Operation | None,
                    u: OperationUpdate, now: float) -> Operation:
    _require_new(run_id, old, u)
    due = now + u.timeout if u.timeout is not None else None
    if u.sub_type == SubType.SIGNAL:
        assert u.name is not None
        tx.add_event(run_id, E.CALLBACK_STARTED, now, u.id, u.name,
                     {"signal": u.name, "timeout_at": due})
        buffered = tx.pop_signal(run_id, u.name)
        if buffered is not None:
            tx.add_event(run_id, E.CALLBACK_SUCCEEDED, now, u.id, u.name)
            return replace(new, status=S.SUCCEEDED, result=buffered[0], ended_at=now)
        return replace(new, due_at=due)
    callback_id = secrets.token_urlsafe(24)  # 192 random bits: holding the id is the permission
    tx.add_event(run_id, E.CALLBACK_STARTED, now, u.id, u.name,
                 {"callback_id": callback_id, "timeout_at": due})
    return replace(new, callback_id=callback_id, due_at=due)


def _invoke_start(tx: Tx, run_id: str, new: Operation, old: Operation | None,
                  u: OperationUpdate, now: float) -> Operation:
    _require_new(run_id, old, u)
    if u.child is None:
        raise InvalidCheckpoint(f"run {run_id!r}: CHAINED_INVOKE {u.name!r} names no child run")
    child = u.child
    start_run(tx, child.run_id, child.workflow, child.input, now, (run_id, u.id))
    tx.add_event(run_id, E.CHAINED_INVOKE_STARTED, now, u.id, u.name,
                 {"child_run_id": child.run_id})
    if u.sub_type == SubType.START_CHILD:
        return replace(new, status=S.SUCCEEDED, child_run_id=child.run_id, ended_at=now)
    return replace(new, child_run_id=child.run_id)


def _context(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
             now: float) -> Operation:
    status = {A.START: S.STARTED, A.SUCCEED: S.SUCCEEDED, A.FAIL: S.FAILED}[u.action]
    return replace(new, status=status, result=u.payload, error=u.error,
                   ended_at=now if status.is_final else None)


def _cancel_op(tx: Tx, run_id: str, new: Operation, old: Operation | None, u: OperationUpdate,
               now: float) -> Operation:
    return replace(new, status=S.CANCELLED, ended_at=now)


def _require_new(run_id: str, old: Operation | None, u: OperationUpdate) -> None:
    if old is not None:
        raise InvalidCheckpoint(f"run {run_id!r}: {u.type} {u.name!r} ({u.id}) started twice")


def _err(u: OperationUpdate) -> dict[str, object] | None:
    return u.error.to_dict() if u.error else None


_HANDLERS = {
    (OperationType.STEP, A.START): _step_start,
    (OperationType.STEP, A.SUCCEED): _step_succeed,
    (OperationType.STEP, A.FAIL): _step_fail,
    (OperationType.STEP, A.RETRY): _step_retry,
    (OperationType.WAIT, A.START): _wait_start,
    (OperationType.WAIT, A.CANCEL): _cancel_op,
    (OperationType.CALLBACK, A.START): _callback_start,
    (OperationType.CHAINED_INVOKE, A.START): _invoke_start,
    (OperationType.CONTEXT, A.START): _context,
    (OperationType.CONTEXT, A.SUCCEED): _context,
    (OperationType.CONTEXT, A.FAIL): _context,
}


# -- the outside world: signals, callbacks, cancellation ------------------------------------------

def _running(tx: Tx, run_id: str) -> RunInfo:
    run = tx.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


def signal(tx: Tx, run_id: str, name: str, payload: str | None, now: float) -> None:
    """Deliver to a waiter if one is waiting, else buffer: a signal is never lost."""
    run = _running(tx, run_id)
    if run.status is not ExecutionStatus.RUNNING:
        raise UsageError(f"run {run_id!r} has ended ({run.status}); it takes no more signals")
    tx.add_event(run_id, E.SIGNAL_RECEIVED, now, name=name)
    waiter = tx.signal_waiter(run_id, name)
    if waiter is None:
        tx.push_signal(run_id, name, payload, now)
        return
    tx.put_operation(run_id, replace(waiter, status=S.SUCCEEDED, result=payload, ended_at=now))
    tx.add_event(run_id, E.CALLBACK_SUCCEEDED, now, waiter.id, name)
    tx.wake(run_id, now)


def complete_callback(tx: Tx, callback_id: str, payload: str | None, error: ErrorObject | None,
                      now: float) -> str:
    """Resolve a pending callback with a result or an error; returns the run id."""
    found = tx.find_callback(callback_id)
    if found is None or found[1].status is not S.STARTED:
        raise CallbackNotFound(callback_id)
    run_id, op = found
    if error is None:
        tx.put_operation(run_id, replace(op, status=S.SUCCEEDED, result=payload, ended_at=now))
        tx.add_event(run_id, E.CALLBACK_SUCCEEDED, now, op.id, op.name)
    else:
        tx.put_operation(run_id, replace(op, status=S.FAILED, error=error, ended_at=now))
        tx.add_event(run_id, E.CALLBACK_FAILED, now, op.id, op.name, {"error": error.to_dict()})
    tx.wake(run_id, now)
    return run_id


_STOPPABLE = (OperationType.WAIT, OperationType.CALLBACK, OperationType.CHAINED_INVOKE)
_CANCEL_EVENT = {OperationType.WAIT: E.WAIT_CANCELLED, OperationType.CALLBACK: E.CALLBACK_CANCELLED,
                 OperationType.CHAINED_INVOKE: E.CHAINED_INVOKE_CANCELLED}


def cancel(tx: Tx, run_id: str, now: float) -> RunInfo:
    """Ask the run to stop: its waits are cancelled and `Cancelled` meets it at its next await."""
    run = _running(tx, run_id)
    if run.status is not ExecutionStatus.RUNNING or run.cancel_requested:
        return run
    tx.update_run(run_id, cancel_requested=1)
    tx.add_event(run_id, E.EXECUTION_CANCEL_REQUESTED, now)
    for op in tx.waiting_operations(run_id):
        if op.type in _STOPPABLE or op.status is S.PENDING:
            tx.put_operation(run_id, replace(op, status=S.CANCELLED, ended_at=now, due_at=None))
            tx.add_event(run_id, _CANCEL_EVENT.get(op.type, E.STEP_CANCELLED), now, op.id,
                         op.name)
    for child in tx.live_children(run_id):
        cancel(tx, child, now)
    tx.wake(run_id, now)
    return _running(tx, run_id)


def rerun(tx: Tx, source_id: str, new_id: str, from_step: str, input: str | None,
          now: float) -> RunInfo:
    """A new run of the same workflow that reuses the source's recorded results up to the
    first operation named (or with the id) `from_step`, and executes from there on."""
    source = _running(tx, source_id)
    ops = tx.operations(source_id)
    cut = next((i for i, op in enumerate(ops) if from_step in (op.name, op.id)), None)
    if cut is None:
        names = sorted({op.name for op in ops if op.type is OperationType.STEP and op.name})
        raise UsageError(f"run {source_id!r} has no operation named {from_step!r}; its steps "
                         f"are: {', '.join(names) or 'none'}")
    run, created = start_run(tx, new_id, source.workflow,
                             source.input if input is None else input, now)
    if not created:
        raise UsageError(f"run id {new_id!r} is taken; choose another id for the rerun")
    for op in ops[:cut]:
        if op.status.is_final:  # a callback id stays with the run that issued it
            tx.put_operation(new_id, replace(op, callback_id=None))
    tx.add_event(new_id, E.EXECUTION_RERUN, now,
                 details={"source_run_id": source_id, "from": from_step, "reused": cut})
    return run


def unpark(tx: Tx, run_ids: Sequence[str], now: float) -> None:
    """Give parked runs another try, e.g. when a worker with new code starts."""
    for run_id in run_ids:
        tx.wake(run_id, now)
