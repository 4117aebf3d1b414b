"""Registered functions, and the worker that invokes them when their runs have work.

A function is a name the engine can invoke: an HTTP endpoint taking the invocation envelope (a
`durable.serve` app, an AWS SDK handler behind any HTTP host, or a Lambda Invoke-shaped URL such
as `http://host/2015-03-31/functions/NAME/invocations`), an AWS Lambda function invoked through
Lambda's signed Invoke API (lambda_target.py), an in-process handler (`module:fn`), or a
JavaScript handler the server hosts with the machine's node (node.py).
Runs of a function are runs whose workflow is the function's name. `FunctionWorker` serves all
of them with the engine's ordinary `Worker`: one invocation in flight per run (the lease), a new
one whenever a wait, retry, callback or child run completes. An invocation that fails to run
(the function unreachable, timed out, throttled, or crashed without answering: `InvocationError`)
never fails the run: it is retried with a capped backoff, without limit unless the function has a
retry deadline, and at most `concurrency` invocations of a function are in flight per server.
Between invocations nothing of the function runs and no request is open: a waiting run is rows
in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from durable.engine import machine
from durable.engine.worker import Worker
from durable.errors import InvocationError, UsageError
from durable.invoke import dataplane, keepalive, lambda_target, node
from durable.invoke.contract import (
    ContractError,
    Wire,
    function_name,
    output_from_wire,
    run_id_of,
)
from durable.invoke.lambda_target import LambdaFunction, LambdaTarget
from durable.model import (
    RETRY_INVOCATIONS,
    Checkpointer,
    ErrorObject,
    Invocation,
    InvocationOutput,
    InvocationRetry,
    WorkflowHandler,
)
from durable.sdk.workflow import Workflow
from durable.store import Store, Tx

log = logging.getLogger("durable.functions")
T = TypeVar("T")

INVOCATION_TIMEOUT = 900.0
"""Longest one invocation may take (Lambda's 15 minutes); past it the invocation is retried."""
ENDPOINT_HEADER = "X-Durable-Endpoint"
"""Tells a function the base URL of the server that invoked it, to checkpoint back to."""


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A registered function: exactly one of `url` (HTTP), `handler` (`module:attr`),
    `lambda_function` (AWS Lambda, with its qualifier and region) and `node` (an absolute
    `FILE:EXPORT` the server hosts with node)."""

    name: str
    url: str | None = None
    handler: str | None = None
    execution_timeout: float | None = None
    retry_deadline: float | None = None  # seconds of failing invocations before parking the run
    concurrency: int | None = None  # invocations in flight at once per server (None: no limit)
    lambda_function: str | None = None
    lambda_qualifier: str | None = None
    lambda_region: str | None = None
    node: str | None = None

    def __post_init__(self) -> None:
        if function_name(self.name) != self.name:
            raise UsageError(f"function name {self.name!r} may not carry a qualifier or an ARN")
        if [self.url, self.handler, self.lambda_function, self.node].count(None) != 3:
            raise UsageError(f"function {self.name!r}: give exactly one of --url URL (an HTTP "
                             "endpoint), --handler module:fn (in-process), --lambda "
                             "FUNCTION_NAME_OR_ARN (AWS Lambda) and --node FILE[:EXPORT] "
                             "(JavaScript, hosted with node)")
        if self.lambda_function is None and (self.lambda_qualifier or self.lambda_region):
            raise UsageError(f"function {self.name!r}: --qualifier and --region go with --lambda")
        with _named(self.name):
            self.lambda_target()
        if self.url is not None and (urlsplit(self.url).scheme not in ("http", "https")
                                     or not urlsplit(self.url).netloc):
            raise UsageError(f"function {self.name!r}: {self.url!r} is not an http(s) URL, "
                             "e.g. http://127.0.0.1:9000/ or "
                             "http://host/2015-03-31/functions/NAME/invocations")
        if self.handler is not None and ":" not in self.handler:
            raise UsageError(f"function {self.name!r}: handler {self.handler!r} must be "
                             "module:attribute, e.g. app:handler")
        if self.execution_timeout is not None and self.execution_timeout <= 0:
            raise UsageError(f"function {self.name!r}: the execution timeout must be positive")
        if self.retry_deadline is not None and self.retry_deadline <= 0:
            raise UsageError(f"function {self.name!r}: the retry deadline must be positive")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"function {self.name!r}: the concurrency limit must be at least 1")

    def invokes(self) -> str:
        """What it invokes, as `durable functions` shows it."""
        if self.node is not None:
            return f"node {self.node}"
        return self.url or self.handler or str(self.lambda_target())

    def lambda_target(self) -> LambdaTarget | None:
        if self.lambda_function is None:
            return None
        return LambdaTarget.parse(self.lambda_function, self.lambda_qualifier,
                                  self.lambda_region)


@contextlib.contextmanager
def _named(function: str) -> Any:
    """Name the function in a UsageError raised within."""
    try:
        yield
    except UsageError as e:
        raise UsageError(f"function {function!r}: {e}") from None


NODE_PREFIX = "node:"
"""A --node function is stored in the handler column as `node:/abs/file.js:export`: no Python
`module:attr` starts so (an attribute cannot start with `/`), and it needs no column of its own."""


def _handler_column(spec: FunctionSpec) -> str | None:
    return spec.handler if spec.node is None else NODE_PREFIX + spec.node


def _from_row(row: tuple[Any, ...]) -> FunctionSpec:
    spec = FunctionSpec(*row)
    if spec.handler is not None and spec.handler.startswith(NODE_PREFIX + "/"):
        return replace(spec, handler=None, node=spec.handler.removeprefix(NODE_PREFIX))
    return spec


def register(store: Store, spec: FunctionSpec) -> None:
    """Add or replace a function; servers pick it up at once (the write notifies them). Its
    parked runs get another try: registering again is how a fixed function is announced."""
    def write(tx: Tx) -> None:
        now = time.time()
        tx.put_function(spec.name, spec.url, _handler_column(spec), spec.execution_timeout,
                        spec.retry_deadline, spec.concurrency, now, spec.lambda_function,
                        spec.lambda_qualifier, spec.lambda_region)
        machine.unpark(tx, tx.parked_runs([spec.name]), now)
    store.write_sync(write)


def check(spec: FunctionSpec, store: Store, clock: Callable[[], float]) -> None:
    """Build here what a server builds to serve `spec`, so that a registration that cannot
    work (a handler that does not import; Lambda without boto3, or in a region it does not
    know; node, the file or its export missing) is refused now rather than logged by the
    server later."""
    if spec.handler is not None:
        load_handler(spec, store, clock)
    elif spec.node is not None:
        node.check(spec.name, spec.node)
    elif (target := spec.lambda_target()) is not None:
        with _named(spec.name):
            lambda_target.check(target)


def registered(store: Store) -> list[FunctionSpec]:
    return [_from_row(row) for row in store.read(lambda tx: tx.functions())]


def unregister(store: Store, name: str) -> bool:
    """Remove a function; its runs wait until it is registered again. False: there was none."""
    return store.write_sync(lambda tx: tx.delete_function(name))


# -- invokers --------------------------------------------------------------------------------------

class HttpFunction:
    """Invokes a function by POSTing the envelope; its JSON answer is the invocation output.

    Only an answer counts as the function's: one it could not give (no connection, a timeout,
    a 429, a 5xx or Lambda's `X-Amz-Function-Error` instead of an invocation output) raises
    `InvocationError`, which is retried, never fails the run."""

    def __init__(self, spec: FunctionSpec, store: Store, pool: keepalive.Pool,
                 endpoint: Callable[[], str | None], timeout: float) -> None:
        assert spec.url is not None
        self.spec, self.url, self.store, self.pool = spec, spec.url, store, pool
        self.endpoint, self.timeout = endpoint, timeout

    @property
    def name(self) -> str:
        return self.spec.name

    async def handler(self, inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        endpoint = self.endpoint()
        if endpoint is None:
            raise InvocationError(ErrorObject(
                "Server.AddressUnknown", f"this server does not know the URL function "
                f"{self.name!r} reaches it by, to checkpoint to: run it with `durable server`, "
                "or give create_app public_url= (or set DURABLE_PUBLIC_URL)"))
        envelope = await self.store.awrite(
            lambda tx: dataplane.open_invocation(tx, inv.run_id, inv.token))
        try:
            response = await self.pool.request(
                "POST", self.url, json.dumps(envelope).encode(), timeout=self.timeout,
                headers={ENDPOINT_HEADER: endpoint,
                         "X-Amz-Invocation-Type": "RequestResponse"})
        except TimeoutError as e:
            raise self._failed("Function.TimedOut", f"no answer within {self.timeout:g} s "
                               f"({type(e).__name__})") from None
        except (OSError, http.client.HTTPException) as e:
            raise self._failed("Function.Unreachable",
                               f"could not invoke it: {type(e).__name__}: {e}") from None
        if response.status == 429:
            raise self._failed("Function.Throttled", f"HTTP 429: {response.text[:500]}")
        if response.status >= 400 or "x-amz-function-error" in response.headers:
            raise self._failed("Function.Error", f"answered HTTP {response.status} "
                               f"without an invocation output: {response.text[:500]}")
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = None
        return output_from_wire(answer)

    def _failed(self, kind: str, what: str) -> InvocationError:
        return InvocationError(ErrorObject(kind, f"function {self.name!r} at {self.url}: {what}"))


class WorkflowFunction:
    """A Durable workflow registered as an in-process function: no wire at all."""

    def __init__(self, spec: FunctionSpec, workflow: Workflow[..., Any]) -> None:
        self.spec, self.workflow = spec, workflow

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def handler(self) -> WorkflowHandler:
        return self.workflow.handler


class LambdaHandlerFunction:
    """An in-process Lambda-style handler `fn(event, context)`: an AWS SDK
    `@durable_execution` handler or a `durable.lambda_handler`. It gets the envelope with a
    service client that checkpoints straight into the store (AWS's SDK takes one through
    `DurableExecutionInvocationInputWithClient`), and runs in a thread, as it blocks."""

    def __init__(self, spec: FunctionSpec, fn: Callable[[Any, Any], Any], store: Store,
                 clock: Callable[[], float]) -> None:
        self.spec, self.fn, self.store, self.clock = spec, fn, store, clock

    @property
    def name(self) -> str:
        return self.spec.name

    async def handler(self, inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        envelope = await self.store.awrite(
            lambda tx: dataplane.open_invocation(tx, inv.run_id, inv.token))
        try:
            answer = await asyncio.to_thread(self.fn, self._event(envelope), _Context(self.name))
        except Exception as e:  # a Lambda handler that raises is retried by Lambda, too
            raise InvocationError(ErrorObject.from_exception(e)) from None
        return output_from_wire(answer)

    def _event(self, envelope: Wire) -> Any:
        try:
            from aws_durable_execution_sdk_python.execution import (
                DurableExecutionInvocationInput,
                DurableExecutionInvocationInputWithClient,
            )
        except ImportError:
            raise InvocationError(ErrorObject(
                "Function.Misconfigured", f"function {self.name!r} is a Lambda-style handler: "
                "running it in-process needs aws-durable-execution-sdk-python installed")) from None
        event = DurableExecutionInvocationInput.from_json_dict(envelope)
        with_client = DurableExecutionInvocationInputWithClient
        return with_client.from_durable_execution_invocation_input(
            event, StoreServiceClient(self.store, self.clock))


@dataclass(frozen=True, slots=True)
class _Context:
    """The bits of a Lambda context an in-process handler may read."""

    function_name: str
    aws_request_id: str = "local"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return int(INVOCATION_TIMEOUT * 1000)


class StoreServiceClient:
    """AWS SDK's `DurableServiceClient` (lambda_service.py) over the store: an in-process
    handler checkpoints with its token through the same data plane as an HTTP one."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store, self.clock = store, clock

    def checkpoint(self, durable_execution_arn: str, checkpoint_token: str, updates: list[Any],
                   client_token: str | None) -> Any:
        from aws_durable_execution_sdk_python.lambda_service import CheckpointOutput
        wire = [u.to_dict() for u in updates]
        answer = json.loads(self._call(lambda tx: dataplane.checkpoint(
            tx, run_id_of(durable_execution_arn), checkpoint_token, wire, client_token,
            self.clock())))
        answer["NewExecutionState"]["Operations"] = [
            _datetimes(op) for op in answer["NewExecutionState"]["Operations"]]
        return CheckpointOutput.from_dict(answer)

    def get_execution_state(self, durable_execution_arn: str, checkpoint_token: str,
                            next_marker: str, max_items: int = 1000) -> Any:
        from aws_durable_execution_sdk_python.lambda_service import StateOutput
        answer = self._call(lambda tx: dataplane.get_state(
            tx, run_id_of(durable_execution_arn), checkpoint_token, next_marker, max_items))
        answer["Operations"] = [_datetimes(op) for op in answer["Operations"]]
        return StateOutput.from_dict(answer)

    def _call(self, fn: Callable[[Any], T]) -> T:
        from aws_durable_execution_sdk_python.exceptions import CheckpointError
        try:
            return self.store.write_sync(fn)
        except ContractError as e:
            raise CheckpointError(str(e)) from None


def _datetimes(op: Mapping[str, Any]) -> Wire:
    """An API-shaped operation (epoch seconds) with datetimes, as boto3 would hand it over."""
    out = dict(op)
    for key in ("StartTimestamp", "EndTimestamp"):
        if key in out:
            out[key] = datetime.fromtimestamp(out[key], UTC)
    for details, key in (("StepDetails", "NextAttemptTimestamp"),
                         ("WaitDetails", "ScheduledEndTimestamp")):
        if key in out.get(details, {}):
            out[details] = {**out[details], key: datetime.fromtimestamp(out[details][key], UTC)}
    return out


def load_handler(spec: FunctionSpec, store: Store,
                 clock: Callable[[], float]) -> WorkflowFunction | LambdaHandlerFunction:
    """Import `module:attr` (from the working directory too) as an in-process function."""
    assert spec.handler is not None
    module_name, _, attr = spec.handler.partition(":")
    try:
        with _cwd_on_path():
            target = getattr(importlib.import_module(module_name), attr)
    except Exception as e:  # whatever the module raises as it is imported is the reason
        raise UsageError(f"function {spec.name!r}: cannot load handler {spec.handler!r}: "
                         f"{type(e).__name__}: {e}") from None
    if isinstance(target, Workflow):
        return WorkflowFunction(spec, target)
    if not callable(target):
        raise UsageError(f"function {spec.name!r}: {spec.handler!r} is neither a @workflow nor "
                         "a handler(event, context)")
    return LambdaHandlerFunction(spec, target, store, clock)


@contextlib.contextmanager
def _cwd_on_path() -> Any:
    import sys
    added = "" not in sys.path
    if added:
        sys.path.insert(0, "")
    try:
        yield
    finally:
        if added:
            sys.path.remove("")


# -- the worker ------------------------------------------------------------------------------------

Servable = (HttpFunction | LambdaFunction | WorkflowFunction | LambdaHandlerFunction
            | node.NodeFunction)


class FunctionWorker:
    """Serves the runs of every registered function, following the functions table as it
    changes (a `durable functions add` in another process notifies through the store).

    `endpoint` is this server's base URL as functions reach it (sent in `X-Durable-Endpoint`);
    it may change while serving (a server that learns its address from its first request), and
    while it is None HTTP functions are not invoked (their runs retry, showing why).
    `invocation_retry`: how invocations that fail to run are retried; a function's own retry
    deadline replaces the policy's. `clock` gives the times of its invocations and of
    in-process handlers' checkpoints. `token`: the server's, which the node hosts it starts
    checkpoint with.
    """

    def __init__(self, store: Store, endpoint: str | None, *, concurrency: int = 100,
                 invocation_timeout: float = INVOCATION_TIMEOUT, lease_seconds: float = 30.0,
                 invocation_retry: InvocationRetry = RETRY_INVOCATIONS,
                 clock: Callable[[], float] = time.time, token: str | None = None) -> None:
        self.store, self.endpoint, self.timeout = store, endpoint, invocation_timeout
        self.token = token
        self.retry = invocation_retry
        self.worker = Worker([], store, concurrency=concurrency, lease_seconds=lease_seconds,
                             invocation_retry=invocation_retry, clock=clock)
        self.pool = keepalive.Pool(threads=concurrency)  # kept-alive connections to functions
        self.functions: dict[str, Servable] = {}
        self._specs: dict[str, FunctionSpec] = {}
        self._handlers: dict[str, WorkflowHandler] = {}  # with their concurrency limits
        self._changed = asyncio.Event()  # a commit happened: the table may have changed
        self._ready = asyncio.Event()  # there is at least one function to serve
        self._stopping = False

    def reload(self, specs: list[FunctionSpec] | None = None) -> None:
        """Bring the served functions in line with the table; a bad handler is logged and
        skipped so that one broken registration does not stop the others."""
        wanted = {s.name: s for s in (registered(self.store) if specs is None else specs)}
        for name, spec in wanted.items():
            if self._specs.get(name) == spec:
                continue
            try:
                made = self._make(spec)
                self._close(name)
                self.functions[name] = made
                self._handlers[name] = _limited(made.handler, spec.concurrency)
                self._specs[name] = spec
            except UsageError as e:
                log.error("%s", e)
        for name in set(self.functions) - set(wanted):
            self._close(name)
            del self.functions[name], self._handlers[name], self._specs[name]
        self.worker.handlers = dict(self._handlers)
        self.worker.retries = {
            name: replace(self.retry, deadline=spec.retry_deadline)
            for name, spec in self._specs.items() if spec.retry_deadline is not None}
        # For runs the data plane did not give their deadline: a Durable workflow's child
        # invoking the function by name, a run started over Durable's own API.
        self.worker.timeouts = {name: spec.execution_timeout for name, spec in self._specs.items()
                                if spec.execution_timeout is not None}
        if self.worker.handlers:
            self._ready.set()
        else:
            self._ready.clear()
        self.worker.wake()

    def _close(self, name: str) -> None:
        """Stop what a replaced or removed function left running (a node host)."""
        old = self.functions.get(name)
        if isinstance(old, node.NodeFunction):
            old.close()

    def _make(self, spec: FunctionSpec) -> Servable:
        if spec.url is not None:
            return HttpFunction(spec, self.store, self.pool, lambda: self.endpoint,
                                self.timeout)
        if spec.node is not None:
            def via(url: str) -> WorkflowHandler:
                return HttpFunction(replace(spec, url=url, node=None), self.store, self.pool,
                                    lambda: self.endpoint, self.timeout).handler
            return node.NodeFunction(spec.name, spec.node, lambda: self.endpoint, self.token,
                                     via)
        if (target := spec.lambda_target()) is not None:
            with _named(spec.name):
                return LambdaFunction(spec.name, target, self.store, self.timeout,
                                      spec.concurrency or self.worker.concurrency)
        return load_handler(spec, self.store, self.worker.clock)

    async def run(self) -> None:
        """Serve until `stop()`. With no function registered the worker does not poll at all:
        an empty list of workflows would mean every workflow to it."""
        loop = asyncio.get_running_loop()

        def changed() -> None:
            loop.call_soon_threadsafe(self._changed.set)
        unsubscribe = self.store.subscribe(changed)
        self.reload(await asyncio.to_thread(registered, self.store))
        watcher = asyncio.create_task(self._watch())
        try:
            while not self._stopping:
                if not self.worker.handlers:
                    await self._ready.wait()
                    continue
                await self.worker.run_async(
                    until=lambda: self._stopping or not self.worker.handlers)
        finally:
            unsubscribe()
            watcher.cancel()
            for name in list(self.functions):
                self._close(name)
            self.pool.close()

    async def _watch(self) -> None:
        """Reload when the table changed; looked at after commits, at most twice a second."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            specs = await asyncio.to_thread(registered, self.store)
            if {s.name: s for s in specs} != self._specs:
                self.reload(specs)
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        self._stopping = True
        self.worker.stop()
        self._ready.set()


def _limited(handler: WorkflowHandler, limit: int | None) -> WorkflowHandler:
    """`handler` with at most `limit` invocations in flight at once; the others wait their
    turn holding their run's lease (the worker renews it), so no other server takes them."""
    if limit is None:
        return handler
    slots = asyncio.Semaphore(limit)

    async def limited(inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        async with slots:
            return await handler(inv, checkpointer)
    return limited
