"""Every error Durable raises on purpose. Each message says what failed, where, and what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from durable.model import ErrorObject


class DurableError(Exception):
    """Base of Durable's own errors."""


class UsageError(DurableError):
    """The caller asked for something that cannot be done as asked (bad target, bad JSON, ...)."""


class KvTypeError(UsageError):
    """A key-value command met a value it cannot work on: `add` to a key whose value is not
    a number."""


class KeyNotFound(UsageError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no value under key {key!r}; `durable kv ls` lists the keys")
        self.key = key


class MissingExtra(UsageError):
    """A feature whose dependencies are an extra of the package, not installed here: the core
    install stays small enough for a function's deployment package."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what} needs the {extra} extra: "
                         f"pip install 'durable-serverless[{extra}]'")
        self.extra = extra


EXTRA_MODULES = {
    "server": frozenset({"fastapi", "starlette", "uvicorn", "jinja2"}),
    "postgres": frozenset({"psycopg", "psycopg_pool"}),
    "aws": frozenset({"boto3", "botocore"}),
}
"""The top-level modules each extra brings that Durable imports."""


@contextlib.contextmanager
def requires_extra(extra: str, what: str) -> Iterator[None]:
    """Turn the import of a module of `extra` that is not installed into `MissingExtra`; any
    other failing import (a bug, a module of the user's) goes through untouched."""
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").partition(".")[0] not in EXTRA_MODULES[extra]:
            raise
        raise MissingExtra(what, extra) from None


class StoreUnusable(UsageError):
    """The database cannot be used as it is: its file is damaged, or a newer Durable has
    migrated its schema. Durable refuses rather than write into it or misread it; the message
    names the database and what to do (`durable doctor` checks it)."""


class StoreUnavailable(UsageError):
    """The database could not be opened for now: not reachable, the connection dropped, the
    file locked by another process or its disk full. It may pass by itself: a command reports
    it like bad input, a worker waits for it (`where` names the database, without a password).
    """

    def __init__(self, message: str, where: str) -> None:
        super().__init__(message)
        self.where = where


class RunNotFound(UsageError):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}; `durable ls` lists the runs in this database")
        self.run_id = run_id


class RunNotEnded(UsageError):
    """A run that has not ended was asked for what only an ended run allows (to be deleted)."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class OperationNotFound(UsageError):
    def __init__(self, run_id: str, op_id: str, matches: int = 0) -> None:
        why = (f"{matches} operations' ids start with {op_id!r}: give more of the id"
               if matches > 1 else f"run {run_id!r} has no operation {op_id!r}")
        super().__init__(f"{why}; `durable show {run_id}` lists its operations with their ids")
        self.run_id, self.op_id = run_id, op_id


class RunIdTaken(UsageError):
    """A run id asked for a new run is already the id of another run: of another workflow, or
    of any run for a rerun (starting the same workflow again under its id returns that run)."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunStateConflict(UsageError):
    """The run exists but is in no state for what was asked (resume a run that is not paused,
    edit one that is running): the message says what state it is in and what to do first."""

    def __init__(self, run_id: str, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class CallbackNotFound(UsageError):
    def __init__(self, callback_id: str) -> None:
        super().__init__(
            f"no pending callback with id {callback_id!r}: it was never issued, "
            "or it has already been resolved or timed out"
        )
        self.callback_id = callback_id


class ScheduleNotFound(UsageError):
    def __init__(self, workflow: str) -> None:
        super().__init__(f"no schedule for workflow {workflow!r}; `durable schedules` lists "
                         "the schedules in this database (a schedule declared in code is "
                         "there once a worker serving it has started)")
        self.workflow = workflow


class ScheduleExists(UsageError):
    """A schedule created through the API for a workflow that has one already."""


class SerializationError(DurableError):
    """A value could not be encoded or decoded by the serializer."""


class StaleToken(DurableError):
    """A checkpoint came with a token that is no longer current: another invocation owns the run."""


class InvocationError(DurableError):
    """A function could not be invoked, or crashed or timed out before it answered (a network
    error, a 429 or 5xx, an exception escaping an AWS handler): never the workflow's failure.
    Nothing it checkpointed is lost: the engine invokes it again after a backoff, without limit
    unless the function has a retry deadline (then the run is parked, not failed)."""

    def __init__(self, error: ErrorObject) -> None:
        super().__init__(f"{error.type}: {error.message}")
        self.error = error


class StepFailed(DurableError):
    """A step failed after its last attempt. Carries the original error's type, message, traceback.

    Catch it in the workflow to compensate (the saga pattern).
    """

    def __init__(self, step: str, error: ErrorObject) -> None:
        super().__init__(f"step {step!r} failed: {error.type}: {error.message}")
        self.step = step
        self.error_type = error.type
        self.error_message = error.message
        self.traceback = error.traceback
        self.error = error


class ChildFailed(DurableError):
    """A child workflow run ended FAILED or STOPPED; carries its error."""

    def __init__(self, workflow: str, run_id: str | None, error: ErrorObject) -> None:
        """`run_id` None: the child run could not be started (its id was taken)."""
        run = f"run {run_id!r}" if run_id is not None else "not started"
        super().__init__(f"child workflow {workflow!r} ({run}) failed: "
                         f"{error.type}: {error.message}")
        self.run_id = run_id
        self.error = error


class ConditionNotMet(DurableError):
    """A wait_for_condition's strategy ran out of polls before the condition was met: the
    operation fails with it (the workflow sees StepFailed) rather than return a state that
    does not meet it."""


class StepInterrupted(DurableError):
    """An at-most-once step was found started but never finished: its process died in the body.

    Raised into the step's retry policy instead of running the body a second time unasked.
    """


class StepTimeout(DurableError):
    """A step attempt ran longer than its `timeout`."""


class CallbackFailed(DurableError):
    """A callback was resolved with a failure by whoever held its id."""

    def __init__(self, error: ErrorObject) -> None:
        super().__init__(f"callback failed: {error.type}: {error.message}")
        self.error = error


class SignalFailed(DurableError):
    """`ctx.signal_run` could not deliver: the run named does not exist, or has ended."""

    def __init__(self, run_id: str, name: str, error: ErrorObject) -> None:
        super().__init__(f"signal {name!r} to run {run_id!r} was not delivered: {error.message}")
        self.run_id, self.name, self.error = run_id, name, error


class CancelRunFailed(DurableError):
    """`ctx.cancel_run` could not ask: the run named does not exist, or has ended."""

    def __init__(self, run_id: str, error: ErrorObject) -> None:
        super().__init__(f"cancelling run {run_id!r} failed: {error.message}")
        self.run_id, self.error = run_id, error


class EventNotFound(UsageError):
    def __init__(self, seq: int) -> None:
        super().__init__(f"no event with number {seq}; `durable events ls` lists the events")
        self.seq = seq


class WaitTimeout(DurableError):
    """A callback or signal was not delivered before its timeout."""


class CallbackHeartbeatTimeout(WaitTimeout):
    """A callback's holder sent no heartbeat within its `heartbeat_timeout`: whoever does the
    work is presumed gone, long before the callback's own timeout would say so."""


class WorkflowFailed(DurableError):
    """Raised by `result()` when the run ended FAILED or STOPPED."""

    def __init__(self, run_id: str, status: str, error: ErrorObject | None) -> None:
        detail = f"{error.type}: {error.message}" if error else status
        super().__init__(f"run {run_id!r} ended {status}: {detail}")
        self.run_id = run_id
        self.status = status
        self.error = error


class Cancelled(BaseException):
    """Raised inside a workflow at its next durable await after the run was cancelled.

    A BaseException, like asyncio.CancelledError, so a broad `except Exception` does not swallow it;
    `try/finally` and explicit `except Cancelled` still run, durable steps included.
    """


class NonDeterminismError(BaseException):
    """The workflow's code no longer produces the operations its history recorded.

    The run is parked, not failed: it stays RUNNING with this error visible until a deploy that
    matches its history resumes it.
    """


class BulkJobNotFound(UsageError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no bulk job with id {job_id!r}; `durable bulk jobs` lists them")
        self.job_id = job_id
