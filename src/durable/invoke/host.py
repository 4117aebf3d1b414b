"""Durable workflows as functions behind AWS Lambda durable functions' contract.

`durable.lambda_handler(workflow)` is an AWS Lambda handler: deploy it as a durable function and
AWS's backend (or AWS's testing emulator, or `durable server`) invokes it with the invocation
envelope; it replays the run's operations through the workflow, checkpoints each new operation
back to the backend with the envelope's checkpoint token, and returns SUCCEEDED, FAILED or
PENDING. `durable.serve(*functions)` is an ASGI app doing the same over HTTP for any host
(uvicorn, a container platform): each POST carries one envelope. It also hosts Lambda-style
handlers, such as ones written with AWS's SDK, so those can run outside Lambda too.

Where checkpoints go ("whatever backend invoked them"): the backend passed explicitly; else the
`X-Durable-Endpoint` header `durable server` sends with each invocation; else
`AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` (plain HTTP, as to a local emulator); else AWS
itself through boto3 (signed, with the function's role). AWS's in-process test runner hands the
handler its own service client, which is used as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from durable.errors import UsageError, requires_extra
from durable.invoke.contract import (
    INVALID_TOKEN,
    MAX_UPDATES,
    PAUSED,
    STREAM_CHUNKS,
    Wire,
    chunk_to_wire,
    operation_from_wire,
    output_to_wire,
    run_id_of,
    update_to_wire,
)
from durable.model import (
    CheckpointResult,
    ErrorObject,
    Invocation,
    InvocationStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
)
from durable.sdk.workflow import Workflow

if TYPE_CHECKING:  # imported when an app is built: a Lambda deployment needs no web framework
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

ENDPOINT_HEADER = "X-Durable-Endpoint"
TOKEN_ENV = "DURABLE_TOKEN"
"""A function checkpointing to a `durable server` that requires a token sends it from here."""


class Backend(Protocol):
    """The two data-plane calls a function makes, in wire shapes (contract.py)."""

    async def checkpoint(self, arn: str, token: str, updates: list[Wire],
                         client_token: str) -> Wire: ...

    async def get_state(self, arn: str, token: str, marker: str) -> Wire: ...


class BackendError(Exception):
    """The backend refused a call. `retryable`: a network fault, 429, 5xx or a run the backend
    does not know (a misaddressed server), where Lambda would
    invoke the function again; `stale`: the token is no longer this invocation's."""

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.stale = message.startswith(INVALID_TOKEN) or INVALID_TOKEN in message


# -- backends -------------------------------------------------------------------------------------

class HttpBackend:
    """Plain JSON over HTTP to a self-hosted backend (`durable server`, a local emulator).

    Its requests go over the process's kept-alive connections (`keepalive.POOL`): an
    invocation's checkpoints, and the invocations a host serves after it, reuse them instead
    of opening one per call."""

    def __init__(self, endpoint: str, token: str | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def checkpoint(self, arn: str, token: str, updates: list[Wire],
                         client_token: str, chunks: Sequence[Wire] = ()) -> Wire:
        """`chunks`: stream chunks of step bodies, which Durable's server appends before the
        updates (contract.STREAM_CHUNKS); only a backend of this class is handed any."""
        body: Wire = {"CheckpointToken": token, "Updates": updates, "ClientToken": client_token}
        if chunks:
            body[STREAM_CHUNKS] = list(chunks)
        return await self._call("POST", f"{_quote(arn)}/checkpoint", json.dumps(body).encode())

    async def get_state(self, arn: str, token: str, marker: str) -> Wire:
        import urllib.parse  # as http.client in _call: only a call over HTTP needs it

        query = urllib.parse.urlencode({"CheckpointToken": token, "Marker": marker})
        return await self._call("GET", f"{_quote(arn)}/state?{query}", None)

    async def _call(self, method: str, path: str, body: bytes | None) -> Wire:
        # Imported at the first call, not with this module: http.client (and the email package
        # under it) is most of what importing a Lambda function's module would cost otherwise,
        # and a function whose backend is AWS itself never makes such a call.
        import http.client

        from durable.invoke import keepalive

        url = f"{self.endpoint}/2025-12-01/durable-executions/{path}"
        try:
            answer = await keepalive.POOL.request(method, url, body, self.headers,
                                                  CHECKPOINT_TIMEOUT)
        except (OSError, http.client.HTTPException) as e:
            raise BackendError(f"cannot reach {self.endpoint}: {type(e).__name__}: {e}",
                               retryable=True) from None
        if answer.status >= 400:
            detail = answer.text
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            if answer.status == 404:  # not this invocation's doing: fail it, to be invoked again
                raise BackendError(
                    f"the durable server at {self.endpoint} does not know this run ({detail}): "
                    "it is not the server that invoked the function, which sent this address "
                    f"in {ENDPOINT_HEADER}; start that server with `durable server "
                    "--public-url URL`, URL being where functions reach it",
                    retryable=True) from None
            raise BackendError(detail, retryable=answer.status >= 500 or answer.status == 429)
        try:
            parsed: Wire = json.loads(answer.body or b"{}")
        except ValueError as e:
            raise BackendError(f"{self.endpoint} answered with no JSON: {e}",
                               retryable=True) from None
        return parsed


CHECKPOINT_TIMEOUT = 60.0
"""Longest a checkpoint call may take before the invocation fails (and is invoked again)."""


def _quote(arn: str) -> str:
    import urllib.parse

    return urllib.parse.quote(arn, safe="")


class Boto3Backend:
    """AWS itself: boto3's `lambda` client signs with the function's credentials."""

    def __init__(self, client: Any = None) -> None:
        if client is None:
            try:
                import boto3  # type: ignore[import-untyped]
            except ImportError:
                raise UsageError("no backend to checkpoint to: set AWS_ENDPOINT_URL_LAMBDA, or "
                                 "install boto3 to reach AWS") from None
            client = boto3.client("lambda")
        self.client = client

    async def checkpoint(self, arn: str, token: str, updates: list[Wire],
                         client_token: str) -> Wire:
        return await self._call(lambda: self.client.checkpoint_durable_execution(
            DurableExecutionArn=arn, CheckpointToken=token, Updates=updates,
            ClientToken=client_token))

    async def get_state(self, arn: str, token: str, marker: str) -> Wire:
        return await self._call(lambda: self.client.get_durable_execution_state(
            DurableExecutionArn=arn, CheckpointToken=token, Marker=marker, MaxItems=1000))

    async def _call(self, fn: Callable[[], Wire]) -> Wire:
        try:
            return await asyncio.to_thread(fn)
        except Exception as e:  # botocore's ClientError and network errors
            response = getattr(e, "response", {}) or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 500
            raise BackendError(str(e), retryable=status >= 500 or status == 429) from None


class ServiceClientBackend:
    """The service client AWS's in-process test runner injects with the event
    (`DurableExecutionInvocationInputWithClient.service_client`)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def checkpoint(self, arn: str, token: str, updates: list[Wire],
                         client_token: str) -> Wire:
        from aws_durable_execution_sdk_python.lambda_service import OperationUpdate as AwsUpdate
        out = await self._call(lambda: self.client.checkpoint(
            arn, token, [AwsUpdate.from_dict(u) for u in updates], client_token))
        return {"CheckpointToken": out.checkpoint_token, "NewExecutionState": {
            "Operations": [op.to_dict() for op in out.new_execution_state.operations]}}

    async def get_state(self, arn: str, token: str, marker: str) -> Wire:
        out = await self._call(lambda: self.client.get_execution_state(arn, token, marker))
        return {"Operations": [op.to_dict() for op in out.operations],
                "NextMarker": out.next_marker}

    @staticmethod
    async def _call(fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except Exception as e:
            raise BackendError(str(e), retryable=False) from None


def default_backend(endpoint: str | None = None) -> Backend:
    """The backend of a function that was not handed one (see the module docstring)."""
    endpoint = (endpoint or os.environ.get("AWS_ENDPOINT_URL_LAMBDA")
                or os.environ.get("AWS_ENDPOINT_URL"))
    return HttpBackend(endpoint) if endpoint else Boto3Backend()


# -- one invocation -------------------------------------------------------------------------------

class _Envelope:
    """The invocation input, from a JSON dict or from AWS's in-process event object."""

    def __init__(self, event: Any, backend: Backend | None) -> None:
        if hasattr(event, "service_client") and hasattr(event, "durable_execution_arn"):
            state = event.initial_execution_state
            self.arn, self.token = event.durable_execution_arn, event.checkpoint_token
            self.operations = [op.to_dict() for op in state.operations]
            self.marker, self.millis = state.next_marker or "", False
            self.backend: Backend = backend or ServiceClientBackend(event.service_client)
            return
        if not isinstance(event, Mapping) or "DurableExecutionArn" not in event \
                or "CheckpointToken" not in event:
            raise UsageError("this is not a durable invocation envelope (DurableExecutionArn, "
                             "CheckpointToken, InitialExecutionState): deploy the function "
                             "with durable execution enabled, or invoke it through a backend")
        state = event.get("InitialExecutionState") or {}
        self.arn, self.token = str(event["DurableExecutionArn"]), str(event["CheckpointToken"])
        self.operations = list(state.get("Operations") or [])
        self.marker, self.millis = str(state.get("NextMarker") or ""), True
        self.backend = backend or default_backend()


_MOVED = frozenset({OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.TIMED_OUT,
                    OperationStatus.CANCELLED, OperationStatus.STOPPED, OperationStatus.READY})
_REPLAYS = 20
"""Replays within one invocation, at most, when the backend resolves what it suspended on."""


class _Revoked(Exception):
    """The backend took the token away: this invocation ends PENDING, the next one resumes."""


class _Batches:
    """The checkpoints of one invocation, sent one request at a time (each needs the token
    the previous answer returned) and batched: updates that branches (gather, map) hand in
    while a request is in flight, or in the same turn of the loop, go out together in the next
    one, instead of each waiting for a round trip of its own. Each caller gets the answer and
    the ids sent with it; a failed request fails every caller in it.

    Over `HttpBackend` (Durable's server) the requests also carry what step bodies wrote to
    streams (`carry_chunks`): with the next checkpoint, so a step's chunks go before its
    outcome, and on their own as they come while no checkpoint is due. Once a request with
    chunks failed, whether they were kept is unknown: every later request fails too, so no
    step whose chunks may be lost is checkpointed; the run resumes from what is durable, and
    the attempts that wrote them are marked abandoned when it is claimed again."""

    def __init__(self, env: _Envelope) -> None:
        self.env, self.token = env, env.token
        self.failures: list[BackendError] = []
        self.queue: list[tuple[list[Wire], asyncio.Future[tuple[Wire, set[str]]]]] = []
        self.sender: asyncio.Task[None] | None = None
        self.http = env.backend if isinstance(env.backend, HttpBackend) else None
        self.invocation: Invocation | None = None
        self.broken: BackendError | None = None

    def carry_chunks(self, inv: Invocation) -> None:
        """Send the stream chunks of `inv`'s step bodies, if the backend takes them (else the
        SDK refuses a body's write: `Invocation.chunk_written` stays None)."""
        if self.http is None:
            return
        self.invocation = inv
        loop = asyncio.get_running_loop()

        def written() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the invocation is over
                loop.call_soon_threadsafe(self._start)
        inv.chunk_written = written

    async def flush(self) -> None:
        """Send what step bodies wrote that no checkpoint carried yet."""
        if self.invocation is not None and self.invocation.chunks:
            with contextlib.suppress(BackendError, _Revoked):  # counted in `failures`
                await self.send([])

    def stop_carrying(self) -> None:
        """The invocation is over: what a body still running writes now is not sent (its
        attempt is marked abandoned at the run's next claim)."""
        if self.invocation is not None:
            self.invocation.chunk_written = None
            self.invocation = None

    async def send(self, updates: list[Wire]) -> tuple[Wire, set[str]]:
        done: asyncio.Future[tuple[Wire, set[str]]] = \
            asyncio.get_running_loop().create_future()
        self.queue.append((updates, done))
        self._start()
        return await done

    def _start(self) -> None:
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._drain())

    def _chunks(self) -> list[Wire]:
        inv = self.invocation
        if inv is None:
            return []
        return [chunk_to_wire(c) for c in inv.take_chunks(CHUNKS_PER_REQUEST, CHUNK_CHARS)]

    async def _drain(self) -> None:
        while self.queue or (self.invocation is not None and self.invocation.chunks):
            # One caller's updates at least, however many; none when only chunks are due.
            batch = [self.queue.pop(0)] if self.queue else []
            count = sum(len(part) for part, _ in batch)
            while self.queue and count + len(self.queue[0][0]) <= MAX_UPDATES:
                count += len(self.queue[0][0])
                batch.append(self.queue.pop(0))
            updates = [u for part, _ in batch for u in part]
            try:
                answer = await self._request(updates, self._chunks())
            except (BackendError, _Revoked) as e:
                for _, done in batch:
                    done.set_exception(e)
                continue
            sent = {str(u.get("Id")) for u in updates}
            for _, done in batch:
                done.set_result((answer, sent))

    async def _request(self, updates: list[Wire], chunks: list[Wire]) -> Wire:
        if self.broken is not None:
            raise self.broken
        if self.token is None:
            raise _Revoked
        try:
            if self.http is not None:
                answer = await self.http.checkpoint(self.env.arn, self.token, updates,
                                                    uuid.uuid4().hex, chunks)
            else:
                answer = await self.env.backend.checkpoint(self.env.arn, self.token, updates,
                                                           uuid.uuid4().hex)
        except BackendError as e:
            self.failures.append(e)
            if chunks:
                self.broken = e
            raise
        self.token = answer.get("CheckpointToken")
        return answer


CHUNKS_PER_REQUEST = 1000
"""Most stream chunks one checkpoint request carries (as many as the engine appends at once)."""
CHUNK_CHARS = 1024 * 1024
"""Characters of chunk values one request carries at most (beside up to MAX_UPDATES updates,
within the server's MAX_CHECKPOINT_BYTES), unless a single chunk has more."""


async def run_invocation(workflow: Workflow[..., Any], event: Any,
                         backend: Backend | None = None) -> Wire:
    """Run one invocation of `workflow` for the envelope `event`; returns the output to hand
    back (`{"Status", "Result"?, "Error"?}`). Raises `BackendError` when the backend could not
    be reached, so the host fails the invocation and the backend invokes it again."""
    env = _Envelope(event, backend)
    wire_ops = list(env.operations)
    marker = env.marker
    while marker:
        page = await env.backend.get_state(env.arn, env.token, marker)
        wire_ops.extend(page.get("Operations") or [])
        marker = page.get("NextMarker") or ""
    run_id = run_id_of(env.arn)
    execution: Wire = next((o for o in wire_ops if o.get("Type") == "EXECUTION"), {})
    input_payload = (execution.get("ExecutionDetails") or {}).get("InputPayload")
    ops = {op.id: op for op in (operation_from_wire(o, env.millis) for o in wire_ops
                                if o.get("Type") != "EXECUTION")}
    batches = _Batches(env)
    failure = batches.failures

    async def checkpointer(updates: list[OperationUpdate]) -> CheckpointResult:
        answer, sent = await batches.send([update_to_wire(u) for u in updates])
        returned = {o["Id"]: operation_from_wire(o, False)
                    for o in (answer.get("NewExecutionState") or {}).get("Operations") or []}
        for op_id, op in returned.items():  # the backend moved something meanwhile
            if op_id not in sent and op.status in _MOVED:
                moved[op_id] = op
        paused[0] = bool(answer.get(PAUSED))
        return CheckpointResult([returned.get(u.id) or _assumed(u, ops.get(u.id))
                                 for u in updates], False, paused[0])

    moved: dict[str, Operation] = {}
    paused = [False]  # as the last answer said: then no replay begins anything new
    for _ in range(_REPLAYS):
        known = dict(ops)
        inv = Invocation(run_id, workflow.name, _input(input_payload), known)
        batches.carry_chunks(inv)
        try:
            out = await workflow.handler(inv, checkpointer)
            await batches.flush()  # what a body timed out but still running wrote last
        finally:
            batches.stop_carrying()
        if (out.status is not InvocationStatus.PENDING or not moved or batches.token is None
                or paused[0]):
            break
        # It suspended on something the backend has since finished (a short wait that fell
        # due while other branches ran): replay again at once instead of ending PENDING.
        ops.update(known)
        ops.update(moved)
        moved.clear()
    if failure and failure[0].retryable:
        raise failure[0]
    if (failure and failure[0].stale) or batches.token is None:
        return {"Status": "PENDING"}  # a stale or revoked token: a newer invocation owns it
    return output_to_wire(out)


def _input(payload: Any) -> str | None:
    """AWS's invocation input is the event as JSON; Durable's workflows take the same JSON
    (one parameter: its value; several: an array). An empty event means no input."""
    return None if payload in (None, "") else str(payload)


def _assumed(u: OperationUpdate, old: Operation | None) -> Operation:
    """The operation as an update leaves it, for a backend that did not send it back."""
    status = {OperationAction.START: OperationStatus.STARTED,
              OperationAction.SUCCEED: OperationStatus.SUCCEEDED,
              OperationAction.FAIL: OperationStatus.FAILED,
              OperationAction.RETRY: OperationStatus.PENDING,
              OperationAction.CANCEL: OperationStatus.CANCELLED,
              OperationAction.HEARTBEAT: OperationStatus.STARTED}[u.action]
    if u.type in (OperationType.WAIT, OperationType.CALLBACK) and u.action is OperationAction.START:
        status = OperationStatus.STARTED
    return Operation(u.id, u.type, status, u.name, u.parent_id, u.sub_type,
                     attempt=(old.attempt if old else 0), result=u.payload, error=u.error)


def lambda_handler(workflow: Workflow[..., Any]) -> Callable[[Any, Any], Wire]:
    """An AWS Lambda handler (`handler(event, context)`) running `workflow` as a durable
    function. Deploy with durable execution enabled (DurableConfig) and this as the handler."""
    if not isinstance(workflow, Workflow):
        raise UsageError(f"durable.lambda_handler takes a @workflow, got {workflow!r}")

    def handler(event: Any, context: Any = None) -> Wire:
        return _loop().run(run_invocation(workflow, event))
    handler.__name__ = handler.__qualname__ = workflow.name.replace(".", "_")
    handler.workflow = workflow  # type: ignore[attr-defined]
    return handler


_LOOPS = threading.local()


def _loop() -> asyncio.Runner:
    """This thread's event loop, kept between invocations: a warm Lambda container's next
    invocation runs where the last one did (its loop's threads and objects stay warm)."""
    runner: asyncio.Runner | None = getattr(_LOOPS, "runner", None)
    if runner is None:
        runner = _LOOPS.runner = asyncio.Runner()
    return runner


# -- the ASGI app ---------------------------------------------------------------------------------

Servable = Workflow[..., Any] | Callable[[Any, Any], Any]


def serve(*functions: Servable, **named: Servable) -> FunctionApp:
    """An ASGI app serving each workflow (or Lambda-style handler) as a durable function.

    Routes: `POST /NAME` and Lambda's `POST /2015-03-31/functions/NAME/invocations` take one
    envelope each; `POST /` too when one function is served; `GET /` lists them. NAME is a
    workflow's name or a handler's `__name__`; pass `name=fn` to choose one."""
    table: dict[str, Servable] = {}
    for fn in functions:
        table[fn.name if isinstance(fn, Workflow) else getattr(fn, "__name__", "handler")] = fn
    table.update(named)
    if not table:
        raise UsageError("durable.serve needs at least one workflow or handler")
    return FunctionApp(table)


class FunctionApp:
    """The ASGI app `serve` returns. Its web framework is imported at the first ASGI event
    (the server's lifespan, or a request), not by `serve`: a module exporting both
    `serve(...)` and `lambda_handler(...)` then imports in a Lambda deployment package, which
    has no web framework (`durable.serve` needs the server extra)."""

    def __init__(self, table: dict[str, Servable]) -> None:
        self._table = table
        self._app: Starlette | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            with requires_extra("server", "durable.serve"):
                self._app = _starlette_app(self._table)
        await self._app(scope, receive, send)


def _starlette_app(table: dict[str, Servable]) -> Starlette:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def invoke(request: Request) -> Response:
        name = request.path_params.get("name") or (next(iter(table)) if len(table) == 1 else "")
        fn = table.get(name)
        if fn is None:
            return JSONResponse({"errorType": "ResourceNotFoundException", "errorMessage":
                                 f"no function {name!r} here; this app serves: "
                                 f"{', '.join(sorted(table))}"}, status_code=404,
                                headers={"x-amzn-ErrorType": "ResourceNotFoundException"})
        try:
            event = json.loads(await request.body() or b"null")
        except ValueError as e:
            return JSONResponse({"errorType": "InvalidRequestContentException",
                                 "errorMessage": f"the body is not JSON: {e}"}, status_code=400,
                                headers={"x-amzn-ErrorType": "InvalidRequestContentException"})
        try:
            if isinstance(fn, Workflow):
                endpoint = request.headers.get(ENDPOINT_HEADER)
                backend = HttpBackend(endpoint) if endpoint else None
                answer = await run_invocation(fn, event, backend)
            else:
                answer = await asyncio.to_thread(fn, event, _LambdaContext(name))
        except UsageError as e:
            return _function_error(e, 400)
        except Exception as e:  # the function crashed: Lambda's "Unhandled" function error
            return _function_error(e, 200)
        return JSONResponse(answer, headers={"X-Amz-Executed-Version": "$LATEST"})

    async def index(request: Request) -> Response:
        return JSONResponse({"functions": sorted(table)})

    return Starlette(routes=[
        Route("/", index, methods=["GET"]),
        Route("/", invoke, methods=["POST"]),
        Route("/2015-03-31/functions/{name}/invocations", invoke, methods=["POST"]),
        Route("/{name}", invoke, methods=["POST"]),
    ])


def _function_error(e: Exception, status: int) -> Response:
    """Lambda's answer for a function that raised (HTTP 200 with `X-Amz-Function-Error`): the
    invoker counts the invocation failed and invokes the function again later."""
    from starlette.responses import JSONResponse

    error = ErrorObject.from_exception(e)
    body = {"errorType": error.type, "errorMessage": error.message,
            "stackTrace": (error.traceback or "").splitlines()}
    return JSONResponse(body, status_code=status, headers={"X-Amz-Function-Error": "Unhandled"})


class _LambdaContext:
    """What a Lambda-style handler may read of its context outside Lambda."""

    def __init__(self, name: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.aws_request_id = uuid.uuid4().hex
        self.invoked_function_arn = f"arn:aws:lambda:local:000000000000:function:{name}"
        self.memory_limit_in_mb = "128"
        self.log_group_name = self.log_stream_name = name
        self.tenant_id: str | None = None
        self.client_context = self.identity = None

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
