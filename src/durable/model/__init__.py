"""The operation model: the only vocabulary the SDK and the engine share.

A run is a tree of operations. The SDK, replaying a workflow, sends `OperationUpdate`s in
checkpoints; the engine applies them and answers with the `Operation`s as they now stand. Names and
values follow AWS Lambda durable functions' service contract so both can be mapped one to one.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import operator
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from durable.model.streams import StreamChunk


class OperationType(StrEnum):
    EXECUTION = "EXECUTION"
    STEP = "STEP"
    WAIT = "WAIT"
    CALLBACK = "CALLBACK"
    CONTEXT = "CONTEXT"
    CHAINED_INVOKE = "CHAINED_INVOKE"


class OperationAction(StrEnum):
    START = "START"
    SUCCEED = "SUCCEED"
    FAIL = "FAIL"
    RETRY = "RETRY"
    CANCEL = "CANCEL"
    HEARTBEAT = "HEARTBEAT"
    """STEP, while an attempt runs: the body reports progress (`payload`, its details), kept as
    the STARTED step's `result` for a later attempt to resume from. Durable's own."""


class OperationStatus(StrEnum):
    STARTED = "STARTED"
    PENDING = "PENDING"
    READY = "READY"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset(
    {
        OperationStatus.SUCCEEDED,
        OperationStatus.FAILED,
        OperationStatus.CANCELLED,
        OperationStatus.TIMED_OUT,
        OperationStatus.STOPPED,
    }
)


class ExecutionStatus(StrEnum):
    ENQUEUED = "ENQUEUED"
    """Waiting for a slot of its queue: not invoked yet. Stored as RUNNING (the engine's
    view: the run has work), shown as ENQUEUED until its queue admits it; AWS's contract has
    no such status, so its routes show RUNNING."""
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    STOPPED = "STOPPED"
    PAUSED = "PAUSED"  # not invoked until resumed; on AWS's wire (no such status): RUNNING

    @property
    def ended(self) -> bool:
        """Whether the run is over (one of ENDED): an ENQUEUED or a PAUSED run is as live as a
        RUNNING one."""
        return self in ENDED

    @property
    def live(self) -> bool:
        """Not ended: it may still run (a PAUSED run once resumed)."""
        return not self.ended

    @property
    def aws(self) -> str:
        """The status on AWS's wire, which knows neither ENQUEUED nor PAUSED: RUNNING."""
        return self.value if self.ended else ExecutionStatus.RUNNING.value


ENDED = frozenset({ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT,
                   ExecutionStatus.STOPPED})
"""The statuses a run never leaves: only such a run may be deleted or purged. Listed, not
"all but RUNNING", so that a status added later (a paused or queued run) counts as live."""


class ChildPolicy(StrEnum):
    """What terminating a run does to the child runs it started that are still running."""

    TERMINATE = "terminate"
    """They are terminated too, and theirs, without running their handlers (the default)."""
    CANCEL = "cancel"
    """They are cancelled: `Cancelled` meets each at its next await, its handlers run."""
    ABANDON = "abandon"
    """They run on by themselves, no longer awaited by anyone."""


class SubType(StrEnum):
    """Finer kinds within an operation type; the engine treats some of them specially."""

    STEP = "Step"
    WAIT_FOR_CONDITION = "WaitForCondition"  # a STEP whose attempts are a condition's polls
    NOW = "Now"
    RANDOM = "Random"
    UUID = "Uuid"
    SET_EVENT = "SetEvent"  # the engine also publishes the payload under the step's name
    SET_ATTRIBUTES = "SetAttributes"  # the engine also indexes the attributes it records
    STREAM_WRITE = "StreamWrite"  # the engine also appends the payload to the named stream
    STREAM_CLOSE = "StreamClose"  # the engine also closes the named stream
    KV = "Kv"  # a key-value command (model/kv.py): the engine applies it, its outcome the result
    SLEEP = "Sleep"
    CALLBACK = "Callback"
    SIGNAL = "Signal"  # a CALLBACK the engine resolves from the run's buffered signals
    PATCH = "Patch"  # a marker: this run took the new code path of ctx.patched(name)
    PARALLEL = "Parallel"
    PARALLEL_BRANCH = "ParallelBranch"
    MAP = "Map"
    MAP_ITERATION = "MapIteration"
    INVOKE = "Invoke"  # a CHAINED_INVOKE the parent waits for
    START_CHILD = "StartChild"  # a CHAINED_INVOKE that completes as soon as the child exists
    SUBSCRIBE = "Subscribe"  # a STEP: the engine buffers the topic's matching events from here
    NEXT_EVENT = "NextEvent"  # a CALLBACK the engine resolves from a subscription's events
    SIGNAL_RUN = "SignalRun"  # a STEP: the engine signals another run as it records it
    RESPOND = "Respond"  # a STEP whose result answers the webhook request that started the run
    CANCEL_RUN = "CancelRun"  # a STEP: the engine cancels another run as it records it


class EventType(StrEnum):
    EXECUTION_STARTED = "ExecutionStarted"
    EXECUTION_SUCCEEDED = "ExecutionSucceeded"
    EXECUTION_FAILED = "ExecutionFailed"
    EXECUTION_STOPPED = "ExecutionStopped"
    EXECUTION_CANCEL_REQUESTED = "ExecutionCancelRequested"
    EXECUTION_PARKED = "ExecutionParked"
    EXECUTION_CONTINUED_AS_NEW = "ExecutionContinuedAsNew"
    EXECUTION_RERUN = "ExecutionRerun"
    EXECUTION_TIMED_OUT = "ExecutionTimedOut"
    EXECUTION_PAUSED = "ExecutionPaused"
    EXECUTION_RESUMED = "ExecutionResumed"
    OPERATION_EDITED = "OperationEdited"
    WORKER_LOST = "WorkerLost"
    INVOCATION_COMPLETED = "InvocationCompleted"
    STEP_STARTED = "StepStarted"
    STEP_SUCCEEDED = "StepSucceeded"
    STEP_FAILED = "StepFailed"
    STEP_READY = "StepReady"
    WAIT_STARTED = "WaitStarted"
    WAIT_SUCCEEDED = "WaitSucceeded"
    WAIT_CANCELLED = "WaitCancelled"
    CALLBACK_STARTED = "CallbackStarted"
    CALLBACK_SUCCEEDED = "CallbackSucceeded"
    CALLBACK_FAILED = "CallbackFailed"
    CALLBACK_TIMED_OUT = "CallbackTimedOut"
    CALLBACK_CANCELLED = "CallbackCancelled"
    CALLBACK_HEARTBEAT = "CallbackHeartbeat"
    SIGNAL_RECEIVED = "SignalReceived"
    STEP_CANCELLED = "StepCancelled"
    CHAINED_INVOKE_STARTED = "ChainedInvokeStarted"
    CHAINED_INVOKE_SUCCEEDED = "ChainedInvokeSucceeded"
    CHAINED_INVOKE_FAILED = "ChainedInvokeFailed"
    CHAINED_INVOKE_CANCELLED = "ChainedInvokeCancelled"
    CONTEXT_STARTED = "ContextStarted"
    CONTEXT_SUCCEEDED = "ContextSucceeded"
    CONTEXT_FAILED = "ContextFailed"


ERROR_DATA_HOOK = "__durable_error_data__"
"""A method an exception may define to have a string stored with it (`ErrorObject.data`)."""


@dataclass(frozen=True, slots=True)
class ErrorObject:
    """A failure as it is stored: enough to show a person and to re-raise by type name."""

    type: str
    message: str
    traceback: str | None = None
    data: str | None = None

    @classmethod
    def from_exception(cls, e: BaseException) -> ErrorObject:
        """`data`: what the exception's `ERROR_DATA_HOOK` method says of it, if it has one (a
        string kept with the failure, for the code that reads it back to rebuild it)."""
        tb = "".join(traceback.format_exception(e))
        hook = getattr(e, ERROR_DATA_HOOK, None)
        return cls(type(e).__qualname__, str(e), tb, hook() if callable(hook) else None)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback,
                "data": self.data}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorObject:
        return cls(d["type"], d["message"], d.get("traceback"), d.get("data"))


def code_failure(e: BaseException) -> bool:
    """Whether `e`, escaping user code (a step body, a workflow), is that code failing, to be
    recorded like any exception: so are SystemExit, KeyboardInterrupt and a CancelledError the
    code raised itself, none of which may stop the worker that runs it. Not so the
    cancellation of the task running the code (a worker shutting down, a timeout, a batch
    that no longer needs the branch): the task has been asked to stop, and must."""
    if isinstance(e, asyncio.CancelledError):
        task = asyncio.current_task()
        return task is not None and task.cancelling() == 0
    return isinstance(e, Exception | SystemExit | KeyboardInterrupt)


LOST = "Worker.Lost"
"""The error type of a step attempt whose invocation ended without its outcome (the worker
running it died, or lost its lease): it is counted as a failed attempt, and the next one runs."""

ABANDONED = "Abandoned"
"""The error type of a branch (CONTEXT) that ctx.map / ctx.gather left unfinished because its
completion policy had decided the batch. AWS's contract ends a CONTEXT only with SUCCEED or
FAIL, so such a branch is recorded FAILED; this type says it was abandoned, not that it failed."""


@dataclass(slots=True)
class Operation:
    """One node of a run's operation tree, as the engine stores it."""

    id: str
    type: OperationType
    status: OperationStatus
    name: str | None = None
    parent_id: str | None = None
    sub_type: str | None = None
    attempt: int = 0
    result: str | None = None  # serialized payload
    error: ErrorObject | None = None
    due_at: float | None = None  # wait end, next attempt, or callback timeout
    callback_id: str | None = None
    child_run_id: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    input: str | None = None
    """STEP, CHAINED_INVOKE: what the step body or the child run received, encoded by the run's
    serializer as `result` is (see `OperationUpdate.input`). Only reads for people load it
    (`operations(..., inputs=True)`): a replay never needs it, so claims and checkpoints leave
    it None rather than carry every input of the run."""

    def evolve(self, **changes: Any) -> Operation:
        """A copy with `changes`, as `dataclasses.replace` makes it at about two thirds of
        its cost (one C call reads every field): the engine copies operations on every step
        it records."""
        values = dict(zip(_OPERATION_FIELDS, _operation_values(self), strict=True))
        values.update(changes)
        return Operation(**values)


_OPERATION_FIELDS = tuple(f.name for f in fields(Operation))
_operation_values = operator.attrgetter(*_OPERATION_FIELDS)


@dataclass(frozen=True, slots=True)
class ChildStart:
    run_id: str
    workflow: str
    input: str | None
    tenant_id: str | None = None  # AWS's ChainedInvokeOptions.TenantId: recorded and shown only


@dataclass(frozen=True, slots=True)
class OperationUpdate:
    """One change the SDK asks for. Only the fields that fit `type` and `action` are read."""

    id: str
    type: OperationType
    action: OperationAction
    name: str | None = None
    parent_id: str | None = None
    sub_type: str | None = None
    payload: str | None = None
    error: ErrorObject | None = None
    delay: float | None = None  # WAIT: seconds to sleep; STEP RETRY: seconds until next attempt
    timeout: float | None = None  # CALLBACK: seconds until it times out
    heartbeat_timeout: float | None = None  # CALLBACK: seconds allowed between heartbeats
    replay_children: bool = False  # CONTEXT SUCCEED: result too large, rebuilt by replaying
    child: ChildStart | None = None  # CHAINED_INVOKE START: the run to create
    started_at: float | None = None  # STEP: when the attempt began (for the timeline)
    input: str | None = None
    """STEP, CHAINED_INVOKE: the operation's input, for people to see. Sent with the updates
    that may create the operation's row (the START, or an outcome whose START was never sent)
    and kept from the first that carries it, so recording costs no write of its own and a
    replay or a re-run attempt changes nothing. None: not recorded (the workflow or step opted
    out, or the serializer could not encode it). Durable's own: AWS's contract has no slot."""


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """The engine's answer to a checkpoint: the operations it touched, as they now stand."""

    operations: list[Operation]
    cancel_requested: bool
    paused: bool = False
    """The run was paused: the invocation goes on with what it is running, and holds (ends
    PENDING) where it would begin a new operation."""


LOG_LINES_KEPT = 1000
"""How many `ctx.logger` lines a run keeps: the newest; older ones are dropped."""
LOG_LINE_CHARS = 1000
"""How much of one line is kept: with LOG_LINES_KEPT, about 1 MB per run at most."""


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line a workflow logged through `ctx.logger`, as it is kept with its run.

    `key` names where in the code it was logged (scope, position, and its rank there; within a
    step body, the step and the attempt), the same however often the run is replayed: the
    store keeps one line per key, so a line logged again by a replay is not kept twice."""

    key: str
    at: float
    level: str
    message: str
    operation_id: str | None = None
    attempt: int | None = None


@dataclass(slots=True)
class Invocation:
    """What the engine hands to a workflow for one invocation."""

    run_id: str
    workflow: str
    input: str | None
    operations: dict[str, Operation]
    cancel_requested: bool = False
    token: int = 0  # the fencing token of this invocation: what an HTTP function checkpoints with
    leased: Callable[[], bool] | None = None
    """Whether the invoking process still holds the run's lease as far as it can tell without
    asking the store (None: it cannot tell). The SDK asks before it runs a step body: a process
    paused past its lease, whose run another took over meanwhile, must not begin a body the new
    holder may have completed; its stale checkpoint would be refused, but only afterwards."""
    logs: deque[LogLine] = field(default_factory=deque)
    """Lines `ctx.logger` logged that are not yet kept: whoever checkpoints for the invocation
    takes them (`take_logs`) and writes them with the checkpoint, or with the invocation's end."""

    chunks: deque[StreamChunk] = field(default_factory=deque)
    """What step bodies wrote to streams (`ctx.stream(name).write`) and the engine has not
    written yet: taken (`take_chunks`) as they come by whoever runs the invocation, and before
    each checkpoint, so a step's chunks are kept before its outcome is."""
    chunk_written: Callable[[], None] | None = None
    """Called (from any thread) after a chunk is added: the engine writes it out soon (a
    function host sends it to the server that invoked it). None: whatever runs the invocation
    cannot keep chunks written inside a step (a function checkpointing to AWS itself), and the
    SDK says so when a body tries."""

    def take_logs(self) -> list[LogLine]:
        """The lines not yet taken, oldest first; safe against a step body in a thread that
        logs meanwhile (each popleft is atomic)."""
        taken = []
        while self.logs:
            taken.append(self.logs.popleft())
        return taken

    def take_chunks(self, limit: int, chars: int | None = None) -> list[StreamChunk]:
        """Up to `limit` of the chunks not yet taken, oldest first (safe against a body in a
        thread, as `take_logs`); with `chars`, no more than that many characters of values
        unless the first alone has more, so that a request carrying them stays in bounds."""
        taken: list[StreamChunk] = []
        size = 0
        while self.chunks and len(taken) < limit:
            size += len(self.chunks[0].value or "")
            if taken and chars is not None and size > chars:
                break
            taken.append(self.chunks.popleft())
        return taken


class InvocationStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    PENDING = "PENDING"


@dataclass(frozen=True, slots=True)
class InvocationOutput:
    """How an invocation ended. PENDING with `parked` set means non-determinism was detected."""

    status: InvocationStatus
    result: str | None = None
    error: ErrorObject | None = None
    parked: ErrorObject | None = None
    stopped: bool = False  # a FAILED that is the workflow letting `Cancelled` escape
    continue_as_new: str | None = None  # SUCCEEDED into a fresh history with this input


@dataclass(frozen=True, slots=True)
class InvocationRetry:
    """How invocations that fail to run (the function unreachable, timed out, throttled, or
    crashed without answering) are retried: never by failing the run, as none of those is the
    workflow's doing. The delay doubles from `backoff` up to `cap` seconds; with a `deadline`,
    a run whose invocations have failed for that long is parked (RUNNING, the error shown)
    until the function is registered again or a server starts."""

    backoff: float = 0.5
    cap: float = 10.0
    deadline: float | None = None

    def delay(self, failures: int) -> float:
        """The wait before the next attempt, after `failures` attempts in a row failed."""
        return min(self.cap, self.backoff * 2.0 ** min(failures - 1, 60))


RETRY_INVOCATIONS = InvocationRetry()
"""The default: from 0.5 s up to 10 s between attempts, without limit."""


Checkpointer = Callable[[list[OperationUpdate]], Awaitable[CheckpointResult]]
"""Sends one checkpoint for the invocation in flight; the token is bound in by the engine."""

WorkflowHandler = Callable[[Invocation, Checkpointer], Awaitable[InvocationOutput]]
"""What the engine invokes: replay a run's operations, run on, report how the invocation ended."""


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    id: int
    run_id: str
    type: str
    timestamp: float
    operation_id: str | None = None
    name: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    workflow: str
    status: ExecutionStatus
    input: str | None
    result: str | None
    error: ErrorObject | None
    created_at: float
    updated_at: float
    ended_at: float | None
    compute_seconds: float
    parked: ErrorObject | None
    cancel_requested: bool
    ready_at: float | None
    parent_run_id: str | None = None
    queue: str | None = None  # the run's queue: waited on while ENQUEUED, then the one admitting it
    admitted_at: float | None = None  # when it took its queue slot, i.e. was first invoked
    timeout_at: float | None = None  # the execution timeout: the run ends TIMED_OUT then
    invocation_failures: int = 0  # invocations in a row that failed to run; reset by one that did
    parent_op_id: str | None = None  # the parent's CHAINED_INVOKE that started this run
    # While invocations fail to run (the function unreachable, throttled, crashed): the last
    # error and when the failures in a row began; both cleared by an invocation that ran.
    invocation_error: ErrorObject | None = None
    invocation_failing_since: float | None = None
    priority: int = 0  # higher is admitted first by its queue; ties in start order
    dedup_id: str | None = None  # no other live run of its queue has it
    position: int | None = None  # while ENQUEUED: 1 is the next its queue admits

    @property
    def result_value(self) -> Any:
        """`result` decoded from its JSON (None if there is none): plain JSON values, since
        a run holds no types; `RunHandle.result()` decodes by the workflow's annotation."""
        return None if self.result is None else json.loads(self.result)


@dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the store remembers of a schedule: the only state that makes ticks fire once.

    `since` is when a worker first served this cron expression (or it was resumed): ticks
    before it never fire. `last_tick` (epoch seconds) is the latest tick fired, set in the same
    transaction as the run `last_run_id` it started. A `paused` schedule fires no tick.
    `tick_input`: its workflow takes the tick as input (as the worker serving it last said).
    `source` is "code" (declared with `@workflow(schedule=...)`) or "api" (created through
    the API or CLI, firing with the `missed` policy stored here).
    """

    workflow: str
    cron: str
    timezone: str
    since: float
    last_tick: float | None
    last_run_id: str | None
    paused: bool = False
    tick_input: bool = False
    source: str = "code"
    missed: str = "skip"


def operation_id(parent_id: str | None, counter: int) -> str:
    """Deterministic id of the `counter`-th operation in a scope: same code, same id, always."""
    key = f"{parent_id}-{counter}" if parent_id else str(counter)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
