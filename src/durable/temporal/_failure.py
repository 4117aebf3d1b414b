"""The `.failure` of Temporal's exceptions: the failure as `temporalio.api.failure.v1.Failure`
shapes it, built from the Temporal-shaped exception chain Durable keeps with a recorded failure.

Code coming from Temporal reads it to log or forward a failure in its wire form
(`err.failure.application_failure_info.type`, `.cause.message`, `HasField(...)`); Durable has no
protobuf wire, so these are plain dataclasses with the same field names, and an unset
sub-message is None (test it with `HasField`, as with protobuf, or `is None`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_FAILURE_INFOS = ("application_failure_info", "timeout_failure_info", "canceled_failure_info",
                  "activity_failure_info", "child_workflow_execution_failure_info")


@dataclass(frozen=True, slots=True)
class Payload:
    """One encoded value, as Temporal's default JSON converter writes it."""

    metadata: dict[str, bytes]
    data: bytes


@dataclass(frozen=True, slots=True)
class Payloads:
    payloads: list[Payload] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ApplicationFailureInfo:
    type: str = ""
    non_retryable: bool = False
    details: Payloads | None = None
    category: int = 0


@dataclass(frozen=True, slots=True)
class ActivityType:
    name: str


@dataclass(frozen=True, slots=True)
class ActivityFailureInfo:
    activity_type: ActivityType
    activity_id: str
    retry_state: str


@dataclass(frozen=True, slots=True)
class WorkflowType:
    name: str


@dataclass(frozen=True, slots=True)
class WorkflowExecution:
    workflow_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class ChildWorkflowExecutionFailureInfo:
    namespace: str
    workflow_execution: WorkflowExecution
    workflow_type: WorkflowType


@dataclass(frozen=True, slots=True)
class TimeoutFailureInfo:
    timeout_type: str = "START_TO_CLOSE"


@dataclass(frozen=True, slots=True)
class CanceledFailureInfo:
    details: Payloads | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """`temporalio.api.failure.v1.Failure`'s fields that carry meaning here. `source` is
    "PythonSDK" as Temporal's Python SDK writes it, so code that checks it keeps working."""

    message: str = ""
    source: str = "PythonSDK"
    stack_trace: str = ""
    cause: Failure | None = None
    application_failure_info: ApplicationFailureInfo | None = None
    timeout_failure_info: TimeoutFailureInfo | None = None
    canceled_failure_info: CanceledFailureInfo | None = None
    activity_failure_info: ActivityFailureInfo | None = None
    child_workflow_execution_failure_info: ChildWorkflowExecutionFailureInfo | None = None

    def HasField(self, name: str) -> bool:  # protobuf's name
        if name not in {"cause", *_FAILURE_INFOS}:
            raise ValueError(f'Protocol message Failure has no "{name}" field.')
        return getattr(self, name) is not None

    def WhichOneof(self, group: str) -> str | None:  # protobuf's name
        if group != "failure_info":
            raise ValueError(f'Protocol message Failure has no "{group}" field.')
        return next((name for name in _FAILURE_INFOS if getattr(self, name) is not None), None)


def payloads(values: Any) -> Payloads | None:
    """Details as Temporal's JSON converter encodes them; None when there are none."""
    if not values:
        return None
    return Payloads([Payload({"encoding": b"json/plain"},
                             json.dumps(v, separators=(",", ":"), default=repr).encode())
                     for v in values])


def failure_of(error: BaseException) -> Failure:
    """The Failure Temporal would carry for `error` and its `__cause__` chain."""
    from durable.temporal import exceptions as ex  # it imports this module

    cause = failure_of(error.__cause__) if error.__cause__ is not None else None
    common: dict[str, Any] = {"message": getattr(error, "message", None) or str(error),
                              "stack_trace": getattr(error, "stack_trace", None) or "",
                              "cause": cause}
    if isinstance(error, ex.ActivityError):
        return Failure(**common, activity_failure_info=ActivityFailureInfo(
            ActivityType(error.activity_type), error.activity_id, error.retry_state))
    if isinstance(error, ex.ChildWorkflowError):
        return Failure(**common, child_workflow_execution_failure_info=(
            ChildWorkflowExecutionFailureInfo("default", WorkflowExecution(
                error.workflow_id, error.run_id), WorkflowType(error.workflow_type))))
    if isinstance(error, ex.TimeoutError):
        return Failure(**common, timeout_failure_info=TimeoutFailureInfo())
    if isinstance(error, ex.CancelledError):
        return Failure(**common, canceled_failure_info=CanceledFailureInfo())
    if isinstance(error, ex.ApplicationError):
        info = ApplicationFailureInfo(error.type or "", error.non_retryable,
                                      payloads(error.details), int(error.category))
    else:  # Temporal presents any other exception as an application error named by its class
        info = ApplicationFailureInfo(type(error).__qualname__)
    return Failure(**common, application_failure_info=info)
