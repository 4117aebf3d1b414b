"""AWS Lambda durable functions' wire shapes, and how they map onto Durable's operation model.

Both sides of the contract use this module: `durable server` (server/aws.py, invoke/push.py)
turns its operations into the JSON an AWS-style function expects and the updates such a function
sends into `OperationUpdate`s; a Durable workflow running as a function (serve.py) does the
reverse. Shapes are those of botocore's `lambda` service model (2015-03-31) and of
`aws_durable_execution_sdk_python.lambda_service` (`Operation.to_dict`, `OperationUpdate.to_dict`,
`ErrorObject.to_dict`, `DurableExecutionInvocationOutput.to_dict`).

Timestamps travel two ways: epoch seconds in API responses (rest-json's default, what botocore
parses), epoch milliseconds in the invocation envelope (the SDK reads it with
`Operation.from_json_dict`). Every function here that writes or reads one says which.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from durable.errors import UsageError
from durable.model import (
    LOST,
    ChildStart,
    ErrorObject,
    EventType,
    ExecutionStatus,
    HistoryEvent,
    InvocationOutput,
    InvocationStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    RunInfo,
)
from durable.model.streams import StreamChunk, check_stream_name

Wire = dict[str, Any]

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ACCOUNT = "000000000000"
"""ARNs need a region and a 12-digit account; a self-hosted server has neither, so it uses these."""

# -- limits (Lambda's own, where the service model or AWS's SDK states them) ----------------------
MAX_OPERATION_PAYLOAD = 256 * 1024
"""Bytes of one operation's payload: the SDK's CHECKPOINT_SIZE_LIMIT_BYTES (constants.py); a
child context with a larger result checkpoints a summary and sets ReplayChildren instead."""
MAX_ERROR_BYTES = 32 * 1024
"""Bytes of one serialized ErrorObject (the testing emulator's MAX_ERROR_PAYLOAD_SIZE_BYTES)."""
MAX_CHECKPOINT_BYTES = 6 * 1024 * 1024
"""Bytes of one checkpoint request: Lambda's request payload limit."""
MAX_UPDATES = 1000
"""Updates in one checkpoint (the SDK sends at most 250: CheckpointBatcherConfig)."""
MAX_INVOKE_PAYLOAD = 6 * 1024 * 1024
"""Bytes of an Invoke payload (synchronous invocation; Lambda's limit)."""
MAX_CALLBACK_RESULT = 1024 * 1024
"""Bytes of a callback result (BinaryOperationPayload max in the service model)."""

_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NAME = re.compile(r"[\x20-\x7E]{1,256}")
_SUB_TYPE = re.compile(r"[a-zA-Z0-9_-]{1,32}")
_EXECUTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_FUNCTION = re.compile(
    r"(?:arn:[a-zA-Z0-9-]*:lambda:(?P<region>[a-z0-9-]+):\d{12}:function:)?"
    r"(?P<name>[a-zA-Z0-9_.-]{1,64})(?::(?P<qualifier>\$LATEST(?:\.PUBLISHED)?|[a-zA-Z0-9_-]+))?")


class ContractError(UsageError):
    """A request that breaks the contract; `code` is the AWS exception name it answers with."""

    def __init__(self, message: str, code: str = "InvalidParameterValueException",
                 status: int = 400) -> None:
        super().__init__(message)
        self.code, self.status = code, status


class NotFound(ContractError):
    def __init__(self, message: str) -> None:
        super().__init__(message, "ResourceNotFoundException", 404)


INVALID_TOKEN = "Invalid checkpoint token"
"""The message AWS's SDK recognizes (exceptions.py, INVALID_CHECKPOINT_TOKEN_PREFIX) as a stale
token: it retries the invocation instead of failing the execution."""


# -- names and ARNs -------------------------------------------------------------------------------

def function_name(name_or_arn: str) -> str:
    """The bare function name of a name, `name:qualifier` or function ARN."""
    return function_parts(name_or_arn)[0]


def function_parts(name_or_arn: str) -> tuple[str, str | None, str | None]:
    """(name, qualifier, region) of a name, `name:qualifier` or function ARN."""
    match = _FUNCTION.fullmatch(name_or_arn)
    if match is None:
        raise ContractError(f"{name_or_arn!r} is not a function name or function ARN: use "
                            "letters, digits, '-', '_' or '.', at most 64 of them")
    return match["name"], match["qualifier"], match["region"]


def function_arn(function: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function}:$LATEST"


def execution_arn(function: str, name: str, run_id: str) -> str:
    """`arn:aws:lambda:REGION:ACCOUNT:function:FN:$LATEST/durable-execution/NAME/ID`: the last
    segment is the EXECUTION operation's id (the SDK reads it so: state.py,
    get_execution_operation), which Durable makes the run id."""
    return f"{function_arn(function)}/durable-execution/{name}/{run_id}"


def run_id_of(arn: str) -> str:
    """The run an execution ARN names: its last segment, as AWS's SDK reads it (other
    backends, such as AWS's testing emulator, shape the rest of the ARN their own way)."""
    _, sep, run_id = arn.rpartition("/")
    if not sep or not run_id:
        raise ContractError(f"{arn!r} is not a durable execution ARN (expected "
                            "arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION"
                            "/durable-execution/NAME/ID)")
    return run_id


def check_execution_name(name: str) -> str:
    if not _EXECUTION_NAME.fullmatch(name):
        raise ContractError(f"execution name {name!r} must be 1-64 letters, digits, '-' or '_'")
    return name


# -- checkpoint tokens ---------------------------------------------------------------------------

def encode_token(run_id: str, nonce: str) -> str:
    """Standard base64, as the service model's pattern ([A-Za-z0-9+/]+={0,2}) requires."""
    raw = json.dumps([run_id, nonce], separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


def decode_token(token: str) -> tuple[str, str]:
    """(run id, nonce); a token that is not one of ours is a stale one to the SDK."""
    try:
        run_id, nonce = json.loads(base64.b64decode(token, validate=True))
    except (binascii.Error, ValueError, TypeError):
        raise ContractError(f"{INVALID_TOKEN}: not a token this server issued") from None
    if not isinstance(run_id, str) or not isinstance(nonce, str):
        raise ContractError(f"{INVALID_TOKEN}: not a token this server issued")
    return run_id, nonce


# -- values ---------------------------------------------------------------------------------------

def time_to_wire(ts: float, millis: bool) -> float | int:
    """An epoch time for the wire: milliseconds (invocation envelope) or seconds (API)."""
    return int(ts * 1000) if millis else ts


def time_from_wire(value: Any, millis: bool) -> float | None:
    """An epoch time from the wire: a datetime (boto3, AWS's SDK objects) or a number."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value) / 1000 if millis else float(value)
    raise ContractError(f"expected a timestamp, got {value!r}")


def error_to_wire(error: ErrorObject) -> Wire:
    out: Wire = {"ErrorType": error.type, "ErrorMessage": error.message}
    if error.data is not None:
        out["ErrorData"] = error.data
    if error.traceback:
        out["StackTrace"] = error.traceback.splitlines()
    return out


def error_from_wire(data: Any, what: str = "Error") -> ErrorObject:
    if not isinstance(data, Mapping):
        raise ContractError(f"{what} must be an object with ErrorType and ErrorMessage")
    trace = data.get("StackTrace")
    if trace is not None and not (isinstance(trace, list)
                                  and all(isinstance(line, str) for line in trace)):
        raise ContractError(f"{what}.StackTrace must be a list of strings")
    if len(json.dumps(data)) > MAX_ERROR_BYTES:
        raise ContractError(f"{what} is {len(json.dumps(data))} bytes serialized; the limit "
                            f"is {MAX_ERROR_BYTES}: shorten ErrorMessage, ErrorData or "
                            "StackTrace")
    return ErrorObject(_text(data.get("ErrorType"), f"{what}.ErrorType") or "Error",
                       _text(data.get("ErrorMessage"), f"{what}.ErrorMessage") or "",
                       "\n".join(trace) if trace else None,
                       _text(data.get("ErrorData"), f"{what}.ErrorData"))


def _text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ContractError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _seconds(options: Any, key: str, what: str, low: int) -> int | None:
    """A whole number of seconds from an options object; None if absent."""
    if options is None:
        return None
    if not isinstance(options, Mapping):
        raise ContractError(f"{what} must be an object")
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 31622400:
        raise ContractError(f"{what}.{key} must be a whole number of seconds from {low} to "
                            f"31622400, got {value!r}")
    return value


# -- operations: Durable -> wire (server side) ---------------------------------------------------

def operation_to_wire(op: Operation, millis: bool) -> Wire:
    """One operation as `Operation.to_dict` shapes it (lambda_service.py)."""
    out: Wire = {"Id": op.id, "Type": op.type.value, "Status": op.status.value,
                 "StartTimestamp": time_to_wire(op.started_at or 0.0, millis)}
    if op.parent_id:
        out["ParentId"] = op.parent_id
    if op.name:
        out["Name"] = op.name
    if op.sub_type:
        out["SubType"] = op.sub_type
    if op.ended_at is not None:
        out["EndTimestamp"] = time_to_wire(op.ended_at, millis)
    outcome: Wire = {}
    if op.result is not None:
        outcome["Result"] = op.result
    if op.error is not None:
        outcome["Error"] = error_to_wire(op.error)
    if op.type is OperationType.STEP:
        # AWS counts finished attempts; Durable counts a START as the attempt it begins.
        started = op.status is OperationStatus.STARTED and op.attempt > 0
        details: Wire = {"Attempt": op.attempt - 1 if started else op.attempt, **outcome}
        if op.status is OperationStatus.PENDING and op.due_at is not None:
            details["NextAttemptTimestamp"] = time_to_wire(op.due_at, millis)
        out["StepDetails"] = details
    elif op.type is OperationType.WAIT:
        out["WaitDetails"] = ({"ScheduledEndTimestamp": time_to_wire(op.due_at, millis)}
                              if op.due_at is not None else {})
    elif op.type is OperationType.CALLBACK:
        out["CallbackDetails"] = {"CallbackId": op.callback_id or "", **outcome}
    elif op.type is OperationType.CONTEXT:
        out["ContextDetails"] = {**outcome, "ReplayChildren": op.attempt == 1}
    elif op.type is OperationType.CHAINED_INVOKE:
        out["ChainedInvokeDetails"] = outcome
    return out


PAUSED = "DurablePaused"
"""A checkpoint answer's member, beyond AWS's contract, saying the run was paused: Durable's SDK
then holds at its next new operation, as in a worker; AWS's SDK, which reads only the members
it knows, runs on to its own next suspension."""

STREAM_CHUNKS = "DurableStreamChunks"
"""A checkpoint request's member, beyond AWS's contract: what step bodies wrote to streams
since the previous checkpoint (`chunk_to_wire`), appended before its updates are applied, in
the same transaction and under the same fencing, so a step's chunks precede its outcome and a
stale invocation's are refused with its checkpoint. Only Durable's server reads it."""


def chunk_to_wire(chunk: StreamChunk) -> Wire:
    out: Wire = {"Stream": chunk.stream, "OperationId": chunk.operation_id,
                 "Attempt": chunk.attempt, "Timestamp": chunk.at}
    if chunk.abandoned:
        out["Abandoned"] = True
    else:
        out["Value"] = chunk.value
    return out


def chunks_from_wire(data: Any) -> list[StreamChunk]:
    """A request's `DurableStreamChunks`, checked: a ContractError names the first bad one."""
    if not isinstance(data, list):
        raise ContractError(f"{STREAM_CHUNKS} must be a list of stream chunks")
    out = []
    for i, c in enumerate(data):
        where = f"{STREAM_CHUNKS}[{i}]"
        if not isinstance(c, Mapping):
            raise ContractError(f"{where} must be an object")
        try:
            stream = check_stream_name(c.get("Stream"))
        except ValueError as e:
            raise ContractError(f"{where}: {e}") from None
        op_id = _match(c.get("OperationId"), _ID, f"{where}.OperationId",
                       "1-64 letters, digits, '-' or '_'")
        attempt, at = c.get("Attempt"), c.get("Timestamp")
        if not isinstance(attempt, int) or isinstance(attempt, bool) or attempt < 1:
            raise ContractError(f"{where}.Attempt must be a whole number from 1")
        if not isinstance(at, int | float) or isinstance(at, bool):
            raise ContractError(f"{where}.Timestamp must be a number of epoch seconds")
        abandoned = c.get("Abandoned") is True
        value = c.get("Value")
        if not abandoned:
            if not isinstance(value, str):
                raise ContractError(f"{where}.Value must be the value as JSON text")
            try:
                json.loads(value)
            except ValueError:
                raise ContractError(f"{where}.Value is not valid JSON") from None
        out.append(StreamChunk(stream, None if abandoned else value, op_id, attempt, float(at),
                               abandoned))
    return out


AWS_STATUSES = tuple(s.value for s in ExecutionStatus if s.aws == s.value)
"""The execution statuses of AWS's contract: it has no PAUSED or ENQUEUED (`ExecutionStatus.aws`
shows both as RUNNING)."""


def statuses_from_wire(statuses: Sequence[str]) -> list[str]:
    """The stored statuses an AWS status filter means: RUNNING takes in PAUSED runs."""
    return [*statuses, *((ExecutionStatus.PAUSED.value,)
                         if ExecutionStatus.RUNNING.value in statuses else ())]


def execution_operation(run: RunInfo, name: str, millis: bool) -> Wire:
    """The EXECUTION operation that opens every execution's state: its id is the last ARN
    segment and `ExecutionDetails.InputPayload` is the event (state.py, get_input_payload)."""
    status = "STARTED" if run.status.live else run.status.value
    out: Wire = {"Id": run.run_id, "Type": "EXECUTION", "Status": status, "Name": name,
                 "StartTimestamp": time_to_wire(run.created_at, millis),
                 "ExecutionDetails": {"InputPayload": run.input}}
    if run.ended_at is not None:
        out["EndTimestamp"] = time_to_wire(run.ended_at, millis)
    return out


# -- operations: wire -> Durable (function side) -------------------------------------------------

def operation_from_wire(data: Mapping[str, Any], millis: bool) -> Operation:
    """An operation a backend sent (envelope: `millis`; API response: seconds or datetimes)."""
    kind = OperationType(data["Type"])
    details: Mapping[str, Any] = data.get(_DETAILS.get(kind, ""), None) or {}
    error = details.get("Error")
    attempt = 0
    due = None
    if kind is OperationType.STEP:
        attempt = int(details.get("Attempt", 0))
        if data["Status"] == "STARTED":  # back to Durable's count: START began an attempt
            attempt += 1
        due = time_from_wire(details.get("NextAttemptTimestamp"), millis)
    elif kind is OperationType.WAIT:
        due = time_from_wire(details.get("ScheduledEndTimestamp"), millis)
    elif kind is OperationType.CONTEXT and details.get("ReplayChildren"):
        attempt = 1
    result = details.get("Result")
    if kind is OperationType.CONTEXT and result is None and isinstance(error, Mapping):
        result = error.get("ErrorData")  # see update_to_wire: a failed batch's record
    return Operation(
        id=data["Id"], type=kind, status=OperationStatus(data["Status"]), name=data.get("Name"),
        parent_id=data.get("ParentId"), sub_type=data.get("SubType"), attempt=attempt,
        result=result, error=error_from_wire(error) if error else None,
        due_at=due, callback_id=details.get("CallbackId") or None,
        started_at=time_from_wire(data.get("StartTimestamp"), millis),
        ended_at=time_from_wire(data.get("EndTimestamp"), millis))


_DETAILS = {OperationType.STEP: "StepDetails", OperationType.WAIT: "WaitDetails",
            OperationType.CALLBACK: "CallbackDetails", OperationType.CONTEXT: "ContextDetails",
            OperationType.CHAINED_INVOKE: "ChainedInvokeDetails",
            OperationType.EXECUTION: "ExecutionDetails"}


# -- updates: Durable -> wire (function side) ----------------------------------------------------

def update_to_wire(u: OperationUpdate) -> Wire:
    """One update as `OperationUpdate.to_dict` shapes it. The service takes whole seconds of at
    least 1 for waits and retry delays, so Durable's fractional ones round up."""
    out: Wire = {"Id": u.id, "Type": u.type.value, "Action": u.action.value}
    if u.parent_id:
        out["ParentId"] = u.parent_id
    if u.name:
        out["Name"] = u.name
    if u.sub_type:
        out["SubType"] = u.sub_type
    error = u.error
    if u.payload is not None and u.action is OperationAction.FAIL:
        # The service takes no Payload with FAIL; a Durable batch that failed keeps its
        # record of which branches completed in ErrorData (operation_from_wire reads it back).
        error = ErrorObject(error.type if error else "BatchFailed",
                            error.message if error else "the batch failed",
                            error.traceback if error else None, u.payload)
    elif u.payload is not None:
        out["Payload"] = u.payload
    if error is not None:
        out["Error"] = error_to_wire(error)
    if u.type is OperationType.STEP and u.action is OperationAction.RETRY:
        out["StepOptions"] = {"NextAttemptDelaySeconds": _whole(u.delay)}
    elif u.type is OperationType.WAIT and u.action is OperationAction.START:
        out["WaitOptions"] = {"WaitSeconds": _whole(u.delay)}
    elif u.type is OperationType.CALLBACK and u.action is OperationAction.START:
        out["CallbackOptions"] = {
            "TimeoutSeconds": 0 if u.timeout is None else _whole(u.timeout),
            "HeartbeatTimeoutSeconds": 0 if u.heartbeat_timeout is None
            else _whole(u.heartbeat_timeout)}
    elif u.type is OperationType.CONTEXT and u.replay_children:
        out["ContextOptions"] = {"ReplayChildren": True}
    elif u.type is OperationType.CHAINED_INVOKE and u.child is not None:
        out["ChainedInvokeOptions"] = {"FunctionName": u.child.workflow}
        if u.child.tenant_id is not None:
            out["ChainedInvokeOptions"]["TenantId"] = u.child.tenant_id
        if u.child.input is not None:
            out["Payload"] = u.child.input
    return out


def _whole(seconds: float | None) -> int:
    return max(1, math.ceil(seconds or 0))


# -- updates: wire -> Durable (server side) ------------------------------------------------------

ChildResolver = Callable[[str, str, str | None], ChildStart | ErrorObject]
"""(operation id, target function, payload) -> the child run to start for a CHAINED_INVOKE, or
the error that fails the operation (no such function)."""


def update_from_wire(data: Any, resolve_child: ChildResolver) -> OperationUpdate:
    """Validate one update a function sent and turn it into Durable's form. Every malformed
    field is a ContractError naming the field and what is allowed."""
    if not isinstance(data, Mapping):
        raise ContractError("each of Updates must be an object")
    op_id = _match(data.get("Id"), _ID, "Id", "1-64 letters, digits, '-' or '_'")
    where = f"update of operation {op_id}"
    try:
        kind = OperationType(str(data.get("Type")))
        action = OperationAction(str(data.get("Action")))
    except ValueError:
        raise ContractError(f"{where}: Type must be one of {', '.join(OperationType)} and "
                            f"Action one of {', '.join(OperationAction)}") from None
    parent = data.get("ParentId")
    if parent is not None:
        _match(parent, _ID, f"{where}: ParentId", "an operation id")
    name = data.get("Name")
    if name is not None:
        _match(name, _NAME, f"{where}: Name", "1-256 printable ASCII characters")
    sub_type = data.get("SubType") or None
    if sub_type is not None:
        _match(sub_type, _SUB_TYPE, f"{where}: SubType", "1-32 letters, digits, '-' or '_'")
    payload = _text(data.get("Payload"), f"{where}: Payload")
    if payload is not None and len(payload.encode()) > MAX_OPERATION_PAYLOAD:
        raise ContractError(
            f"{where}: Payload is {len(payload.encode())} bytes; an operation's payload is "
            f"limited to {MAX_OPERATION_PAYLOAD} bytes (store large data elsewhere and "
            "checkpoint a reference to it)", "RequestTooLargeException", 413)
    error = error_from_wire(data["Error"], f"{where}: Error") if data.get("Error") else None
    fields: dict[str, Any] = {}
    if kind is OperationType.STEP and action is OperationAction.RETRY:
        delay = _seconds(data.get("StepOptions"), "NextAttemptDelaySeconds",
                         f"{where}: StepOptions", 1)
        if delay is None:
            raise ContractError(f"{where}: RETRY needs StepOptions.NextAttemptDelaySeconds")
        if error is not None and payload is not None:
            raise ContractError(f"{where}: RETRY takes an Error or a Payload, not both")
        fields["delay"] = float(delay)
    elif kind is OperationType.WAIT and action is OperationAction.START:
        fields["delay"] = float(_seconds(data.get("WaitOptions"), "WaitSeconds",
                                         f"{where}: WaitOptions", 1) or 1)
    elif kind is OperationType.CALLBACK and action is OperationAction.START:
        options = data.get("CallbackOptions")
        timeout = _seconds(options, "TimeoutSeconds", f"{where}: CallbackOptions", 0)
        beat = _seconds(options, "HeartbeatTimeoutSeconds", f"{where}: CallbackOptions", 0)
        fields["timeout"] = float(timeout) if timeout else None
        fields["heartbeat_timeout"] = float(beat) if beat else None
    elif kind is OperationType.CONTEXT:
        options = data.get("ContextOptions") or {}
        fields["replay_children"] = bool(isinstance(options, Mapping)
                                         and options.get("ReplayChildren"))
    elif kind is OperationType.CHAINED_INVOKE and action is OperationAction.START:
        options = data.get("ChainedInvokeOptions")
        target = options.get("FunctionName") if isinstance(options, Mapping) else None
        if not isinstance(target, str):
            raise ContractError(f"{where}: START needs ChainedInvokeOptions.FunctionName")
        tenant = options.get("TenantId") if isinstance(options, Mapping) else None
        if tenant is not None:
            _match(tenant, _NAME, f"{where}: ChainedInvokeOptions.TenantId",
                   "1-256 printable ASCII characters")
        child = resolve_child(op_id, target, payload)
        if isinstance(child, ErrorObject):
            error = child
        else:
            fields["child"] = replace(child, tenant_id=tenant)
        payload = None
    if action is OperationAction.SUCCEED and error is not None:
        raise ContractError(f"{where}: SUCCEED cannot carry an Error")
    if action is OperationAction.FAIL and payload is not None:
        raise ContractError(f"{where}: FAIL cannot carry a Payload")
    return OperationUpdate(op_id, kind, action, name=name, parent_id=parent, sub_type=sub_type,
                           payload=payload, error=error, **fields)


def _match(value: Any, pattern: re.Pattern[str], what: str, allowed: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ContractError(f"{what} must be {allowed}, got {value!r}")
    return value


# -- invocation outputs --------------------------------------------------------------------------

PARKED = "NonDeterminismError"
"""ErrorType of a PENDING output with an Error: Durable's own SDK found the code no longer fits
the run's history. The run is parked (design §1), not failed; AWS's backend has no such state."""


def output_to_wire(out: InvocationOutput) -> Wire:
    """`DurableExecutionInvocationOutput.to_dict`: Status, and Result or Error."""
    wire: Wire = {"Status": out.status.value}
    if out.continue_as_new is not None:
        return {"Status": "FAILED", "Error": error_to_wire(ErrorObject(
            "UsageError", "continue_as_new is not supported behind the AWS durable-execution "
            "contract: start a new execution instead"))}
    if out.result is not None:
        wire["Result"] = out.result
    error = out.parked or out.error
    if error is not None:
        wire["Error"] = error_to_wire(error)
    return wire


def output_from_wire(data: Any) -> InvocationOutput:
    """A function's answer; one the contract does not allow fails the run (as AWS fails the
    execution on an invalid output) with an error that says what was wrong."""
    try:
        if not isinstance(data, Mapping):
            raise ContractError("the function's output is not a JSON object")
        status = InvocationStatus(str(data.get("Status")))
        result = _text(data.get("Result"), "Result")
        error = error_from_wire(data["Error"]) if data.get("Error") is not None else None
    except (ContractError, ValueError) as e:
        return _invalid(f"invalid invocation output ({e}); a durable function returns "
                        '{"Status": "SUCCEEDED"|"FAILED"|"PENDING", "Result"?, "Error"?}')
    if status is InvocationStatus.SUCCEEDED and error is not None:
        return _invalid("Cannot provide an Error for SUCCEEDED status.")
    if status is InvocationStatus.FAILED and result is not None:
        return _invalid("Cannot provide a Result for FAILED status.")
    if status is InvocationStatus.PENDING:
        parked = error if error is not None and error.type == PARKED else None
        return InvocationOutput(status, parked=parked)
    return InvocationOutput(status, result=result, error=error,
                            stopped=error is not None and error.type == "Cancelled")


def _invalid(message: str) -> InvocationOutput:
    return InvocationOutput(InvocationStatus.FAILED,
                            error=ErrorObject("InvalidParameterValueException", message))


# -- history: Durable's events -> AWS's (GetDurableExecutionHistory) -----------------------------

_EVENT_DETAILS = {
    EventType.EXECUTION_STARTED: "ExecutionStartedDetails",
    EventType.EXECUTION_SUCCEEDED: "ExecutionSucceededDetails",
    EventType.EXECUTION_FAILED: "ExecutionFailedDetails",
    EventType.EXECUTION_STOPPED: "ExecutionStoppedDetails",
    EventType.EXECUTION_TIMED_OUT: "ExecutionTimedOutDetails",
    EventType.CONTEXT_STARTED: "ContextStartedDetails",
    EventType.CONTEXT_SUCCEEDED: "ContextSucceededDetails",
    EventType.CONTEXT_FAILED: "ContextFailedDetails",
    EventType.WAIT_STARTED: "WaitStartedDetails",
    EventType.WAIT_SUCCEEDED: "WaitSucceededDetails",
    EventType.WAIT_CANCELLED: "WaitCancelledDetails",
    EventType.STEP_STARTED: "StepStartedDetails",
    EventType.STEP_SUCCEEDED: "StepSucceededDetails",
    EventType.STEP_FAILED: "StepFailedDetails",
    EventType.CHAINED_INVOKE_STARTED: "ChainedInvokeStartedDetails",
    EventType.CHAINED_INVOKE_SUCCEEDED: "ChainedInvokeSucceededDetails",
    EventType.CHAINED_INVOKE_FAILED: "ChainedInvokeFailedDetails",
    EventType.CHAINED_INVOKE_CANCELLED: "ChainedInvokeStoppedDetails",
    EventType.CALLBACK_STARTED: "CallbackStartedDetails",
    EventType.CALLBACK_SUCCEEDED: "CallbackSucceededDetails",
    EventType.CALLBACK_FAILED: "CallbackFailedDetails",
    EventType.CALLBACK_TIMED_OUT: "CallbackTimedOutDetails",
    EventType.INVOCATION_COMPLETED: "InvocationCompletedDetails",
    EventType.WORKER_LOST: "InvocationCompletedDetails",
}
"""Durable's event types that AWS's history has (its EventType enum in the service model), and
the details member each fills. Durable's others (StepReady, SignalReceived, ExecutionParked, ...)
have no AWS counterpart and are left out: AWS's testing package rejects unknown types. A lost
worker is an invocation that ended without returning, which AWS's history tells as an
InvocationCompleted with an Error."""


class HistoryContext:
    """What turning a run's events into AWS's needs besides the events."""

    def __init__(self, run: RunInfo, name: str, operations: Iterable[Operation],
                 include_data: bool,
                 child: Callable[[str], tuple[str, str, str | None]]) -> None:
        """`child(run_id)` is a child run's (function name, execution ARN, input); Durable
        has no function versions, so every child ran `$LATEST`."""
        self.run, self.name, self.include_data, self.child = run, name, include_data, child
        self.ops = {op.id: op for op in operations}


def history_to_wire(events: Sequence[HistoryEvent], ctx: HistoryContext) -> list[Wire]:
    """AWS-shaped events, numbered from 1 in order, timestamps in epoch seconds."""
    out: list[Wire] = []
    for event in events:
        try:
            kind = EventType(event.type)
        except ValueError:
            continue
        if kind is EventType.STEP_FAILED and _is_poll(event):
            kind = EventType.STEP_SUCCEEDED
        member = _EVENT_DETAILS.get(kind)
        if member is None:
            continue
        wire = _event_head(event, kind, ctx)
        wire["EventId"] = len(out) + 1
        wire[member] = _event_details(event, kind, ctx)
        out.append(wire)
    return out


def _is_poll(event: HistoryEvent) -> bool:
    """A STEP RETRY that handed its next attempt a state and no error: a wait_for_condition
    check whose condition is not met yet. Durable records it as a retried attempt; AWS shows
    it as a StepSucceeded whose result is that state, with the delay in its RetryDetails."""
    d = event.details
    return bool(d.get("retry")) and d.get("error") is None and "state" in d


def _retry_details(event: HistoryEvent) -> Wire:
    d = event.details
    retry: Wire = {"CurrentAttempt": d.get("attempt", 1)}
    if d.get("next_attempt_at") is not None:
        retry["NextAttemptDelaySeconds"] = max(0, round(d["next_attempt_at"] - event.timestamp))
    return retry


def _event_head(event: HistoryEvent, kind: EventType, ctx: HistoryContext) -> Wire:
    wire: Wire = {"EventType": _AWS_TYPE.get(kind, kind.value), "EventTimestamp": event.timestamp}
    if kind.value.startswith("Execution"):
        wire.update(Id=ctx.run.run_id, Name=ctx.name)
    elif event.operation_id is not None:
        op = ctx.ops.get(event.operation_id)
        wire["Id"] = event.operation_id
        for key, value in (("Name", event.name or (op and op.name)),
                           ("ParentId", op and op.parent_id), ("SubType", op and op.sub_type)):
            if value:
                wire[key] = value
    return wire


_AWS_TYPE = {EventType.CHAINED_INVOKE_CANCELLED: "ChainedInvokeStopped",
             EventType.WORKER_LOST: EventType.INVOCATION_COMPLETED.value}


def _payload(value: str | None, ctx: HistoryContext) -> Wire:
    """EventInput / EventResult: the payload only when IncludeExecutionData asked for it."""
    if ctx.include_data:
        return {"Payload": value, "Truncated": False} if value is not None else {
            "Truncated": False}
    return {"Truncated": value is not None}


def _error(data: Any, ctx: HistoryContext) -> Wire:
    """EventError from an error as Durable's events record it (ErrorObject.to_dict)."""
    if not isinstance(data, Mapping):
        return {"Truncated": False}
    if not ctx.include_data:
        return {"Truncated": True}
    return {"Payload": error_to_wire(ErrorObject.from_dict(dict(data))), "Truncated": False}


def _event_details(event: HistoryEvent, kind: EventType, ctx: HistoryContext) -> Wire:
    d = event.details
    op = ctx.ops.get(event.operation_id or "")
    E = EventType
    if kind is E.EXECUTION_STARTED:
        timeout = (ctx.run.timeout_at - ctx.run.created_at) if ctx.run.timeout_at else 0
        return {"Input": _payload(ctx.run.input, ctx), "ExecutionTimeout": round(timeout)}
    if kind is E.EXECUTION_SUCCEEDED:
        return {"Result": _payload(ctx.run.result, ctx)}
    if kind in (E.EXECUTION_FAILED, E.EXECUTION_STOPPED, E.EXECUTION_TIMED_OUT,
                E.CONTEXT_FAILED, E.CALLBACK_FAILED, E.CALLBACK_TIMED_OUT,
                E.CHAINED_INVOKE_FAILED, E.CHAINED_INVOKE_CANCELLED):
        error = d.get("error") or (op.error.to_dict() if op and op.error else None)
        return {"Error": _error(error, ctx)}
    if kind is E.STEP_SUCCEEDED:
        result = d.get("state", op.result if op else None)
        return {"Result": _payload(result, ctx), "RetryDetails": _retry_details(event)}
    if kind is E.STEP_FAILED:
        return {"Error": _error(d.get("error"), ctx), "RetryDetails": _retry_details(event)}
    if kind is E.WAIT_STARTED:
        due = d.get("due_at", event.timestamp)
        return {"Duration": max(0, round(due - event.timestamp)), "ScheduledEndTimestamp": due}
    if kind is E.WAIT_SUCCEEDED:
        start = op.started_at if op and op.started_at else event.timestamp
        return {"Duration": max(0, round(event.timestamp - start))}
    if kind in (E.CONTEXT_SUCCEEDED, E.CALLBACK_SUCCEEDED, E.CHAINED_INVOKE_SUCCEEDED):
        return {"Result": _payload(op.result if op else None, ctx)}
    if kind is E.CALLBACK_STARTED:
        started: Wire = {"CallbackId": d.get("callback_id") or ""}
        if d.get("timeout_at") is not None:
            started["Timeout"] = max(0, round(d["timeout_at"] - event.timestamp))
        if d.get("heartbeat_timeout"):
            started["HeartbeatTimeout"] = round(d["heartbeat_timeout"])
        return started
    if kind is E.CHAINED_INVOKE_STARTED:
        if not d.get("child_run_id"):
            return {"FunctionName": op.name if op and op.name else ""}
        function, arn, payload = ctx.child(d["child_run_id"])
        started = {"FunctionName": function, "Input": _payload(payload, ctx),
                   "ExecutedVersion": "$LATEST", "DurableExecutionArn": arn}
        if d.get("tenant_id") is not None:
            started["TenantId"] = d["tenant_id"]
        return started
    if kind is E.INVOCATION_COMPLETED:
        done: Wire = {"StartTimestamp": event.timestamp - float(d.get("duration", 0.0)),
                      "EndTimestamp": event.timestamp, "RequestId": f"{event.run_id}-{event.id}"}
        if d.get("error"):
            done["Error"] = _error(d["error"], ctx)
        return done
    if kind is E.WORKER_LOST:
        return _lost_invocation(event, ctx)
    return {}  # ContextStarted, StepStarted, WaitCancelled: no details


def _lost_invocation(event: HistoryEvent, ctx: HistoryContext) -> Wire:
    """A WorkerLost event as the InvocationCompleted of the invocation that died: it ran from
    its oldest in-flight step's start (what it did before is in its steps' own events) until
    its worker was last seen, and failed with `Worker.Lost` naming the worker and its steps."""
    d = event.details
    seen = float(d.get("last_seen") or event.timestamp)
    steps = d.get("in_flight") or []
    start = min((float(s["started_at"]) for s in steps if s.get("started_at")), default=seen)
    running = ", ".join(f"step {s['name']!r} attempt {s['attempt']}" for s in steps)
    error = ErrorObject(LOST, f"worker {d.get('worker')} was lost (last seen at {seen:.3f});"
                              f" in flight: {running or 'no step'}")
    return {"StartTimestamp": min(start, seen), "EndTimestamp": seen,
            "RequestId": f"{event.run_id}-{event.id}", "Error": _error(error.to_dict(), ctx)}
