"""OpenTelemetry tracing of runs, invocations and steps: opt-in, and free when off.

Turned on by the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`, `console`; `none` is off) or
an `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, unless
`OTEL_SDK_DISABLED=true`. `OTEL_SERVICE_NAME` and the other SDK variables apply as usual. A
program that set up its own tracer provider keeps it; `enable()` turns tracing on from code.

What is traced (the `durable.*` attributes carry run id, workflow, operation id and attempt):
- `durable.start <workflow>`: the call that started the run, a child of the caller's span. Its
  context is stored with the run, so every invocation, wherever it runs, continues that trace,
  and a child workflow continues the trace of the parent invocation that started it.
- `durable.invocation <workflow>`: each time the engine runs the workflow's code.
- `durable.step <name>`: each step attempt, under its invocation, timed from the attempt's start
  to its checkpoint (made from the checkpoint's answer, so a step's own spans, e.g. of an
  instrumented HTTP client, nest under the invocation rather than the step).
- `durable.run <workflow>`: the whole run, created to ended, emitted when it ends.

When off nothing here runs on the step path: the worker's handlers are not wrapped at all
(`instrument` returns them as they are) and a start costs one check of a cached flag.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from durable.model import (
    Checkpointer,
    CheckpointResult,
    Invocation,
    InvocationOutput,
    InvocationStatus,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    WorkflowHandler,
)
from durable.store import Store, Tx

if TYPE_CHECKING:
    from opentelemetry.context import Context as OtelContext
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger("durable.telemetry")

CONTEXT_KEY = "__durable.trace_context"
"""Where a run's trace context is kept: a reserved key among the run's published values."""

_STEP_OUTCOMES = (OperationStatus.SUCCEEDED, OperationStatus.FAILED, OperationStatus.PENDING)


@dataclass(slots=True)
class _Config:
    tracer: Tracer | None = None
    decided: bool = False


_config = _Config()


def tracer() -> Tracer | None:
    """The tracer when tracing is on, else None; the environment is read once per process."""
    if not _config.decided:
        _config.decided = True
        _config.tracer = _from_environment()
    return _config.tracer


def enable(provider: Any = None) -> None:
    """Trace from now on with `provider` (an SDK TracerProvider), or the global one. Workers
    created afterwards are instrumented; those already serving are not."""
    from opentelemetry import trace

    _config.tracer = (provider or trace.get_tracer_provider()).get_tracer("durable")
    _config.decided = True


def disable() -> None:
    _config.tracer, _config.decided = None, True


def _wanted(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def _from_environment() -> Tracer | None:
    if not _wanted(os.environ):
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        log.warning("OTEL_* variables ask for tracing, but OpenTelemetry is not installed: "
                    "pip install 'durable-serverless[otel]'; tracing stays off")
        return None
    provider = trace.get_tracer_provider()
    if type(provider).__name__ == "ProxyTracerProvider":  # nobody configured one: we do
        provider = _sdk_provider()
        if provider is None:
            return None
        trace.set_tracer_provider(provider)
    return provider.get_tracer("durable")


def _sdk_provider() -> Any:
    """A TracerProvider exporting where OTEL_TRACES_EXPORTER says (default: otlp)."""
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("tracing needs opentelemetry-sdk: pip install 'durable-serverless[otel]'")
        return None
    resource = Resource.create({} if os.environ.get("OTEL_SERVICE_NAME")
                               else {"service.name": "durable"})
    provider = TracerProvider(resource=resource)
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").lower()
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name == "console":
            # stderr: stdout carries what a command prints as its result (`durable run`)
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        elif name == "otlp":
            exporter = _otlp_exporter()
            if exporter is not None:
                provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported here (otlp, console)", name)
    atexit.register(provider.shutdown)
    return provider


def _otlp_exporter() -> Any:
    """The OTLP exporter of whichever OTLP package is installed (HTTP first, then gRPC)."""
    for protocol in ("http", "grpc"):
        try:
            module = importlib.import_module(
                f"opentelemetry.exporter.otlp.proto.{protocol}.trace_exporter")
        except ImportError:
            continue
        return module.OTLPSpanExporter()
    log.warning("OTLP export needs opentelemetry-exporter-otlp; no spans are exported")
    return None


# -- starting a run ----------------------------------------------------------------------------

@contextlib.contextmanager
def starting(workflow: str, run_id: str,
             headers: Mapping[str, str] | None = None) -> Iterator[str | None]:
    """Around the start of a run: yields the trace context to store with it (see `save`), or
    None when tracing is off. `headers` of an HTTP request may carry the caller's context."""
    t = tracer()
    if t is None:
        yield None
        return
    from opentelemetry import propagate

    parent = None if headers is None else propagate.extract(headers)
    with t.start_as_current_span(f"durable.start {workflow}", context=parent,
                                 kind=_kind("PRODUCER"),
                                 attributes={"durable.run_id": run_id,
                                             "durable.workflow": workflow}):
        yield _carrier()


def save(tx: Tx, run_id: str, context: str | None, now: float | None = None) -> None:
    """Store `context` (from `starting`) with the run, in the transaction that creates it."""
    if context is not None:
        tx.set_published(run_id, CONTEXT_KEY, context, time.time() if now is None else now)


def _carrier() -> str:
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier)


def _extract(stored: str | None) -> OtelContext | None:
    from opentelemetry import propagate

    if not stored:
        return None
    try:
        return propagate.extract(json.loads(stored))
    except ValueError:
        return None


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind[name]


def _ns(ts: float) -> int:
    return int(ts * 1e9)


# -- serving runs ------------------------------------------------------------------------------

def instrument(handlers: dict[str, WorkflowHandler], store: Store) -> dict[str, WorkflowHandler]:
    """The worker's handlers, traced when tracing is on; the very same dict when it is off."""
    t = tracer()
    if t is None:
        return handlers
    return {name: _Traced(t, handler, store).invoke for name, handler in handlers.items()}


@dataclass(frozen=True, slots=True)
class _Traced:
    tracer: Tracer
    handler: WorkflowHandler
    store: Store

    async def invoke(self, inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        from opentelemetry import trace

        run_id = inv.run_id
        run, stored = await self.store.aread(
            lambda tx: (tx.get_run(run_id), tx.get_published(run_id, CONTEXT_KEY)))
        parent = _extract(stored[0] if stored else None)
        attrs = {"durable.run_id": run_id, "durable.workflow": inv.workflow}
        with self.tracer.start_as_current_span(f"durable.invocation {inv.workflow}",
                                               context=parent, kind=_kind("CONSUMER"),
                                               attributes=attrs) as span:
            here = trace.set_span_in_context(span)
            out = await self.handler(inv, _StepSpans(self, inv, here).checkpoint(checkpointer))
            span.set_attribute("durable.invocation.status", out.status.value)
            if out.error is not None:
                _fail(span, f"{out.error.type}: {out.error.message}")
        ended = out.status is not InvocationStatus.PENDING and out.continue_as_new is None
        if ended and run is not None:
            self._run_span(run.created_at, inv, out, parent)
        return out

    def _run_span(self, created_at: float, inv: Invocation, out: InvocationOutput,
                  parent: OtelContext | None) -> None:
        status = "STOPPED" if out.stopped else out.status.value
        span = self.tracer.start_span(
            f"durable.run {inv.workflow}", context=parent, start_time=_ns(created_at),
            attributes={"durable.run_id": inv.run_id, "durable.workflow": inv.workflow,
                        "durable.run.status": status})
        if out.error is not None:
            _fail(span, f"{out.error.type}: {out.error.message}")
        span.end()


@dataclass(frozen=True, slots=True)
class _StepSpans:
    traced: _Traced
    inv: Invocation
    context: OtelContext

    def checkpoint(self, checkpointer: Checkpointer) -> Checkpointer:
        async def traced(updates: list[OperationUpdate]) -> CheckpointResult:
            await self._hand_down(updates)
            result = await checkpointer(updates)
            self._spans(updates, result)
            return result
        return traced

    async def _hand_down(self, updates: list[OperationUpdate]) -> None:
        """Child runs about to start continue this invocation's trace: their context is stored
        before the checkpoint creates them, so no worker can invoke one without it."""
        children = [u.child.run_id for u in updates
                    if u.child is not None and u.action is OperationAction.START]
        if not children:
            return
        from opentelemetry import propagate

        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=self.context)
        stored = json.dumps(carrier)

        def save_all(tx: Tx) -> None:
            for child in children:
                save(tx, child, stored)
        await self.traced.store.awrite(save_all)

    def _spans(self, updates: list[OperationUpdate], result: CheckpointResult) -> None:
        started = {u.id: u.started_at for u in updates
                   if u.type is OperationType.STEP and u.action is not OperationAction.START}
        now = time.time()
        for op in result.operations:
            if (op.id not in started or op.sub_type != SubType.STEP
                    or op.status not in _STEP_OUTCOMES):
                continue
            span = self.traced.tracer.start_span(
                f"durable.step {op.name}", context=self.context,
                start_time=_ns(started[op.id] or now),
                attributes={"durable.run_id": self.inv.run_id, "durable.operation_id": op.id,
                            "durable.step": op.name or "", "durable.attempt": op.attempt,
                            "durable.step.status": op.status.value})
            if op.error is not None and op.status is not OperationStatus.SUCCEEDED:
                _fail(span, f"{op.error.type}: {op.error.message}")
            span.end(end_time=_ns(now))


def _fail(span: Span, description: str) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, description))
