"""OpenTelemetry: spans for the start, each invocation, each step attempt and the whole run, one
trace from `Client.start` through every invocation and into child workflows; nothing at all when
tracing is off. In-process, with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import durable
from durable.engine import telemetry
from durable.engine.worker import Worker
from tests.apps.server_app import label, pipeline


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.enable(provider)
    yield exporter
    telemetry.disable()


def by_name(spans: tuple[ReadableSpan, ...], prefix: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name.startswith(prefix)]


async def test_one_trace_from_start_through_steps_and_child_runs(
        spans: InMemorySpanExporter, db_url: str) -> None:
    client = durable.Client(db_url)
    try:
        handle = await client.start_async(pipeline, "s3", id="traced")
        worker = Worker([pipeline, label], client.store)

        def waiting() -> bool:
            return any(op.callback_id and op.status.value == "STARTED"
                       for op in client.operations("traced"))
        await worker.run_async(until=waiting)
        callback = next(op.callback_id for op in client.operations("traced") if op.callback_id)
        client.complete_callback(callback, "fine")
        await worker.run_async(until=lambda: client.get("traced").status.value != "RUNNING")
        assert handle.result()["review"] == "fine"
    finally:
        client.close()
    done = spans.get_finished_spans()
    (start,) = by_name(done, "durable.start pipeline")
    trace_id = start.context.trace_id
    assert all(s.context.trace_id == trace_id for s in done), [s.name for s in done]
    invocations = by_name(done, "durable.invocation pipeline")
    assert len(invocations) >= 3  # it suspended for the retry backoffs, the sleep, the callback
    assert all(s.parent is not None and s.parent.span_id == start.context.span_id
               for s in invocations)
    fetches = by_name(done, "durable.step flaky_fetch")
    attrs = [dict(s.attributes or {}) for s in fetches]
    assert [a["durable.attempt"] for a in attrs] == [1, 2, 3]
    assert [a["durable.step.status"] for a in attrs] == ["PENDING", "PENDING", "SUCCEEDED"]
    assert fetches[0].status.status_code.name == "ERROR"
    assert attrs[0]["durable.run_id"] == "traced" and attrs[0]["durable.operation_id"]
    invocation_ids = {s.context.span_id for s in invocations}
    assert all(s.parent is not None and s.parent.span_id in invocation_ids for s in fetches)
    (child,) = by_name(done, "durable.invocation label")  # the child run continues the trace
    assert child.parent is not None and child.parent.span_id in invocation_ids
    (run,) = by_name(done, "durable.run pipeline")
    assert dict(run.attributes or {})["durable.run.status"] == "SUCCEEDED"
    assert run.start_time is not None and run.end_time is not None
    assert run.start_time <= start.end_time  # type: ignore[operator]


def test_off_means_untouched_handlers(db_url: str) -> None:
    telemetry.disable()
    worker = Worker([pipeline], db_url)
    try:
        assert worker.handlers["pipeline"] == pipeline.handler  # not wrapped: no cost per step
    finally:
        worker.store.close()
    with telemetry.starting("pipeline", "r") as context:
        assert context is None


@pytest.mark.parametrize("env, on", [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_standard_variables_turn_it_on(env: dict[str, str], on: bool) -> None:
    assert telemetry._wanted(env) is on
