"""AWS Lambda durable functions' API on `durable server`: data plane and control plane.

The paths, verbs, headers and bodies are those of botocore's `lambda` service model, so boto3's
`lambda` client, AWS's durable-execution SDK and its testing package's cloud runner talk to this
server unchanged, pointed at it only by `AWS_ENDPOINT_URL_LAMBDA=http://host:port`:

- data plane (a function's checkpoints): CheckpointDurableExecution, GetDurableExecutionState;
- control plane: Invoke (starts an execution of a registered function, idempotent by
  `X-Amz-Durable-Execution-Name`), GetDurableExecution, GetDurableExecutionHistory,
  ListDurableExecutionsByFunction, StopDurableExecution, DeleteDurableExecution,
  SendDurableExecutionCallbackSuccess / Failure / Heartbeat.

The router's lifespan also runs the `FunctionWorker` that invokes registered functions. Errors
are AWS-shaped (`x-amzn-ErrorType` header, `{"Type", "message"}` body) so botocore raises the
modeled exception, e.g. `client.exceptions.ResourceNotFoundException`.

Authentication: the SDK signs requests with SigV4, which a self-hosted server cannot verify
without the secret key. When the server has a token, a request must carry it as its access key
id (`AWS_ACCESS_KEY_ID=<token>`) or as a bearer token; without a token, any credentials do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from durable.client import Client
from durable.errors import CallbackNotFound, RunNotEnded, RunNotFound, UsageError
from durable.invoke.contract import (
    AWS_STATUSES,
    MAX_CALLBACK_RESULT,
    MAX_CHECKPOINT_BYTES,
    MAX_INVOKE_PAYLOAD,
    STREAM_CHUNKS,
    ContractError,
    NotFound,
    Wire,
    check_execution_name,
    chunks_from_wire,
    error_from_wire,
    error_to_wire,
    execution_arn,
    function_arn,
    function_name,
    run_id_of,
)
from durable.invoke.executions import Executions
from durable.invoke.push import FunctionWorker, registered
from durable.model import ExecutionStatus
from durable.server.auth import matches
from durable.server.deps import ServerState

SYNC_INVOKE_LIMIT = 900.0
"""A RequestResponse Invoke waits for the execution to end for at most 15 minutes, as Lambda's."""


@dataclass(slots=True)
class _Aws:
    """What the routes use: the server's client for the engine's commands, the contract's own
    transactions on its store and clock, and the worker invoking the registered functions."""

    client: Client
    executions: Executions
    worker: FunctionWorker
    fixed_endpoint: bool  # the server was told where functions reach it (`public_url`)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Run the FunctionWorker beside the app (after the app's own lifespan opened the store).
    Functions checkpoint to the server's public URL; an app not told it (an ASGI app hosted by
    hand) learns it from the first AWS API call, and invokes no HTTP function before."""
    state: ServerState = app.state.durable
    client = state.client
    worker = FunctionWorker(client.store, state.public_url, clock=client.clock,
                            token=state.token)
    app.state.durable_aws = _Aws(client, Executions(client.store, client.clock), worker,
                                 state.public_url is not None)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await task


router = APIRouter(lifespan=_lifespan, include_in_schema=False)


# -- plumbing -------------------------------------------------------------------------------------

def _aws_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"Type": "User" if status < 500 else "Service", "message": message,
                         "Message": message}, status_code=status,
                        headers={"x-amzn-ErrorType": code})


REFUSALS = {400: "InvalidParameterValueException", 401: "AccessDeniedException",
            403: "AccessDeniedException", 413: "RequestTooLargeException"}


def refusal(status: int, code: str, message: str) -> JSONResponse:
    """The server's guard refusing a request (`app.Mount.refuse`), the way Lambda would."""
    return _aws_error(status, REFUSALS.get(status, "InvalidRequestContentException"), message)


def _aws(request: Request) -> _Aws:
    """What the routes use, after checking the caller and learning the server's address."""
    state: ServerState = request.app.state.durable
    if state.token is not None and not _authorized(request, state.token):
        raise ContractError("The request is not signed with this server's token: set "
                            "AWS_ACCESS_KEY_ID to it", "AccessDeniedException", 403)
    aws: _Aws = request.app.state.durable_aws
    if not aws.fixed_endpoint:  # functions call back where callers reached us
        aws.worker.endpoint = str(request.base_url).rstrip("/")
    return aws


def _authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    if header.startswith("Bearer "):
        return matches(header.removeprefix("Bearer ").strip(), token)
    return matches(header.partition("Credential=")[2].partition("/")[0], token)


async def _handle(request: Request, fn: Callable[[_Aws], Awaitable[Any]]) -> Response:
    """Run one API call: its errors become AWS-shaped 4xx answers, never a 500."""
    try:
        result = await fn(_aws(request))
    except ContractError as e:
        return _aws_error(e.status, e.code, str(e))
    except (RunNotFound, CallbackNotFound) as e:
        return _aws_error(404, "ResourceNotFoundException", str(e))
    except RunNotEnded as e:
        return _aws_error(409, "ResourceConflictException", str(e))
    except UsageError as e:
        return _aws_error(400, "InvalidParameterValueException", str(e))
    if isinstance(result, Response):
        return result
    return JSONResponse(result)


async def _json(request: Request, limit: int) -> Any:
    body = await _body(request, limit)
    if not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError as e:
        raise ContractError(f"the request body is not valid JSON: {e}") from None


async def _body(request: Request, limit: int) -> bytes:
    body = await request.body()
    if len(body) > limit:
        raise ContractError(f"the request body is {len(body)} bytes; the limit is {limit}",
                            "RequestTooLargeException", 413)
    return body


def _int(request: Request, name: str, low: int, high: int) -> int | None:
    value = request.query_params.get(name)
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise ContractError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ContractError(f"{name} must be from {low} to {high}, got {number}")
    return number


def _bool(request: Request, name: str, default: bool) -> bool:
    value = request.query_params.get(name)
    return default if value is None else value.lower() == "true"


def _timestamp(request: Request, name: str) -> float | None:
    """botocore sends querystring timestamps as ISO 8601; epoch seconds are accepted too."""
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ContractError(f"{name} must be an ISO 8601 time, got {value!r}") from None


# -- data plane -----------------------------------------------------------------------------------

CHECKPOINT_PATH = "/2025-12-01/durable-executions/{arn:path}/checkpoint"


@router.post(CHECKPOINT_PATH)
async def checkpoint_durable_execution(arn: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Response:
        body = await _json(request, MAX_CHECKPOINT_BYTES)
        if not isinstance(body, dict) or not isinstance(body.get("CheckpointToken"), str):
            raise ContractError("CheckpointToken is required")
        token, updates = body["CheckpointToken"], body.get("Updates") or []
        client_token = body.get("ClientToken")
        if client_token is not None and not (isinstance(client_token, str)
                                             and 1 <= len(client_token) <= 64):
            raise ContractError("ClientToken must be a string of 1-64 characters")
        chunks = chunks_from_wire(body[STREAM_CHUNKS]) if STREAM_CHUNKS in body else []
        return Response(await aws.executions.checkpoint(run_id_of(arn), token, updates,
                                                        client_token, chunks),
                        media_type="application/json")
    return await _handle(request, call)


class LeanCheckpoints:
    """Checkpoints, a push step's one request, answered by the route above without FastAPI's
    routing, dependency solving and exception middleware (about a quarter of the server's CPU
    per checkpoint in py-spy). Mounted inside `guard.Guard`, which has checked the request's
    Host, size and origin as for the route itself; the route checks the token."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.path = compile_path(CHECKPOINT_PATH)[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = (self.path.match(scope["path"])
                 if scope["type"] == "http" and scope["method"] == "POST" else None)
        if found is None:
            await self.app(scope, receive, send)
            return
        response = await checkpoint_durable_execution(found["arn"], Request(scope, receive))
        await response(scope, receive, send)


@router.get("/2025-12-01/durable-executions/{arn:path}/state")
async def get_durable_execution_state(arn: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        token = request.query_params.get("CheckpointToken")
        if not token:
            raise ContractError("CheckpointToken is required")
        marker = request.query_params.get("Marker")
        max_items = _int(request, "MaxItems", 0, 1000)
        return await aws.executions.state(run_id_of(arn), token, marker, max_items)
    return await _handle(request, call)


# -- control plane: executions --------------------------------------------------------------------

@router.post("/2015-03-31/functions/{name}/invocations")
async def invoke(name: str, request: Request) -> Response:
    """Invoke: start an execution. RequestResponse waits for it to end (up to 15 minutes) and
    answers its result, or its error with `X-Amz-Function-Error`; Event answers 202 at once."""
    async def call(aws: _Aws) -> Response:
        function = function_name(name)
        kind = request.headers.get("x-amz-invocation-type", "RequestResponse")
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise ContractError(f"X-Amz-Invocation-Type must be RequestResponse, Event or "
                                f"DryRun, got {kind!r}")
        given = request.headers.get("x-amz-durable-execution-name")
        execution = check_execution_name(given) if given else uuid.uuid4().hex
        payload = await _body(request, MAX_INVOKE_PAYLOAD)
        try:
            text = payload.decode() if payload else None
        except UnicodeDecodeError:
            raise ContractError("the payload must be UTF-8 JSON") from None
        spec = next((f for f in await asyncio.to_thread(registered, aws.client.store)
                     if f.name == function), None)
        if spec is None:
            raise NotFound(f"Function not found: {function_arn(function)} (register it with "
                           f"`durable functions add {function} --url URL`)")
        headers = {"X-Amz-Executed-Version": "$LATEST"}
        if kind == "DryRun":
            return Response(status_code=204, headers=headers)
        run = await aws.executions.start(function, execution, text, spec.execution_timeout)
        headers["X-Amz-Durable-Execution-Arn"] = execution_arn(function, execution, run.run_id)
        if kind == "Event":
            return Response(status_code=202, headers=headers)
        ended = await aws.client.wait_ended_async(run.run_id, SYNC_INVOKE_LIMIT)
        if ended.status is ExecutionStatus.SUCCEEDED:
            return Response(ended.result or "null", headers=headers,
                            media_type="application/json")
        if ended.status.live:
            return Response("null", headers=headers, media_type="application/json")
        headers["X-Amz-Function-Error"] = "Unhandled"
        error = error_to_wire(ended.error) if ended.error else {"ErrorType": ended.status.value}
        return Response(json.dumps(error), headers=headers, media_type="application/json")
    return await _handle(request, call)


@router.get("/2025-12-01/durable-executions/{arn:path}/history")
async def get_durable_execution_history(arn: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        run_id = run_id_of(arn)
        include = _bool(request, "IncludeExecutionData", False)
        max_items = _int(request, "MaxItems", 0, 1000) or 100
        start = _int(request, "Marker", 0, 2**31) or 0
        newest_first = _bool(request, "ReverseOrder", False)
        return await aws.executions.history(run_id, include, newest_first, start, max_items)
    return await _handle(request, call)


@router.post("/2025-12-01/durable-executions/{arn:path}/stop")
async def stop_durable_execution(arn: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        run_id = run_id_of(arn)
        body = await _json(request, MAX_CALLBACK_RESULT)
        error = error_from_wire(body) if body else None
        return {"StopTimestamp": await aws.client.terminate_async(run_id, error=error)}
    return await _handle(request, call)


@router.get("/2025-12-01/durable-executions/{arn:path}")
async def get_durable_execution(arn: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        run_id = run_id_of(arn)
        return await aws.executions.describe(run_id, _bool(request, "IncludeExecutionData", True))
    return await _handle(request, call)


@router.delete("/2025-12-01/durable-executions/{arn:path}")
async def delete_durable_execution(arn: str, request: Request) -> Response:
    """An ended execution and all its data go at once (AWS's execution is DELETING a while);
    one not ended is refused with ResourceConflictException, as AWS's."""
    async def call(aws: _Aws) -> Response:
        await aws.client.delete_async(run_id_of(arn))
        return JSONResponse({"DeletionRequestTimestamp": aws.client.clock()}, status_code=202)
    return await _handle(request, call)


@router.get("/2025-12-01/functions/{name}/durable-executions")
async def list_durable_executions_by_function(name: str, request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        function = function_name(name)
        statuses = request.query_params.getlist("Statuses")
        for status in statuses:
            if status not in AWS_STATUSES:
                raise ContractError(f"Statuses: unknown status {status!r}; use "
                                    f"{', '.join(AWS_STATUSES)}")
        wanted = request.query_params.get("DurableExecutionName")
        after, before = _timestamp(request, "StartedAfter"), _timestamp(request, "StartedBefore")
        max_items = _int(request, "MaxItems", 0, 1000) or 50
        start = _int(request, "Marker", 0, 2**31) or 0
        newest_first = _bool(request, "ReverseOrder", False)
        return await aws.executions.list(function, statuses, wanted, after, before,
                                         newest_first, start, max_items)
    return await _handle(request, call)


# -- control plane: callbacks ---------------------------------------------------------------------

@router.post("/2025-12-01/durable-execution-callbacks/{callback_id}/succeed")
async def send_durable_execution_callback_success(callback_id: str,
                                                  request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        body = await _body(request, MAX_CALLBACK_RESULT)
        try:
            result = body.decode() if body else None
        except UnicodeDecodeError:
            raise ContractError("the callback result must be UTF-8 text (JSON)") from None
        await aws.client.resolve_callback_async(callback_id, result)
        return {}
    return await _handle(request, call)


@router.post("/2025-12-01/durable-execution-callbacks/{callback_id}/fail")
async def send_durable_execution_callback_failure(callback_id: str,
                                                  request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        error = error_from_wire(await _json(request, MAX_CALLBACK_RESULT))
        await aws.client.resolve_callback_async(callback_id, error=error)
        return {}
    return await _handle(request, call)


@router.post("/2025-12-01/durable-execution-callbacks/{callback_id}/heartbeat")
async def send_durable_execution_callback_heartbeat(callback_id: str,
                                                    request: Request) -> Response:
    async def call(aws: _Aws) -> Wire:
        await aws.client.heartbeat_callback_async(callback_id)
        return {}
    return await _handle(request, call)
