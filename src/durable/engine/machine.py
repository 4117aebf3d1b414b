"""The whole state machine of runs and operations, in one place, and nothing else.

Every function here runs inside one store transaction (`Tx`) and is the only code that changes a
run's or an operation's status. The SDK proposes (checkpoint updates, invocation outcomes); this
module decides. Only here does a run start, get leased, end, time out, get terminated or
deleted, a WAIT complete, a PENDING step become READY, a callback resolve or time out, a
signal meet its waiter, a stale invocation get fenced out, and an operator pause or resume a
run or edit a step's outcome. `_HANDLERS` is the table of what each (operation type, action)
of a checkpoint does; each handler takes one `Change`.

Beside it, in modules of their own, the decisions that change no status and start runs only
through `start_run`: `engine/admission.py` decides which queued runs `claim` may lease (queue
limits and rates), `engine/schedules.py` which schedule tick fires, and `invoke/dataplane.py`
maps AWS execution names onto run ids.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from durable.engine import admission, kv, streams
from durable.errors import (
    CallbackNotFound,
    KvTypeError,
    RunIdTaken,
    RunNotEnded,
    RunNotFound,
    RunStateConflict,
    StaleToken,
    UsageError,
)
from durable.model import (
    ENDED,
    LOST,
    CheckpointResult,
    ChildPolicy,
    ErrorObject,
    EventType,
    ExecutionStatus,
    Invocation,
    InvocationOutput,
    InvocationRetry,
    InvocationStatus,
    LogLine,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    RunInfo,
    SubType,
    attributes,
)
from durable.model.ids import check_run_id, child_run_id
from durable.model.kv import KvCommand
from durable.model.patch import merge_patch
from durable.model.queues import Enqueue, ServedQueue
from durable.store.history import attempt_details
from durable.store.rows import FIRST_TOKEN, dump_error
from durable.store.runs import Fence
from durable.store.tx import Tx

S = OperationStatus
A = OperationAction
E = EventType
_WAITING = (S.STARTED, S.PENDING)


class InvalidCheckpoint(UsageError):
    """An update asks for a transition the operation's current state does not allow."""


@dataclass(frozen=True, slots=True)
class Claimed:
    invocation: Invocation
    token: int
    lost_by: str | None = None
    """The lease holder this claim took the run over from (it stopped renewing the lease)."""
    admitted: tuple[str, float] | None = None
    """The queue this claim admitted the run to, and how long the run waited for it."""
    alone: bool = False
    """The run has no parent run and no execution timeout (see `finish_fence`)."""


# -- starting, claiming, finishing ---------------------------------------------------------------

def start_run(tx: Tx, run_id: str, workflow: str, input: str | None, now: float,
              parent: tuple[str, str] | None = None,
              lease: tuple[str, float] | None = None,
              any_input: bool = True,
              enqueue: Enqueue | None = None,
              timeout: float | None = None) -> tuple[RunInfo, bool]:
    """Create the run unless one with this id exists; returns (run, created). With `lease`
    (owner, until), a new run is leased to that owner from the start (`invocation_of`). With
    `enqueue`, it waits ENQUEUED for its queue, and when a live run of that queue has its dedup
    id, that run is returned instead (not created). Every run is created here, so this is
    where its id is checked against the rule. Without `any_input`, an existing run started
    with another input is refused: a caller reusing an id for different work would otherwise
    get the old run back and never know. `timeout`: a new run's execution timeout, in seconds
    from now."""
    check_run_id(run_id)
    if enqueue is not None and enqueue.queue is None:
        enqueue = replace(enqueue, queue=_recorded_queue(tx, workflow))
    dedup = None if enqueue is None or enqueue.queue is None or enqueue.dedup_id is None else (
        enqueue.queue, enqueue.dedup_id)
    if dedup is not None:
        duplicate = tx.live_duplicate(*dedup)
        if duplicate is not None:
            return duplicate, False
    created = tx.insert_run(run_id, workflow, input, now, parent, lease, enqueue)
    run = tx.get_run(run_id)
    if run is None:  # a concurrent start took the dedup id first; its commit let ours through
        assert dedup is not None
        run = tx.live_duplicate(*dedup)
        assert run is not None
        return run, False
    if created:
        if timeout is not None:
            run = _set_deadline(tx, run, now + timeout)
        tx.add_event(run_id, E.EXECUTION_STARTED, now, details={"workflow": workflow})
    elif run.workflow != workflow:
        raise RunIdTaken(run_id, f"run id {run_id!r} is already used by a run of workflow "
                                 f"{run.workflow!r}; choose another id")
    elif not any_input and not same_input(run.input, input):
        raise RunIdTaken(run_id, f"run {run_id!r} was already started with another input; "
                                 "use another id, the same input, or ask for the existing run "
                                 "(existing=True, --existing)")
    return run, created


def _recorded_queue(tx: Tx, workflow: str) -> str:
    """The queue a worker serving `workflow` recorded for it."""
    queue = tx.workflow_queue(workflow)
    if queue is None:
        raise UsageError(f"workflow {workflow!r} is on no queue known here (it is not loaded in "
                         "this process, and no worker serving it has recorded a queue): "
                         "priority and dedup_id order and deduplicate the runs waiting for a "
                         "queue; declare it with @workflow(queue=...)")
    return queue


def _set_deadline(tx: Tx, run: RunInfo, at: float) -> RunInfo:
    tx.update_run(run.run_id, timeout_at=at)
    return replace(run, timeout_at=at)


def same_input(a: str | None, b: str | None) -> bool:
    """Inputs are the same JSON value, however spaced."""
    if a == b:
        return True
    try:
        return bool(json.loads(a or "null") == json.loads(b or "null"))
    except ValueError:
        return False


def claim(tx: Tx, owner: str, now: float, limit: int, lease_seconds: float,
          workflows: Sequence[str], queues: Sequence[ServedQueue] = (),
          timeouts: Mapping[str, float] | None = None) -> list[Claimed]:
    """Lease up to `limit` runs that have work, apply what fell due, and hand them out.

    Runs of workflows on `queues` start only once their queue admits them; after that they hold
    their slot and come back like any other run (after a sleep, a signal, a crash).
    `timeouts`: the execution timeout each workflow declares. A run started where its workflow's
    code is unknown (by name, over the API, as another deployment's child) gets its deadline
    here, counted from its start: only the code serving it knows the workflow's timeout.
    """
    until = now + lease_seconds
    lost = tx.expired_leases(now, limit, workflows, admission.queued(queues))
    leased = tx.claim(now, limit, workflows, admission.queued(queues), owner, until)
    queue_of: dict[str, str] = {}
    for q in queues:
        if len(leased) >= limit:
            break
        admitted = admission.admit(tx, q, now, limit - len(leased))
        queue_of.update(dict.fromkeys(admitted, q.queue.name))
        leased += tx.lease(admitted, owner, until)
    operations = tx.operations_of([run.run_id for run, _ in leased])
    streams.abandon_lost(tx, operations, now)
    out = []
    for run, token in leased:
        holder = lost.get(run.run_id)
        if holder is not None:
            _record_loss(tx, run, holder, lease_seconds, operations[run.run_id], now)
        if run.timeout_at is None and timeouts and run.workflow in timeouts:
            run = _set_deadline(tx, run, run.created_at + timeouts[run.workflow])
        if run.timeout_at is not None and run.timeout_at <= now:
            time_out(tx, run, now)  # the deadline passed while it waited: never invoke again
            continue
        ops = operations[run.run_id]
        moved = {op.id: op for op in advance_due(tx, run.run_id, now, ops)}
        # What a lease released without an outcome held (a worker lost, taken over, shut down).
        moved.update((op.id, op) for op in _deliver_held_reports(tx, run.run_id, now, ops))
        queue = queue_of.get(run.run_id)
        out.append(Claimed(Invocation(run.run_id, run.workflow, run.input,
                                      {op.id: moved.get(op.id, op) for op in ops},
                                      run.cancel_requested, token), token,
                           holder and holder[0],
                           None if queue is None else (queue, now - run.created_at),
                           _alone(run)))
    return out


def take_over(tx: Tx, owner: str, now: float, lease_seconds: float) -> list[RunInfo]:
    """Take `owner`'s runs now instead of after their leases: it is known to be gone (a dead
    process of this host). Their loss is recorded here, from when the leases would really have
    run out; the claim that takes the runs next sees them ended now, and no owner."""
    held = tx.expire_leases(owner, now)
    operations = tx.operations_of(list(held))
    runs = [run for run in map(tx.get_run, held) if run is not None]
    for run in runs:
        _record_loss(tx, run, (owner, held[run.run_id]), lease_seconds,
                     operations[run.run_id], now)
    return runs


def _record_loss(tx: Tx, run: RunInfo, holder: tuple[str, float], lease_seconds: float,
                 ops: Sequence[Operation], now: float) -> None:
    """A worker died (or stalled) holding the run: say so in its history, with the steps it
    was running, and count the compute it spent on them. The worker was last seen alive when
    it last renewed its lease, one lease length before the lease ran out (the length this
    claim leases for: workers of one deployment share it); what ran after that is unknown, so
    it is not counted. The steps stay STARTED: the next attempt of each records the lost one
    as failed (`_lost_attempt`), once the SDK has decided whether to run it again."""
    owner, expired = holder
    seen = expired - lease_seconds
    steps = [op for op in ops if op.type is OperationType.STEP and op.status is S.STARTED]
    lost = sum(max(0.0, seen - (op.started_at or seen)) for op in steps)
    tx.add_event(run.run_id, E.WORKER_LOST, now, details={
        "worker": owner, "last_seen": seen, "lease_expired_at": expired, "compute_lost": lost,
        "in_flight": [{"id": op.id, "name": op.name, "attempt": op.attempt,
                       "started_at": op.started_at} for op in steps]})
    if lost:
        tx.update_run(run.run_id, compute_seconds=run.compute_seconds + lost)


def invocation_of(run: RunInfo) -> Claimed:
    """The first invocation of a run that `start_run` created leased: what a claim of it would
    have handed out."""
    return Claimed(Invocation(run.run_id, run.workflow, run.input, {}, run.cancel_requested,
                              FIRST_TOKEN), FIRST_TOKEN, alone=_alone(run))


def _alone(run: RunInfo) -> bool:
    return run.parent_run_id is None and run.timeout_at is None


def next_due(tx: Tx, now: float, workflows: Sequence[str],
             queues: Sequence[ServedQueue] = ()) -> float | None:
    """When `claim` will next find work for these workflows, or a run `queues` may admit: how
    long a worker may sleep unless woken."""
    due = [tx.next_due(workflows, admission.queued(queues)),
           *(admission.next_admission(tx, q, now) for q in queues)]
    return min((t for t in due if t is not None), default=None)


def release_unstarted(tx: Tx, run_id: str, token: int, now: float) -> None:
    """Give back a lease without invoking (a worker shutting down, a workflow it does not know)."""
    run = tx.fenced_run(run_id, token)
    if run is not None:
        tx.update_run(run_id, lease_owner=None, lease_expires=None, ready_at=now)
        _invocation_ended(tx, run)


def _invocation_ended(tx: Tx, run: RunInfo) -> None:
    """The run's invocation gave its lease back. Paused, the run gives back its queue slot
    too: it held it only while that invocation went on, and waits for one again on resume."""
    if run.status is ExecutionStatus.PAUSED:
        tx.release_slot(run.run_id)


def finish_invocation(tx: Tx, run_id: str, token: int, out: InvocationOutput, now: float,
                      duration: float, logs: Sequence[LogLine] = (),
                      children: bool = True) -> None:
    """Record how an invocation ended, with the `ctx.logger` lines it logged since its last
    checkpoint (a run continued as new starts its log afresh, as its history). `children`
    False: the caller knows the run has no CHAINED_INVOKE operation, so no child run it awaits
    to stop when it ends, and none is looked for (a query per run otherwise)."""
    run = _fenced(tx, run_id, token)
    tx.add_logs(run_id, logs)
    tx.add_event(run_id, E.INVOCATION_COMPLETED, now,
                 details={"status": out.status.value, "duration": duration})
    if run.ready_at is not None:  # something arrived while it ran, maybe a child's end
        _deliver_held_reports(tx, run_id, now)
    settled: dict[str, Any] = {
        "compute_seconds": run.compute_seconds + duration, "invocation_failures": 0,
        "invocation_error": None, "invocation_failing_since": None}
    common = {"lease_owner": None, "lease_expires": None, "updated_at": now, **settled}
    if out.status is InvocationStatus.PENDING:
        if run.timeout_at is not None and run.timeout_at <= now:
            tx.update_run(run_id, **common)
            time_out(tx, run, now)
            return
        if out.parked is not None:
            tx.add_event(run_id, E.EXECUTION_PARKED, now, details={"error": out.parked.to_dict()})
            tx.update_run(run_id, parked=dump_error(out.parked), ready_at=run.timeout_at,
                          **common)
            _invocation_ended(tx, run)
            return
        due = [op.due_at for op in tx.waiting_operations(run_id) if op.due_at is not None]
        if run.ready_at is not None:  # something arrived while the invocation ran
            due.append(run.ready_at)
        if run.timeout_at is not None:  # wake to end it when its execution timeout comes
            due.append(run.timeout_at)
        tx.update_run(run_id, parked=None, ready_at=min(due, default=None), **common)
        _invocation_ended(tx, run)
        return
    if out.continue_as_new is not None:
        tx.update_run(run_id, parked=None, **common)
        _invocation_ended(tx, run)
        generation = tx.restart_run(run_id, out.continue_as_new, now)
        tx.add_event(run_id, E.EXECUTION_CONTINUED_AS_NEW, now,
                     details={"generation": generation})
        return
    if out.status is InvocationStatus.SUCCEEDED:
        status = ExecutionStatus.SUCCEEDED
    elif out.stopped:
        status = ExecutionStatus.STOPPED
    else:
        status = ExecutionStatus.FAILED
    _end_run(tx, run, status, out, now, stop_children=children, **settled)


def finish_fence(run_id: str, token: int, confined: bool) -> Fence:
    """The fence read `finish_invocation` begins with, for a writer to read ahead with
    others'. `confined`: the caller knows ending the run changes no other run, as when it is
    `Claimed.alone` (no parent to tell; no execution timeout, whose end cancels what the run
    waits on, children of earlier generations included), has no CHAINED_INVOKE operation (no
    child to stop) and the write claims nothing besides."""
    return Fence(run_id, token, None, confined)


def _fenced(tx: Tx, run_id: str, token: int) -> RunInfo:
    run = tx.fenced_run(run_id, token)
    if run is None:
        raise StaleToken(f"run {run_id!r}: invocation outcome rejected, another one took over")
    return run


_END_EVENT = {ExecutionStatus.SUCCEEDED: E.EXECUTION_SUCCEEDED,
              ExecutionStatus.FAILED: E.EXECUTION_FAILED,
              ExecutionStatus.STOPPED: E.EXECUTION_STOPPED,
              ExecutionStatus.TIMED_OUT: E.EXECUTION_TIMED_OUT}


def _end_run(tx: Tx, run: RunInfo, status: ExecutionStatus, out: InvocationOutput,
             now: float, *, stop_children: bool = True, details: dict[str, Any] | None = None,
             **settled: Any) -> None:
    """Record the run's end (however it came), with more `details` for its history event,
    tell its parent, stop the children it awaited (unless not to `stop_children`).
    `settled`: more columns of the run to set in the same update."""
    details = {**({"error": out.error.to_dict()} if out.error else {}), **(details or {})}
    tx.add_event(run.run_id, _END_EVENT[status], now, details=details or None)
    tx.update_run(run.run_id, status=status.value, result=out.result,
                  error=dump_error(out.error), ended_at=now, updated_at=now, ready_at=None,
                  parked=None, lease_owner=None, lease_expires=None, **settled)
    tx.notify()  # clients waiting for the result
    _report_to_parent(tx, replace(run, status=status, result=out.result, error=out.error,
                                  ended_at=now), now)
    if stop_children:
        _stop_awaited_children(tx, run.run_id, now)


def time_out(tx: Tx, run: RunInfo, now: float) -> None:
    """The run's execution timeout passed: it ends TIMED_OUT whatever it was waiting for."""
    limit = (run.timeout_at or now) - run.created_at
    _cancel_waiting(tx, run.run_id, now)
    _end_run(tx, run, ExecutionStatus.TIMED_OUT, InvocationOutput(
        InvocationStatus.FAILED, error=ErrorObject(
            "Execution.TimedOut", f"Execution timed out after {limit:.0f} seconds.")), now)


def terminate(tx: Tx, run_id: str, error: ErrorObject | None, now: float,
              children: ChildPolicy = ChildPolicy.TERMINATE) -> float:
    """End the run STOPPED at once (AWS StopDurableExecution), unlike `cancel`, which asks the
    workflow to stop at its next await: no handler or compensation of it runs. An invocation
    in flight is fenced out: the run is no longer RUNNING, so its checkpoints and outcome are
    rejected. Its running children go as `children` says. Returns when it stopped;
    terminating an ended run is a no-op that returns when it ended."""
    run = _running(tx, run_id)
    if run.status in ENDED:
        return run.ended_at or now
    _cancel_waiting(tx, run_id, now, children=children is ChildPolicy.CANCEL)
    _cancel_in_flight(tx, run_id, now)
    streams.abandon_at_end(tx, run_id, now)
    if children is ChildPolicy.TERMINATE:
        for child in tx.live_children(run_id):
            terminate(tx, child, ErrorObject(
                "Execution.Stopped", f"terminated with its parent run {run_id!r}"), now)
    _end_run(tx, run, ExecutionStatus.STOPPED, InvocationOutput(
        InvocationStatus.FAILED, error=error or ErrorObject(
            "Execution.Stopped", "Execution stopped by user request")), now,
        stop_children=children is not ChildPolicy.ABANDON,
        details={"terminated": True, "children": children.value})
    return now


def delete(tx: Tx, run_id: str) -> RunInfo:
    """Delete an ended run with everything kept of it (`store/retention.py` lists the tables);
    returns the run as it was. A run still running is refused: terminate it first. Its child
    runs are runs of their own and stay (a purge takes them once they are ended and old
    enough); a running child no longer reports to anyone."""
    run = _running(tx, run_id)
    if run.status not in ENDED:
        raise RunNotEnded(run_id, f"run {run_id!r} is {run.status}; only an ended run can be "
                          f"deleted: terminate it first (`durable terminate {run_id}`)")
    tx.delete_runs([run_id])
    return run


def purge(tx: Tx, ended_before: float, limit: int, workflow: str | None = None,
          unless: Sequence[str] = ()) -> int:
    """Delete up to `limit` runs that ended before `ended_before` (of `workflow` only, if
    given; of none of the workflows `unless`), oldest first, as `delete` would; returns how
    many. One bounded batch, so that the transaction holding the write lock stays short:
    callers loop until it returns < `limit`."""
    return len(tx.delete_ended(ended_before, limit, workflow, unless))


def retry_invocation(tx: Tx, run_id: str, token: int, error: ErrorObject, now: float,
                     duration: float, policy: InvocationRetry) -> bool:
    """The function could not be invoked, or crashed or timed out before answering: not the
    workflow's failure, so the run never fails of it. It is invoked again after a capped
    exponential backoff, with the error and since when it has been failing on the run for all
    to see; past the policy's deadline it is parked instead. Returns whether another attempt
    is scheduled."""
    run = _fenced(tx, run_id, token)
    failures = run.invocation_failures + 1
    since = run.invocation_failing_since if run.invocation_failing_since is not None else now
    tx.add_event(run_id, E.INVOCATION_COMPLETED, now, details={
        "status": "FAILED", "duration": duration, "error": error.to_dict(), "attempt": failures})
    if run.ready_at is not None:  # the next attempt sees what arrived meanwhile
        _deliver_held_reports(tx, run_id, now)
    common = {"lease_owner": None, "lease_expires": None, "updated_at": now,
              "compute_seconds": run.compute_seconds + duration, "invocation_failures": failures,
              "invocation_error": dump_error(error), "invocation_failing_since": since}
    if policy.deadline is not None and now - since >= policy.deadline:
        parked = ErrorObject(error.type, f"the function could not be invoked for "
                             f"{now - since:.0f} s ({failures} attempts; retry deadline "
                             f"{policy.deadline:g} s); last: {error.message}. Register the "
                             "function again (`durable functions add`) to resume the run")
        tx.add_event(run_id, E.EXECUTION_PARKED, now, details={"error": parked.to_dict()})
        tx.update_run(run_id, parked=dump_error(parked), ready_at=run.timeout_at, **common)
        _invocation_ended(tx, run)
        return False
    retry_at = now + policy.delay(failures)
    if run.timeout_at is not None:
        retry_at = min(retry_at, run.timeout_at)
    tx.update_run(run_id, ready_at=retry_at, **common)
    _invocation_ended(tx, run)
    return True


def _stop_awaited_children(tx: Tx, run_id: str, now: float) -> None:
    """A run that ended no longer waits for the children it invoked (e.g. a quorum was
    reached without them): cancel those. Children started with start_child live on."""
    for child in tx.live_children(run_id):
        link = tx.parent_of(child)
        op = tx.get_operation(run_id, link[1]) if link else None
        if op is not None and op.sub_type == SubType.INVOKE:
            cancel(tx, child, now)


def _report_to_parent(tx: Tx, run: RunInfo, now: float) -> None:
    """A child run ended: complete the parent's CHAINED_INVOKE and wake the parent.

    While an invocation of the parent holds its lease, the report is held instead: the child's
    run keeps its outcome, and the parent's `ready_at` says something arrived meanwhile (as a
    callback does), so that whoever ends that invocation or takes its lease delivers it
    (`_deliver_held_reports`). The parent's history then shows the child's end after the
    invocation that awaited it, as AWS's does, and a parent is not re-invoked for a child's
    end while it still runs. The parent's row is locked first: its invocation, ending at the
    same time, then either sees this child ended or has released its lease before this reads
    it."""
    parent_run, op_id = run.parent_run_id, run.parent_op_id
    if parent_run is None or op_id is None or tx.get_run(parent_run, lock=True) is None:
        return
    op = tx.get_operation(parent_run, op_id)
    if op is None or op.status is not S.STARTED:  # detached, or the parent stopped waiting
        return
    if tx.lease_of(parent_run)[0] is not None:
        tx.update_run(parent_run, ready_at=now, updated_at=now)
        return
    _complete_invoke(tx, parent_run, op, run, now)
    tx.wake(parent_run, now)


def _deliver_held_reports(tx: Tx, run_id: str, now: float,
                          waiting: Sequence[Operation] | None = None) -> list[Operation]:
    """Complete the CHAINED_INVOKEs among the run's `waiting` operations (by default read
    here) whose child run has ended: what `_report_to_parent` held while an invocation of the
    run was in flight. For the end of an invocation, and for every claim: a lease can also be
    released without an outcome (a worker lost or taken over, a shutdown), and only the next
    claim sees the run then. The caller decides when the run runs next. Returns the operations
    completed."""
    awaited = {op.child_run_id: op for op in (
        tx.waiting_operations(run_id) if waiting is None else waiting)
        if op.type is OperationType.CHAINED_INVOKE and op.status is S.STARTED
        and op.child_run_id is not None}
    if not awaited:
        return []
    return [_complete_invoke(tx, run_id, awaited[child.run_id], child, now)
            for child in tx.ended_runs(list(awaited))]


def _complete_invoke(tx: Tx, parent_run: str, op: Operation, child: RunInfo,
                     now: float) -> Operation:
    """The parent's CHAINED_INVOKE `op` takes the ended `child`'s outcome."""
    if child.status is ExecutionStatus.SUCCEEDED:
        done = op.evolve(status=S.SUCCEEDED, result=child.result, ended_at=now)
    else:
        error = child.error or ErrorObject(child.status.value,
                                           f"child run {child.run_id!r} ended {child.status}")
        done = op.evolve(status=S.FAILED, error=error, ended_at=now)
    tx.put_operation(parent_run, done)
    tx.add_event(parent_run, E.CHAINED_INVOKE_SUCCEEDED if done.status is S.SUCCEEDED
                 else E.CHAINED_INVOKE_FAILED, now, op.id, op.name, {"child_run_id": child.run_id})
    return done


# -- what time brings: leases renewed, operations falling due, callbacks' heartbeats --------------

def heartbeat(tx: Tx, owner: str, run_ids: Sequence[str], until: float) -> set[str]:
    """Renew the leases `owner` holds on these runs; returns those it still held."""
    return tx.extend_leases(owner, run_ids, until)


def advance_due(tx: Tx, run_id: str, now: float,
                ops: Sequence[Operation] | None = None) -> list[Operation]:
    """Complete waits, ready retries and time out callbacks whose due time has come, among
    `ops` (by default the run's waiting operations, read here); returns the operations that
    moved, as they now stand."""
    moved = []
    for op in tx.waiting_operations(run_id) if ops is None else ops:
        if op.status not in _WAITING or op.due_at is None or op.due_at > now:
            continue
        if op.type is OperationType.WAIT:
            op = op.evolve(status=S.SUCCEEDED, ended_at=now)
            tx.add_event(run_id, E.WAIT_SUCCEEDED, now, op.id, op.name)
        elif op.type is OperationType.STEP and op.status is S.PENDING:
            op = op.evolve(status=S.READY, due_at=None)
            tx.add_event(run_id, E.STEP_READY, now, op.id, op.name, {"attempt": op.attempt + 1})
        elif op.type is OperationType.CALLBACK:
            error = _callback_timeout_error(tx, op)
            op = op.evolve(status=S.TIMED_OUT, error=error, ended_at=now)
            tx.add_event(run_id, E.CALLBACK_TIMED_OUT, now, op.id, op.name,
                         {"error": error.to_dict()})
        else:
            continue
        tx.put_operation(run_id, op)
        moved.append(op)
    return moved


def _callback_timeout_error(tx: Tx, op: Operation) -> ErrorObject:
    """Which limit a callback ran into: its timeout, or its heartbeat timeout (the error types
    are AWS's, so a handler written with AWS's SDK can tell them apart)."""
    heartbeat = tx.get_heartbeat(op.callback_id) if op.callback_id else None
    if heartbeat is not None and (heartbeat[1] is None or (op.due_at or 0) < heartbeat[1]):
        return ErrorObject("Callback.Heartbeat", "Callback timed out on heartbeat")
    return ErrorObject("Callback.Timeout", "Callback timed out")


def heartbeat_callback(tx: Tx, callback_id: str, now: float) -> None:
    """The holder of a callback id says it is still working: push its heartbeat deadline out.
    A callback without a heartbeat timeout accepts heartbeats and changes nothing."""
    found = tx.find_callback(callback_id)
    if found is None or found[1].status is not S.STARTED:
        raise CallbackNotFound(callback_id)
    run_id, op = found
    tx.add_event(run_id, E.CALLBACK_HEARTBEAT, now, op.id, op.name)
    heartbeat = tx.get_heartbeat(callback_id)
    if heartbeat is None:
        return
    every, deadline = heartbeat
    due = now + every if deadline is None else min(now + every, deadline)
    tx.put_operation(run_id, op.evolve(due_at=due))


# -- checkpoints -----------------------------------------------------------------------------------

def checkpoint(tx: Tx, run_id: str, token: int, updates: Sequence[OperationUpdate],
               now: float, logs: Sequence[LogLine] = ()) -> CheckpointResult:
    """Apply a batch of updates atomically, if `token` is still the run's current one, and keep
    the `ctx.logger` lines logged since the last checkpoint with them."""
    fenced = tx.fence_and_get(run_id, token, _first_op(updates))
    if fenced is None:
        raise StaleToken(f"run {run_id!r}: checkpoint rejected, its invocation is no longer "
                         "current (its lease was taken over, or the run was terminated)")
    cancel_requested, paused, first = fenced
    _refuse_double_starts(run_id, updates)
    touched = [_apply(tx, run_id, u, now, first if i == 0 else tx.get_operation(run_id, u.id))
               for i, u in enumerate(updates)]
    tx.add_logs(run_id, logs)
    return CheckpointResult(touched, cancel_requested, paused)


def checkpoint_fence(run_id: str, token: int, updates: Sequence[OperationUpdate]) -> Fence:
    """The fence read `checkpoint` begins with, for a writer to read ahead with others'. A
    checkpoint is confined to its run (a child it starts is a new run, and the signals,
    callbacks and published values it takes or sets are its own) unless it signals or cancels
    another run (`ctx.signal_run`, `ctx.cancel_run`)."""
    return Fence(run_id, token, _first_op(updates),
                 not any(u.sub_type in _ACTS_ON_ANOTHER_RUN for u in updates))


def _first_op(updates: Sequence[OperationUpdate]) -> str:
    """The operation whose row a checkpoint's fence read returns with the run."""
    return updates[0].id if updates else ""


def _refuse_double_starts(run_id: str, updates: Sequence[OperationUpdate]) -> None:
    """One invocation starts an operation once: a START over a STARTED step is a new attempt
    only when it comes from a later invocation (`_lost_attempt`), never within one batch."""
    seen: set[str] = set()
    for u in updates:
        if u.action is A.START:
            if u.id in seen:
                raise InvalidCheckpoint(f"run {run_id!r}: {u.type} {u.name!r} ({u.id}) "
                                        "started twice in one checkpoint")
            seen.add(u.id)


def _apply(tx: Tx, run_id: str, u: OperationUpdate, now: float, stored: Operation | None
           ) -> Operation:
    """Apply `u` to `stored`, the operation it updates as it stands (None: a new one)."""
    if stored is not None and stored.status is S.CANCELLED and u.action is A.CANCEL:
        return stored  # the engine cancelled it already, when the cancel request came in
    if stored is not None and (stored.type is not u.type or stored.status.is_final):
        raise InvalidCheckpoint(f"run {run_id!r}: cannot {u.action} {u.type} operation {u.id} "
                                f"({u.name!r}); it is {stored.type} {stored.status}")
    op = stored or Operation(u.id, u.type, S.STARTED, u.name, u.parent_id, u.sub_type,
                             started_at=u.started_at or now)
    handler = _HANDLERS.get((u.type, u.action))
    if handler is None:
        raise InvalidCheckpoint(f"run {run_id!r}: action {u.action} is not valid for {u.type}")
    new = handler(Change(tx, run_id, u, stored, op, now))
    tx.put_operation(run_id, new, u.input)
    return new


@dataclass(frozen=True, slots=True)
class Change:
    """One update meeting one operation, inside one transaction: what a handler decides on.
    Its handler returns the operation as it is to be stored.

    `op` is what the handler builds on: the operation as it stands, or a new STARTED one when
    the update creates it. `stored` is the operation as it stands (None: there is none yet), so a
    handler can tell a first START from a second, or an outcome of a START it saw from one
    without.
    """

    tx: Tx
    run_id: str
    update: OperationUpdate
    stored: Operation | None
    op: Operation
    now: float

    def record(self, event: EventType, details: dict[str, Any] | str | None = None) -> None:
        """Add `event`, about the updated operation, to the run's history (`details`: see
        `Tx.add_event`)."""
        self.tx.add_event(self.run_id, event, self.now, self.update.id, self.update.name, details)


def _step_start(c: Change) -> Operation:
    if c.stored is not None and c.stored.status is not S.READY and not _lost_attempt(c):
        raise InvalidCheckpoint(f"run {c.run_id!r}: step {c.update.name!r} started twice")
    started = c.update.started_at or c.now
    c.record(E.STEP_STARTED, {"attempt": c.op.attempt + 1})
    return c.op.evolve(status=S.STARTED, attempt=c.op.attempt + 1, started_at=started)


def _attempt(c: Change) -> int:
    """The attempt number an outcome belongs to: START already counted it, else count it now.
    A START counted by an invocation that was lost does not count for this one's outcome (and
    the lost attempt is recorded failed)."""
    started = c.stored is not None and c.stored.status is S.STARTED
    return c.op.attempt if started and not _lost_attempt(c) else c.op.attempt + 1


def _lost_attempt(c: Change) -> bool:
    """Whether `c` begins a new attempt of a step whose stored attempt is STARTED: that attempt's
    invocation ended without its outcome (the next START, or an attempt begun after it, can
    only come from a later invocation), so it is recorded failed here, first. An outcome with
    no begin time of its own, or the stored one, is that attempt's own (at-most-once)."""
    stored, begun = c.stored, c.update.started_at
    if stored is None or stored.status is not S.STARTED:
        return False
    if c.update.action is not A.START and (begun is None or begun <= (stored.started_at or 0)):
        return False
    c.record(E.STEP_FAILED, {
        "attempt": stored.attempt, "retry": True, "started_at": stored.started_at,
        "error": ErrorObject(LOST, f"attempt {stored.attempt} was lost: its invocation ended "
                             "before the step did").to_dict()})
    return True


def _step_succeed(c: Change) -> Operation:
    u, attempt = c.update, _attempt(c)
    started = u.started_at or c.op.started_at
    if u.sub_type == SubType.KV:
        return _kv_command(c, attempt, started)
    if u.sub_type == SubType.SET_EVENT and u.name is not None:
        c.tx.set_published(c.run_id, u.name, u.payload, c.now)
    elif u.sub_type == SubType.SET_ATTRIBUTES and u.payload is not None:
        # In the transaction that records the operation: a replay, finding it recorded,
        # sends nothing, so the attributes are written once however often the run replays.
        c.tx.set_attributes(c.run_id, attributes.decode(u.payload))
    elif u.sub_type == SubType.STREAM_WRITE and u.name is not None:
        streams.record_write(c.tx, c.run_id, u.name, u.payload, u.id, c.now)
    elif u.sub_type == SubType.STREAM_CLOSE and u.name is not None:
        streams.record_close(c.tx, c.run_id, u.name, u.id, c.now)
    elif u.sub_type == SubType.RESPOND:
        c.tx.notify()  # the webhook request waiting for this answer (engine/events.py)
    elif u.sub_type == SubType.SUBSCRIBE and u.payload is not None:
        asked = json.loads(u.payload)
        c.tx.add_subscription(c.run_id, u.id, asked["topic"], asked["filter"], c.now)
    elif u.sub_type in _ACTS_ON_ANOTHER_RUN and u.payload is not None:
        # Done in the transaction that records it, so exactly once: a replay finds it recorded.
        try:
            _act_on_another_run(c.tx, u.sub_type, u.name or "", json.loads(u.payload), c.now)
        except UsageError as e:  # no such run, or it ended: the workflow is told, durably
            error = ErrorObject(type(e).__name__, str(e))
            c.record(E.STEP_FAILED, {"attempt": attempt, "error": error.to_dict(),
                                     "retry": False})
            return c.op.evolve(status=S.FAILED, attempt=attempt, error=error,
                           ended_at=c.now)
    c.record(E.STEP_SUCCEEDED, attempt_details(attempt, started))
    return c.op.evolve(status=S.SUCCEEDED, attempt=attempt, result=u.payload, error=None,
                   started_at=started, ended_at=c.now)


_ACTS_ON_ANOTHER_RUN = frozenset({SubType.SIGNAL_RUN, SubType.CANCEL_RUN})
"""Steps whose recording signals or cancels another run (`ctx.signal_run`, `ctx.cancel_run`)."""


def _act_on_another_run(tx: Tx, sub_type: str, name: str, asked: dict[str, Any],
                        now: float) -> None:
    if sub_type == SubType.SIGNAL_RUN:
        signal(tx, asked["run_id"], name, asked["payload"], now)
        return
    target = _running(tx, asked["run_id"])
    if not target.status.live:
        raise UsageError(f"run {target.run_id!r} has already ended ({target.status})")
    cancel(tx, target.run_id, now)


def _kv_command(c: Change, attempt: int, started: float | None) -> Operation:
    """Apply a workflow's key-value command here, in the transaction that records it: the
    write and its record commit together, so no crash can apply it twice (or lose it)."""
    u = c.update
    if u.payload is None:
        raise InvalidCheckpoint(f"run {c.run_id!r}: key-value operation {u.name!r} carries "
                                "no command")
    try:
        cmd = KvCommand.from_json(u.payload)
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidCheckpoint(f"run {c.run_id!r}: key-value operation {u.name!r} carries "
                                f"no command it can read ({e})") from None
    try:
        outcome = kv.apply(c.tx, cmd, c.now)
    except KvTypeError as e:  # recorded: a replay raises it again rather than retrying
        error = ErrorObject(type(e).__name__, str(e))
        c.record(E.STEP_FAILED, {"attempt": attempt, "error": error.to_dict(), "retry": False})
        return c.op.evolve(status=S.FAILED, attempt=attempt, error=error, ended_at=c.now)
    c.record(E.STEP_SUCCEEDED, attempt_details(attempt, started))
    return c.op.evolve(status=S.SUCCEEDED, attempt=attempt, result=outcome.to_json(),
                   error=None, started_at=started, ended_at=c.now)


def _step_fail(c: Change) -> Operation:
    u, attempt = c.update, _attempt(c)
    c.record(E.STEP_FAILED, {"attempt": attempt, "error": _err(u), "retry": False})
    return c.op.evolve(status=S.FAILED, attempt=attempt, error=u.error, ended_at=c.now)


def _step_retry(c: Change) -> Operation:
    u, attempt = c.update, _attempt(c)
    due = c.now + (u.delay or 0.0)
    # A RETRY may carry a payload instead of an error: the state a polled condition
    # (AWS's wait_for_condition) hands its next attempt, kept per attempt for the history.
    poll = {"state": u.payload} if u.error is None and u.payload is not None else {}
    c.record(E.STEP_FAILED, {"attempt": attempt, "error": _err(u), "retry": True,
                             "next_attempt_at": due, **poll})
    return c.op.evolve(status=S.PENDING, attempt=attempt, result=u.payload, error=u.error,
                   due_at=due)


def _step_heartbeat(c: Change) -> Operation:
    """A running attempt's progress report. Its details replace the last ones; nothing goes
    into the history (heartbeats come every few seconds from long bodies, and only the last
    one matters). Fenced like any checkpoint: a lost worker's late report cannot overwrite
    what the attempt that replaced it reported."""
    if c.stored is None or c.stored.status is not S.STARTED:
        raise InvalidCheckpoint(f"run {c.run_id!r}: heartbeat for step {c.update.name!r} "
                                f"({c.update.id}), which is not running")
    return replace(c.op, result=c.update.payload)


def _wait_start(c: Change) -> Operation:
    _require_new(c)
    due = c.now + max(c.update.delay or 0.0, 0.0)
    c.record(E.WAIT_STARTED, {"due_at": due})
    if due <= c.now:
        c.record(E.WAIT_SUCCEEDED)
        return c.op.evolve(status=S.SUCCEEDED, due_at=due, ended_at=c.now)
    return c.op.evolve(due_at=due)


def _callback_start(c: Change) -> Operation:
    _require_new(c)
    u, now = c.update, c.now
    due = now + u.timeout if u.timeout is not None else None
    if u.sub_type == SubType.SIGNAL:
        assert u.name is not None
        c.record(E.CALLBACK_STARTED, {"signal": u.name, "timeout_at": due})
        buffered = c.tx.pop_signal(c.run_id, u.name)
        if buffered is not None:
            c.record(E.CALLBACK_SUCCEEDED)
            return c.op.evolve(status=S.SUCCEEDED, result=buffered[0], ended_at=now)
        return c.op.evolve(due_at=due)
    if u.sub_type == SubType.NEXT_EVENT:
        return _next_event(c, due)
    # 192 random bits: holding the id is the permission. Hex fits AWS's callback id pattern
    # ([A-Za-z0-9+/]+) and any URL path unescaped.
    callback_id = secrets.token_hex(24)
    c.record(E.CALLBACK_STARTED, {"callback_id": callback_id, "timeout_at": due,
                                  "heartbeat_timeout": u.heartbeat_timeout})
    if u.heartbeat_timeout:
        c.tx.put_heartbeat(callback_id, c.run_id, u.heartbeat_timeout, due)
        due = now + u.heartbeat_timeout if due is None else min(due, now + u.heartbeat_timeout)
    return c.op.evolve(callback_id=callback_id, due_at=due)


def _next_event(c: Change, due: float | None) -> Operation:
    """Take the subscription's oldest buffered event, or wait for the next one to match
    (`engine/events.py` resolves the wait as it publishes it)."""
    key = c.update.payload
    if key is None or not c.tx.has_subscription(c.run_id, key):
        raise InvalidCheckpoint(f"run {c.run_id!r}: next_event on {key!r}, which is no "
                                "subscription of this run")
    c.record(E.CALLBACK_STARTED, {"subscription": key, "timeout_at": due})
    event = c.tx.pop_inbox(c.run_id, key)
    if event is None:
        c.tx.set_waiter(c.run_id, key, c.update.id)
        return c.op.evolve(due_at=due)
    c.record(E.CALLBACK_SUCCEEDED, {"event": event.seq})
    return c.op.evolve(status=S.SUCCEEDED, result=event.to_json(), ended_at=c.now)


def _invoke_start(c: Change) -> Operation:
    _require_new(c)
    u = c.update
    if u.child is None and u.error is not None:  # the target could not be resolved
        c.record(E.CHAINED_INVOKE_FAILED, {"error": _err(u)})
        return c.op.evolve(status=S.FAILED, error=u.error, ended_at=c.now)
    if u.child is None:
        raise InvalidCheckpoint(f"run {c.run_id!r}: CHAINED_INVOKE {u.name!r} names no child run")
    child = u.child
    try:
        run, created = start_run(c.tx, child.run_id, child.workflow, child.input, c.now,
                                 (c.run_id, u.id))
        if not created and (run.parent_run_id, run.parent_op_id) == (c.run_id, u.id):
            # This operation is new (`_require_new`), so the run under its child's id was
            # started by an earlier generation, whose operation ids this one repeats.
            child = replace(child, run_id=_this_generations_child(c, child.run_id))
            run, created = start_run(c.tx, child.run_id, child.workflow, child.input, c.now,
                                     (c.run_id, u.id))
        if not created and (run.parent_run_id, run.parent_op_id) != (c.run_id, u.id):
            raise RunIdTaken(child.run_id, f"run id {child.run_id!r} is taken by a run this "
                             "invoke did not start; give the child another id")
    except RunIdTaken as e:  # the invoke fails with it: waiting on that run would never end
        error = ErrorObject(type(e).__name__, str(e))  # the engine's traceback tells nothing
        c.record(E.CHAINED_INVOKE_FAILED, {"error": error.to_dict()})
        return c.op.evolve(status=S.FAILED, error=error, ended_at=c.now)
    tenant = {"tenant_id": child.tenant_id} if child.tenant_id is not None else {}
    c.record(E.CHAINED_INVOKE_STARTED, {"child_run_id": child.run_id, **tenant})
    if u.sub_type == SubType.START_CHILD:
        return c.op.evolve(status=S.SUCCEEDED, child_run_id=child.run_id, ended_at=c.now)
    return c.op.evolve(child_run_id=child.run_id)


_CONTEXT_EVENT = {A.START: E.CONTEXT_STARTED, A.SUCCEED: E.CONTEXT_SUCCEEDED,
                  A.FAIL: E.CONTEXT_FAILED}


def _context(c: Change) -> Operation:
    u = c.update
    status = {A.START: S.STARTED, A.SUCCEED: S.SUCCEEDED, A.FAIL: S.FAILED}[u.action]
    c.record(_CONTEXT_EVENT[u.action], {"error": _err(u)} if u.error else None)
    # A CONTEXT has no attempts: attempt=1 records AWS's ReplayChildren (the result was too
    # large to checkpoint; the SDK rebuilds it by replaying the children).
    return c.op.evolve(status=status, result=u.payload, error=u.error,
                   attempt=1 if u.replay_children else c.op.attempt,
                   ended_at=c.now if status.is_final else None)


def _cancel_op(c: Change) -> Operation:
    """The SDK stops waiting on an operation because the run was cancelled meanwhile."""
    c.tx.add_event(c.run_id, _CANCEL_EVENT.get(c.op.type, E.STEP_CANCELLED), c.now,
                   c.update.id, c.op.name)
    return c.op.evolve(status=S.CANCELLED, ended_at=c.now, due_at=None)


def _this_generations_child(c: Change, taken: str) -> str:
    """The child id for this generation when an earlier one's child holds `taken`: the
    default id with the generation in it; an id the code chose cannot be changed here."""
    if taken != child_run_id(c.run_id, c.update.id):
        raise RunIdTaken(taken, f"run id {taken!r} is taken by the child an earlier generation "
                         "of this run started (before ctx.continue_as_new); give each "
                         "generation's child an id of its own")
    return child_run_id(c.run_id, c.update.id, c.tx.generation(c.run_id))


def _require_new(c: Change) -> None:
    if c.stored is not None:
        u = c.update
        raise InvalidCheckpoint(f"run {c.run_id!r}: {u.type} {u.name!r} ({u.id}) started twice")


def _err(u: OperationUpdate) -> dict[str, object] | None:
    return u.error.to_dict() if u.error else None


_HANDLERS = {
    (OperationType.STEP, A.START): _step_start,
    (OperationType.STEP, A.SUCCEED): _step_succeed,
    (OperationType.STEP, A.FAIL): _step_fail,
    (OperationType.STEP, A.RETRY): _step_retry,
    (OperationType.STEP, A.HEARTBEAT): _step_heartbeat,
    (OperationType.WAIT, A.START): _wait_start,
    (OperationType.STEP, A.CANCEL): _cancel_op,
    (OperationType.WAIT, A.CANCEL): _cancel_op,
    (OperationType.CALLBACK, A.START): _callback_start,
    (OperationType.CALLBACK, A.CANCEL): _cancel_op,
    (OperationType.CHAINED_INVOKE, A.START): _invoke_start,
    (OperationType.CHAINED_INVOKE, A.CANCEL): _cancel_op,
    (OperationType.CONTEXT, A.START): _context,
    (OperationType.CONTEXT, A.SUCCEED): _context,
    (OperationType.CONTEXT, A.FAIL): _context,
}


# -- the outside world: signals, callbacks, cancellation ------------------------------------------

def _running(tx: Tx, run_id: str) -> RunInfo:
    run = tx.get_run(run_id, lock=True)  # serialized with the run's checkpoints: see get_run
    if run is None:
        raise RunNotFound(run_id)
    return run


def signal(tx: Tx, run_id: str, name: str, payload: str | None, now: float) -> None:
    """Deliver to a waiter if one is waiting, else buffer: a signal is never lost."""
    run = _running(tx, run_id)
    if not run.status.live:
        raise UsageError(f"run {run_id!r} has ended ({run.status}); it takes no more signals")
    tx.add_event(run_id, E.SIGNAL_RECEIVED, now, name=name)
    waiter = tx.signal_waiter(run_id, name)
    if waiter is None:
        tx.push_signal(run_id, name, payload, now)
        return
    tx.put_operation(run_id, waiter.evolve(status=S.SUCCEEDED, result=payload, ended_at=now))
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
        tx.put_operation(run_id, op.evolve(status=S.SUCCEEDED, result=payload, ended_at=now))
        tx.add_event(run_id, E.CALLBACK_SUCCEEDED, now, op.id, op.name)
    else:
        tx.put_operation(run_id, op.evolve(status=S.FAILED, error=error, ended_at=now))
        tx.add_event(run_id, E.CALLBACK_FAILED, now, op.id, op.name, {"error": error.to_dict()})
    tx.wake(run_id, now)
    return run_id


_STOPPABLE = (OperationType.WAIT, OperationType.CALLBACK, OperationType.CHAINED_INVOKE)
_CANCEL_EVENT = {OperationType.WAIT: E.WAIT_CANCELLED, OperationType.CALLBACK: E.CALLBACK_CANCELLED,
                 OperationType.CHAINED_INVOKE: E.CHAINED_INVOKE_CANCELLED}


def cancel(tx: Tx, run_id: str, now: float) -> RunInfo:
    """Ask the run to stop: its waits are cancelled and `Cancelled` meets it at its next await."""
    run = _running(tx, run_id)
    if not run.status.live or run.cancel_requested:
        return run
    if run.status is ExecutionStatus.ENQUEUED:  # never invoked: no code of it has to run
        terminate(tx, run_id, ErrorObject("Execution.Stopped", "cancelled while enqueued"), now)
        return _running(tx, run_id)
    tx.update_run(run_id, cancel_requested=1)
    tx.add_event(run_id, E.EXECUTION_CANCEL_REQUESTED, now)
    _cancel_waiting(tx, run_id, now)
    tx.wake(run_id, now)
    return _running(tx, run_id)


def _cancel_waiting(tx: Tx, run_id: str, now: float, children: bool = True) -> None:
    """Cancel what the run waits on (waits, callbacks, retry backoffs, and its child runs
    unless not `children`)."""
    for op in tx.waiting_operations(run_id):
        if op.type in _STOPPABLE or op.status is S.PENDING:
            tx.put_operation(run_id, op.evolve(status=S.CANCELLED, ended_at=now, due_at=None))
            tx.add_event(run_id, _CANCEL_EVENT.get(op.type, E.STEP_CANCELLED), now, op.id,
                         op.name)
    if children:
        for child in tx.live_children(run_id):
            cancel(tx, child, now)


TERMINATED = "Execution.Terminated"
"""The error type of an operation that was in flight when its run was terminated."""


def _cancel_in_flight(tx: Tx, run_id: str, now: float) -> None:
    """Cancel, as `_cancel_waiting` does, the steps and contexts still STARTED when the run is
    terminated: their invocation is fenced out and never records their outcome, so each says
    it was cut off and why (its body may have run to its end, or not at all)."""
    for op in tx.waiting_operations(run_id):
        if op.status is not S.STARTED or op.type not in (OperationType.STEP,
                                                          OperationType.CONTEXT):
            continue
        error = ErrorObject(TERMINATED, f"the run was terminated while {op.type.lower()} "
                            f"{op.name or op.id!r} was in flight (attempt {op.attempt}); its "
                            "outcome is unknown and was not recorded")
        tx.put_operation(run_id, op.evolve(status=S.CANCELLED, error=error, ended_at=now,
                                         due_at=None))
        tx.add_event(run_id, E.STEP_CANCELLED, now, op.id, op.name, {
            "reason": "terminated", "attempt": op.attempt, "error": error.to_dict()})


def rerun(tx: Tx, source_id: str, new_id: str, from_step: str, input: str | None,
          now: float, patch: Any = None) -> RunInfo:
    """A new run of the same workflow that reuses the source's recorded results up to the
    first operation named (or with the id) `from_step`, and executes from there on: under
    `input` if given, else under the source's input with the JSON merge `patch` (RFC 7386)
    applied if given, else under the source's input. The patch is applied to the input as read
    in this transaction, so the new run starts once, with exactly that input, or not at all."""
    source = _running(tx, source_id)
    ops = tx.operations(source_id, inputs=True)
    cut = next((i for i, op in enumerate(ops) if from_step in (op.name, op.id)), None)
    if cut is None:
        names = sorted({op.name for op in ops if op.type is OperationType.STEP and op.name})
        raise UsageError(f"run {source_id!r} has no operation named {from_step!r}; its steps "
                         f"are: {', '.join(names) or 'none'}")
    if input is None:
        input = source.input if patch is None else _patched(source, patch)
    run, created = start_run(tx, new_id, source.workflow, input, now)
    if not created:
        raise RunIdTaken(new_id, f"run id {new_id!r} is taken; choose another id for the rerun")
    for op in ops[:cut]:
        if op.status.is_final:  # a callback id stays with the run that issued it
            tx.put_operation(new_id, op.evolve(callback_id=None), op.input)
    tx.add_event(new_id, E.EXECUTION_RERUN, now,
                 details={"source_run_id": source_id, "from": from_step, "reused": cut})
    return run


def _patched(source: RunInfo, patch: Any) -> str:
    try:
        recorded = None if source.input is None else json.loads(source.input)
    except ValueError:
        raise UsageError(f"run {source.run_id!r} has an input that is not plain JSON (a custom "
                         "serializer's?), so it cannot be patched; give the whole new input "
                         "instead (--input / input_json)") from None
    return json.dumps(merge_patch(recorded, patch))


def unpark(tx: Tx, run_ids: Sequence[str], now: float) -> None:
    """Give parked runs another try, e.g. when a worker with new code starts."""
    for run_id in run_ids:
        tx.wake(run_id, now)


# -- operators: pause, resume, edit a run in place ------------------------------------------------

def pause(tx: Tx, run_id: str, by: str, now: float) -> RunInfo:
    """Stop invoking the run. An invocation in flight goes on (its checkpoints are accepted) and
    holds at its next new operation (`CheckpointResult.paused`); what falls due meanwhile
    (timers, retries, signals, callbacks, the execution timeout) stays recorded for `resume`,
    since claims read RUNNING runs only. Pausing a paused run changes nothing."""
    run = _running(tx, run_id)
    if run.status is ExecutionStatus.PAUSED:
        return run
    if not run.status.live:
        raise RunStateConflict(run_id, f"run {run_id!r} has ended ({run.status}); only a "
                               "running run can be paused")
    in_flight = _invoked_by(tx, run_id, now) is not None
    tx.update_run(run_id, status=ExecutionStatus.PAUSED.value, updated_at=now)
    tx.add_event(run_id, E.EXECUTION_PAUSED, now,
                 details={"by": by, "invocation_in_flight": in_flight})
    if not in_flight:
        tx.release_slot(run_id)  # else once that invocation ends (`_invocation_ended`)
    tx.notify()  # and workers admit the next run to the slot it freed
    return _running(tx, run_id)


def resume(tx: Tx, run_id: str, by: str, now: float) -> RunInfo:
    """Make a paused run claimable again, at once: the claim applies what fell due while it
    was paused. A parked run (RUNNING, held by an error) is given another try the same way.
    A paused run of a queue gave its slot back once no invocation of it was in flight: it is
    ENQUEUED again, and runs when its queue admits it, within the queue's limit."""
    run = _running(tx, run_id)
    if run.status is ExecutionStatus.PAUSED:
        tx.update_run(run_id, status=ExecutionStatus.RUNNING.value)
        tx.release_slot(run_id)  # no-op while an invocation holds the lease: it keeps the slot
    elif run.status is not ExecutionStatus.RUNNING or run.parked is None:
        raise RunStateConflict(run_id, f"run {run_id!r} is {run.status}, neither paused nor "
                               "parked: there is nothing to resume")
    tx.add_event(run_id, E.EXECUTION_RESUMED, now,
                 details={"by": by, "was": "parked" if run.parked else "paused"})
    tx.wake(run_id, now)
    return _running(tx, run_id)


def edit_operation(tx: Tx, run_id: str, ref: str, result: str | None,
                   error: ErrorObject | None, by: str, now: float) -> Operation:
    """Set a step of a paused or parked run to SUCCEEDED with `result` (JSON text), or FAILED
    with `error`, whatever it was (completed, in flight, waiting to retry): the next replay
    returns, or raises, that instead. `ref` is the step's operation id or its name. Only
    while no invocation holds the run, or it could checkpoint over the edit."""
    run = _running(tx, run_id)
    if not (run.status is ExecutionStatus.PAUSED
            or (run.status is ExecutionStatus.RUNNING and run.parked is not None)):
        raise RunStateConflict(run_id, f"run {run_id!r} is {run.status}: only a paused or "
                               f"parked run can be edited; pause it first (`durable pause "
                               f"{run_id}`)" if run.status.live else
                               f"run {run_id!r} has ended ({run.status}); an ended run cannot "
                               "be edited (rerun it from the step instead)")
    owner = _invoked_by(tx, run_id, now)
    if owner is not None:
        raise RunStateConflict(run_id, f"run {run_id!r} is pausing: its invocation in flight "
                               f"(worker {owner}) has not yet reached its next durable await; "
                               "edit it once that invocation has ended (its history shows "
                               "InvocationCompleted), in a moment")
    op = _step_named(tx, run_id, ref)
    if error is None:
        new = op.evolve(status=S.SUCCEEDED, result=result, error=None, due_at=None,
                      ended_at=now)
    else:
        new = op.evolve(status=S.FAILED, error=error, due_at=None, ended_at=now)
    tx.put_operation(run_id, new)
    tx.add_event(run_id, E.OPERATION_EDITED, now, op.id, op.name, details={
        "by": by, "before": _outcome(op), "after": _outcome(new)})
    tx.update_run(run_id, updated_at=now)
    tx.notify()
    return new


def _invoked_by(tx: Tx, run_id: str, now: float) -> str | None:
    """The worker whose live lease says an invocation of the run is in flight, if any."""
    owner, until = tx.lease_of(run_id)
    return owner if owner is not None and (until or 0) > now else None


def _step_named(tx: Tx, run_id: str, ref: str) -> Operation:
    """The step with operation id `ref`, else the one step named `ref`."""
    steps = [op for op in tx.operations(run_id) if op.type is OperationType.STEP]
    found = [op for op in steps if op.id == ref] or [op for op in steps if op.name == ref]
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(f"run {run_id!r} has {len(found)} steps named {ref!r}; name one by "
                         f"its operation id: {', '.join(op.id for op in found)}")
    names = sorted({op.name for op in steps if op.name})
    raise UsageError(f"run {run_id!r} has no step named {ref!r} or with that operation id; "
                     f"its steps are: {', '.join(names) or 'none'}")


def _outcome(op: Operation) -> dict[str, Any]:
    return {"status": op.status.value, "result": op.result,
            "error": op.error.to_dict() if op.error else None}
