"""The exceptions Temporal code catches, under Temporal's names.

Durable's own failures are translated at the boundary: a step that failed for good
(`durable.StepFailed`) reaches the workflow as `ActivityError` whose `cause` is an
`ApplicationError` carrying the original type name and message, as Temporal's does; a failed child
run (`durable.ChildFailed`) as `ChildWorkflowError`; a failed run, at the client, as
`WorkflowFailureError`.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import traceback
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from durable.errors import UsageError
from durable.model import ErrorObject
from durable.temporal._failure import Failure, failure_of

__all__ = [
    "ActivityError",
    "ApplicationError",
    "ApplicationErrorCategory",
    "CancelledError",
    "ChildWorkflowError",
    "FailureError",
    "TerminatedError",
    "TimeoutError",
    "UnsupportedFeature",
    "WorkflowAlreadyStartedError",
    "WorkflowFailureError",
    "WorkflowQueryFailedError",
]


class UnsupportedFeature(UsageError):
    """A part of Temporal's API that durable.temporal does not map; raised where the code is
    defined (decoration, class definition) or first called, and naming the feature."""

    def __init__(self, feature: str, instead: str = "") -> None:
        hint = f"; {instead}" if instead else ""
        super().__init__(f"durable.temporal does not support {feature}{hint} "
                         "(see 'Coming from Temporal' in examples/temporal_style/README.md)")
        self.feature = feature


class FailureError(Exception):
    """Base of the failures that fail a workflow (rather than its task) when raised in it."""

    def __init__(self, message: str = "", *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        if cause is not None:
            self.__cause__ = cause

    @property
    def cause(self) -> BaseException | None:
        return self.__cause__

    @property
    def failure(self) -> Failure:
        """This failure and its cause chain in Temporal's wire form (`_failure`)."""
        return failure_of(self)

    def __durable_error_data__(self) -> str:
        """This failure and its cause chain, kept with the recorded failure (`ErrorObject.data`)
        so that `cause_of` rebuilds them as Temporal delivers them: details, non_retryable,
        category, and `.cause` down to the root."""
        return json.dumps({CHAIN: _describe(self)}, default=_jsonable)


class ApplicationErrorCategory(IntEnum):
    """Temporal's classification of an application error; BENIGN ones are expected."""

    UNSPECIFIED = 0
    BENIGN = 1


class ApplicationError(FailureError):
    """An error the user raises on purpose. `type` names it for retry policies; `non_retryable`
    stops an activity's retries at once.

    With a `type`, the instance is of a subclass named after it: Durable records a failure by
    its class name, so the type survives the checkpoint and comes back as the cause's `type`.
    """

    def __new__(cls, message: str = "", *details: Any, type: str | None = None,
                **options: Any) -> ApplicationError:
        if type and cls is ApplicationError:
            cls = _TYPED.get(type) or _TYPED.setdefault(type, builtins.type(
                type, (ApplicationError,), {"__module__": __name__, "__qualname__": type}))
        return super().__new__(cls, message)

    def __init__(self, message: str = "", *details: Any, type: str | None = None,
                 non_retryable: bool = False, next_retry_delay: Any = None,
                 category: ApplicationErrorCategory = ApplicationErrorCategory.UNSPECIFIED
                 ) -> None:
        super().__init__(message)
        self.details: Sequence[Any] = details
        self.type = type
        self.non_retryable = non_retryable
        self.next_retry_delay = next_retry_delay
        self.category = category

    @classmethod
    def from_error(cls, error: ErrorObject) -> ApplicationError:
        """The Durable-recorded failure as Temporal would present it to the caller."""
        failure = cls(error.message,
                      type=None if error.type == "ApplicationError" else error.type)
        failure.stack_trace = error.traceback  # type: ignore[attr-defined]
        return failure


_TYPED: dict[str, type[ApplicationError]] = {}


class TimeoutError(FailureError):  # Temporal's name, in its namespace
    """An activity attempt ran past its start-to-close timeout."""


class CancelledError(FailureError):
    """The workflow or activity was cancelled (as the cause of an ActivityError)."""


class TerminatedError(FailureError):
    """The workflow was terminated (`handle.terminate()`, `durable terminate`): it ended at
    once, none of its code running again."""


TERMINATED = "Execution.Stopped"
"""The error type Durable ends a terminated run with."""


class ActivityError(FailureError):
    """An activity failed after its retries; `cause` says why."""

    def __init__(self, message: str, *, activity_type: str, activity_id: str,
                 retry_state: str = "MAXIMUM_ATTEMPTS_REACHED",
                 cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause)
        self.activity_type = activity_type
        self.activity_id = activity_id
        self.retry_state = retry_state


class ChildWorkflowError(FailureError):
    """A child workflow ended without success; `cause` says why."""

    def __init__(self, message: str, *, workflow_type: str, workflow_id: str,
                 cause: BaseException | None = None) -> None:
        super().__init__(message, cause=cause)
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id
        self.run_id = workflow_id


class WorkflowAlreadyStartedError(FailureError):
    """A run with this workflow id exists already and the id policies refuse a new one: it is
    running (`id_conflict_policy` FAIL, the default), or it ended and `id_reuse_policy` is
    REJECT_DUPLICATE (or ALLOW_DUPLICATE_FAILED_ONLY and it succeeded). Attributes as
    Temporal's: `workflow_id`, `workflow_type`, and `run_id` (the existing run's)."""

    def __init__(self, workflow_id: str, workflow_type: str, *,
                 run_id: str | None = None) -> None:
        super().__init__(f"Workflow execution already started: id {workflow_id!r} "
                         f"({workflow_type}); pick a new id")
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        self.run_id = run_id


class WorkflowFailureError(FailureError):
    """Raised by the client's `result()` when the workflow ended unsuccessfully."""

    def __init__(self, *, cause: BaseException, status: str = "FAILED") -> None:
        super().__init__("Workflow execution failed", cause=cause)
        self.status = status

    @property
    def failure(self) -> Failure:
        """The workflow's failure, as Temporal's history records it: its cause's."""
        return failure_of(self.cause or self)


class WorkflowQueryFailedError(Exception):
    """A query the workflow could not answer: no handler of that name (and no dynamic one), or
    the handler raised. As in Temporal, the message says which, and the run is unaffected."""


CHAIN = "temporal.failure"
"""The key of `ErrorObject.data` under which a Temporal failure's chain is kept."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, builtins.type):
        return dataclasses.asdict(value)
    return repr(value)


def _describe(e: BaseException) -> dict[str, Any]:
    d: dict[str, Any] = {"message": str(e)}
    # Each link keeps its own trace, as Temporal's failures do: where it was raised, or, for
    # one rebuilt from an earlier record (an activity's failure), the trace recorded then.
    trace = getattr(e, "stack_trace", None) or (
        "".join(traceback.format_tb(e.__traceback__)) if e.__traceback__ else "")
    if trace:
        d["stack_trace"] = trace
    if isinstance(e, ApplicationError):
        d.update(kind="ApplicationError", type=e.type, details=list(e.details),
                 non_retryable=e.non_retryable, category=int(e.category))
    elif isinstance(e, ActivityError):
        d.update(kind="ActivityError", activity_type=e.activity_type,
                 activity_id=e.activity_id, retry_state=e.retry_state)
    elif isinstance(e, ChildWorkflowError):
        d.update(kind="ChildWorkflowError", workflow_type=e.workflow_type,
                 workflow_id=e.workflow_id)
    elif isinstance(e, TimeoutError | CancelledError):
        d.update(kind=builtins.type(e).__name__)
    else:  # a plain exception in the chain: Temporal presents it as an ApplicationError
        d.update(kind="ApplicationError", type=builtins.type(e).__qualname__, details=[],
                 non_retryable=False, category=0)
    if e.__cause__ is not None:
        d["cause"] = _describe(e.__cause__)
    return d


def _rebuild(d: dict[str, Any]) -> BaseException:
    failure = _rebuild_link(d)
    failure.stack_trace = d.get("stack_trace", "")  # type: ignore[attr-defined]
    return failure


def _rebuild_link(d: dict[str, Any]) -> BaseException:
    cause = _rebuild(d["cause"]) if d.get("cause") else None
    kind, message = d.get("kind"), d.get("message", "")
    failure: FailureError
    if kind == "ActivityError":
        failure = ActivityError(message, activity_type=d["activity_type"],
                                activity_id=d["activity_id"], retry_state=d["retry_state"],
                                cause=cause)
    elif kind == "ChildWorkflowError":
        failure = ChildWorkflowError(message, workflow_type=d["workflow_type"],
                                     workflow_id=d["workflow_id"], cause=cause)
    elif kind == "TimeoutError":
        failure = TimeoutError(message, cause=cause)
    elif kind == "CancelledError":
        failure = CancelledError(message, cause=cause)
    else:
        failure = ApplicationError(message, *d.get("details", []), type=d.get("type"),
                                   non_retryable=bool(d.get("non_retryable")),
                                   category=ApplicationErrorCategory(d.get("category", 0)))
        if cause is not None:
            failure.__cause__ = cause
    return failure


def _chain(error: ErrorObject) -> dict[str, Any] | None:
    if not error.data:
        return None
    try:
        data = json.loads(error.data)
    except ValueError:
        return None
    found = data.get(CHAIN) if isinstance(data, dict) else None
    return found if isinstance(found, dict) else None


def cause_of(error: ErrorObject) -> BaseException:
    """The Temporal-shaped cause for a recorded failure: rebuilt with its details and cause
    chain when a Temporal failure recorded them, else from the type and message."""
    chain = _chain(error)
    if chain is not None:
        return _rebuild(chain)
    if error.type == "StepTimeout":
        return TimeoutError(error.message)
    if error.type == TERMINATED:
        return TerminatedError(error.message)
    if error.type in ("Cancelled", "CancelledError"):
        return CancelledError(error.message)
    return ApplicationError.from_error(error)
