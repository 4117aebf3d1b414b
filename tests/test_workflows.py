"""Workflow semantics, in process: what a user's code sees from each durable operation."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pydantic
import pytest

import durable
from durable import (
    CallbackFailed,
    Cancelled,
    Context,
    ExecutionStatus,
    RetryPolicy,
    StepFailed,
    WaitTimeout,
    step,
    workflow,
)
from durable.engine import machine
from durable.engine.worker import pid_scope, serving_here
from durable.errors import SerializationError
from durable.model import ErrorObject, EventType, OperationStatus, OperationType
from durable.sdk.serializer import DEFAULT_SERIALIZER
from durable.store.runs import Fence
from tests.kit import wait_until_async

FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)


@asynccontextmanager
async def serving(client: durable.Client, *wfs: durable.Workflow[..., Any]) -> AsyncIterator[None]:
    worker = durable.Worker(wfs, client.store)
    task = asyncio.create_task(worker.run_async())
    try:
        yield
    finally:
        worker.stop()
        await task


async def finish(client: durable.Client, run_id: str,
                 timeout: float = 10) -> durable.RunHandle[Any]:
    await asyncio.to_thread(client.wait, run_id, timeout)
    return client.handle(run_id)


async def run_to_end(client: durable.Client, wf: durable.Workflow[..., Any], *args: Any) -> Any:
    handle = client.start(wf, *args)
    async with serving(client, wf):
        await finish(client, handle.run_id)
    return handle


# -- steps ------------------------------------------------------------------------------------

async def test_completed_steps_return_recorded_results_after_a_suspension(client):
    calls: list[str] = []

    def sync_step(x: int) -> int:
        calls.append("sync")
        return x + 1

    @step
    async def async_step(x: int) -> int:
        calls.append("async")
        return x * 2

    @workflow
    async def wf(ctx: Context, x: int) -> int:
        a = await ctx.step(sync_step, x)
        b = await async_step(a)
        await ctx.sleep(0.05)  # forces a second invocation that replays both steps
        return a + b

    handle = await run_to_end(client, wf, 1)
    assert handle.result() == 6
    assert calls == ["sync", "async"]
    assert sum(e.type == "InvocationCompleted" for e in client.history(handle.run_id)) == 2


async def test_failed_step_is_retried_with_backoff_then_succeeds(client):
    attempts: list[int] = []

    @step(retry=FAST)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "ok"

    @workflow
    async def wf(ctx: Context) -> str:
        return await flaky()

    handle = await run_to_end(client, wf)
    assert handle.result() == "ok"
    failures = [e for e in client.history(handle.run_id) if e.type == "StepFailed"]
    assert [f.details["retry"] for f in failures] == [True, True]
    assert all(f.details["next_attempt_at"] > f.timestamp for f in failures)


async def test_step_failing_for_good_raises_step_failed_with_original_error(client):
    @workflow
    async def wf(ctx: Context) -> dict[str, Any]:
        def boom() -> None:
            raise KeyError("missing")
        try:
            await ctx.step(boom, retry=FAST)
        except StepFailed as e:
            return {"type": e.error_type, "message": e.error_message,
                    "has_tb": "raise KeyError" in (e.traceback or "")}
        return {}

    handle = await run_to_end(client, wf)
    assert handle.result() == {"type": "KeyError", "message": "'missing'", "has_tb": True}


async def test_non_retryable_error_fails_the_step_on_first_attempt(client):
    calls = []

    @workflow
    async def wf(ctx: Context) -> None:
        def bad() -> None:
            calls.append(1)
            raise ValueError("bad input")
        await ctx.step(bad, retry=RetryPolicy(max_attempts=5, non_retryable=(ValueError,)))

    handle = await run_to_end(client, wf)
    run = client.get(handle.run_id)
    assert run.status is ExecutionStatus.FAILED
    assert run.error is not None and run.error.type == "StepFailed"
    assert calls == [1]


async def test_at_most_once_step_checkpoints_its_start_before_the_body(client):
    @workflow
    async def wf(ctx: Context) -> int:
        return await ctx.step(lambda: 7, semantics="at_most_once")

    handle = await run_to_end(client, wf)
    types = [e.type for e in client.history(handle.run_id)]
    assert types.index("StepStarted") < types.index("StepSucceeded")
    assert handle.result() == 7


async def test_step_timeout_counts_as_a_failed_attempt(client):
    @workflow
    async def wf(ctx: Context) -> str:
        async def slow() -> None:
            await asyncio.sleep(5)
        try:
            await ctx.step(slow, timeout=0.05, retry=durable.RetryPolicy(max_attempts=1))
        except StepFailed as e:
            return e.error_type
        return "no"

    assert (await run_to_end(client, wf)).result() == "StepTimeout"


async def test_idempotency_key_is_stable_across_retries(client):
    keys: list[str] = []

    @workflow
    async def wf(ctx: Context) -> None:
        def charge() -> None:
            keys.append(ctx.idempotency_key)
            if len(keys) < 2:
                raise TimeoutError("gateway")
        await ctx.step(charge, retry=FAST)
        with pytest.raises(durable.UsageError):
            _ = ctx.idempotency_key

    handle = await run_to_end(client, wf)
    assert client.get(handle.run_id).status is ExecutionStatus.SUCCEEDED
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith(handle.run_id)


# -- values and serialization -----------------------------------------------------------------

class Money(pydantic.BaseModel):
    amount: Decimal
    currency: str


@dataclasses.dataclass
class Parcel:
    id: uuid.UUID
    sent: datetime
    label: bytes


async def test_typed_values_round_trip_through_checkpoints(client):
    parcel = Parcel(uuid.uuid4(), datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), b"\x00\xffzip")

    def make_money() -> Money:
        return Money(amount=Decimal("10.05"), currency="EUR")

    def make_parcel() -> Parcel:
        return parcel

    seen: list[Any] = []

    @workflow
    async def wf(ctx: Context, m: Money) -> str:
        money = await ctx.step(make_money)
        p = await ctx.step(make_parcel)
        await ctx.sleep(0.01)
        seen.append((money, p, m))
        return "done"

    await run_to_end(client, wf, Money(amount=Decimal("1.5"), currency="USD"))
    money, p, m = seen[0]
    assert money == Money(amount=Decimal("10.05"), currency="EUR")
    assert p == parcel
    assert m == Money(amount=Decimal("1.5"), currency="USD")


class Blob(pydantic.BaseModel):
    """Any bytes: the model says so, as pydantic's own config does."""

    model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
    name: str
    data: bytes
    parts: list[bytes]


class Note(pydantic.BaseModel):
    """Bytes as pydantic writes them by default: UTF-8 text."""

    body: bytes


@dataclasses.dataclass
class Sealed:
    blob: Blob  # a model inside a dataclass: each has its own say on bytes in pydantic
    tag: bytes
    attached: Note | Blob  # a member of a union is checked against each type in it


def test_bytes_a_model_cannot_write_as_it_is_configured_say_which_config_keeps_them() -> None:
    with pytest.raises(SerializationError, match="ser_json_bytes='base64'"):
        DEFAULT_SERIALIZER.encode(Note(body=b"\xff"))


async def test_bytes_that_are_not_utf8_round_trip_in_a_model_a_dataclass_and_bare(client):
    blob = Blob(name="x", data=b"\xff\xfe\x00", parts=[b"\x80", b"plain text"])
    sealed = Sealed(Blob(name="y", data=b"\xc3\x28", parts=[]), b"\xe2\x82", Note(body=b"ok"))
    bare = b"\x00\xff"

    def make_blob() -> Blob:
        return blob

    def make_sealed() -> Sealed:
        return sealed

    def make_bare() -> bytes:
        return bare

    seen: list[Any] = []

    @workflow
    async def wf(ctx: Context, given: Blob) -> list[Blob]:
        made = (await ctx.step(make_blob), await ctx.step(make_sealed),
                await ctx.step(make_bare))
        seen.append((made, given))  # live, then replayed from the checkpoints after the sleep
        await ctx.sleep(0.01)
        return [given, made[0]]

    handle = await run_to_end(client, wf, blob)
    assert seen == [((blob, sealed, bare), blob)] * 2
    assert handle.result() == [blob, blob]


async def test_unannotated_values_look_the_same_live_and_replayed(client):
    seen: list[Any] = []

    @workflow
    async def wf(ctx: Context) -> None:
        value = await ctx.step(lambda: datetime(2026, 1, 1, tzinfo=UTC))
        seen.append(value)
        await ctx.sleep(0.01)
        seen.append(value)

    await run_to_end(client, wf)
    assert seen[0] == seen[1] == seen[2] == "2026-01-01T00:00:00Z"


async def test_unencodable_step_result_fails_the_run_naming_step_and_type(client):
    class Opaque:
        pass

    @workflow
    async def wf(ctx: Context) -> None:
        await ctx.step(Opaque, name="make_opaque")

    handle = await run_to_end(client, wf)
    run = client.get(handle.run_id)
    assert run.status is ExecutionStatus.FAILED
    assert run.error is not None
    assert "make_opaque" in run.error.message and "Opaque" in run.error.message


async def test_now_random_and_uuid_are_recorded_once_and_replayed(client):
    seen: list[tuple[Any, ...]] = []

    @workflow
    async def wf(ctx: Context) -> None:
        values = (ctx.now(), ctx.random(), ctx.uuid4())
        seen.append(values)
        await ctx.sleep(0.01)

    await run_to_end(client, wf)
    assert len(seen) == 2 and seen[0] == seen[1]
    assert isinstance(seen[0][0], datetime) and isinstance(seen[0][2], uuid.UUID)


async def test_workflow_with_several_inputs_gets_them_typed(client):
    @workflow
    async def wf(ctx: Context, when: datetime, count: int, tag: str) -> list[Any]:
        return [when.year, count, tag]

    handle = await run_to_end(client, wf, datetime(2030, 5, 1, tzinfo=UTC), 3, "x")
    assert handle.result() == [2030, 3, "x"]


async def test_workflow_exception_fails_the_run_with_error_and_traceback(client):
    @workflow
    async def wf(ctx: Context) -> None:
        raise RuntimeError("bad state")

    handle = await run_to_end(client, wf)
    run = client.get(handle.run_id)
    assert run.status is ExecutionStatus.FAILED and run.error is not None
    assert run.error.type == "RuntimeError" and run.error.message == "bad state"
    assert "raise RuntimeError" in (run.error.traceback or "")
    with pytest.raises(durable.WorkflowFailed, match="bad state"):
        handle.result()


# -- waiting on the outside world -------------------------------------------------------------

async def test_signal_sent_before_the_wait_is_buffered(client):
    @workflow
    async def wf(ctx: Context) -> Any:
        await ctx.sleep(0.05)
        return await ctx.wait_for_signal("approve")

    handle = client.start(wf)
    client.signal(handle.run_id, "approve", {"ok": True})
    async with serving(client, wf):
        await finish(client, handle.run_id)
    assert handle.result() == {"ok": True}


async def test_signal_wakes_a_waiting_run_and_times_out_when_absent(client):
    @workflow
    async def wf(ctx: Context) -> list[Any]:
        first = await ctx.wait_for_signal("go")
        try:
            await ctx.wait_for_signal("never", timeout=0.05)
        except WaitTimeout:
            return [first, "timed out"]
        return [first]

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(
            lambda: any(o.name == "go" for o in client.operations(handle.run_id)),
            "the run to wait for signal 'go'")
        client.signal(handle.run_id, "go", 1)
        await finish(client, handle.run_id)
    assert handle.result() == [1, "timed out"]


async def test_callback_resolved_from_outside_returns_its_result(client):
    @workflow
    async def wf(ctx: Context) -> Any:
        return await ctx.wait_for_callback(lambda cid: None, name="approval", timeout=30)

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: any(o.callback_id for o in client.operations(handle.run_id)),
                               "the run to create its callback")
        cb = next(o.callback_id for o in client.operations(handle.run_id) if o.callback_id)
        assert cb is not None and len(cb) >= 22
        client.complete_callback(cb, {"approved": True})
        await finish(client, handle.run_id)
    assert handle.result() == {"approved": True}
    with pytest.raises(durable.CallbackNotFound):
        client.complete_callback(cb, "again")


async def test_failed_and_timed_out_callbacks_raise_in_the_workflow(client):
    @workflow
    async def wf(ctx: Context) -> list[str]:
        out = []
        cb = await ctx.create_callback(name="fails")
        ctx.set_event("cb", cb.id)
        try:
            await cb.result()
        except CallbackFailed as e:
            out.append(e.error.message)
        late = await ctx.create_callback(name="late", timeout=0.05)
        try:
            await late.result()
        except WaitTimeout:
            out.append("timeout")
        return out

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: client.get_event(handle.run_id, "cb") is not None,
                               "the run to publish its callback id")
        client.fail_callback(client.get_event(handle.run_id, "cb"), "rejected")
        await finish(client, handle.run_id)
    assert handle.result() == ["rejected", "timeout"]


async def test_a_callback_failed_with_an_error_object_keeps_its_type_and_data(client):
    @workflow
    async def wf(ctx: Context) -> list[str | None]:
        cb = await ctx.create_callback(name="review")
        ctx.set_event("cb", cb.id)
        try:
            await cb.result()
        except CallbackFailed as e:
            return [e.error.type, e.error.message, e.error.data]
        return []

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: client.get_event(handle.run_id, "cb") is not None)
        client.fail_callback(client.get_event(handle.run_id, "cb"),
                             ErrorObject("Rejected", "over budget", data='{"limit": 100}'))
        await finish(client, handle.run_id)
    assert handle.result() == ["Rejected", "over budget", '{"limit": 100}']


async def test_published_events_are_readable_by_clients(client):
    @workflow
    async def wf(ctx: Context) -> None:
        ctx.set_event("stage", "packing")
        await ctx.wait_for_signal("go")
        ctx.set_event("stage", "shipped")

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: client.get_event(handle.run_id, "stage") == "packing",
                               "the run to publish stage 'packing'")
        client.signal(handle.run_id, "go")
        await finish(client, handle.run_id)
    assert client.get_event(handle.run_id, "stage") == "shipped"
    assert client.get_event(handle.run_id, "missing", "default") == "default"


# -- cancellation, identity, determinism ------------------------------------------------------

async def test_cancel_raises_cancelled_so_compensation_runs_and_run_stops(client):
    compensated: list[str] = []

    @workflow
    async def wf(ctx: Context) -> None:
        await ctx.step(lambda: "reserved", name="reserve")
        try:
            await ctx.sleep(3600)
        except Cancelled:
            await ctx.step(lambda: compensated.append("released"), name="release")
            raise

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: any(o.type is OperationType.WAIT
                                           for o in client.operations(handle.run_id)),
                               "the run to start its sleep")
        client.cancel(handle.run_id)
        await finish(client, handle.run_id)
    assert client.get(handle.run_id).status is ExecutionStatus.STOPPED
    assert compensated == ["released"]
    wait = next(o for o in client.operations(handle.run_id) if o.type is OperationType.WAIT)
    assert wait.status is OperationStatus.CANCELLED


async def test_starting_the_same_id_twice_yields_one_run(client):
    @workflow
    async def wf(ctx: Context, x: int) -> int:
        return x

    a = client.start(wf, 1, id="order-17")
    b = client.start(wf, 2, id="order-17", existing=True)  # another input: asked for
    assert a.run_id == b.run_id == "order-17"
    assert len(client.list()) == 1
    async with serving(client, wf):
        await finish(client, "order-17")
    assert a.result() == 1


async def test_plain_asyncio_gather_over_durable_calls_is_rejected(client):
    @workflow
    async def wf(ctx: Context) -> None:
        async def slow() -> None:
            await asyncio.sleep(0.01)
        await asyncio.gather(ctx.step(slow), ctx.step(slow))

    handle = await run_to_end(client, wf)
    run = client.get(handle.run_id)
    assert run.status is ExecutionStatus.FAILED and run.error is not None
    assert "ctx.gather" in run.error.message


async def test_diverging_code_parks_the_run_instead_of_failing_it(client):
    def v1_factory() -> durable.Workflow[..., Any]:
        @workflow(name="evolving")
        async def v1(ctx: Context) -> str:
            await ctx.step(lambda: 1, name="a")
            await ctx.wait_for_signal("go")
            await ctx.step(lambda: 2, name="b")
            return "v1"
        return v1

    @workflow(name="evolving")
    async def v2(ctx: Context) -> str:
        await ctx.step(lambda: 1, name="inserted")
        await ctx.wait_for_signal("go")
        return "v2"

    v1 = v1_factory()
    handle = client.start(v1)
    async with serving(client, v1):
        await wait_until_async(lambda: len(client.operations(handle.run_id)) == 2,
                               "v1 to wait for its signal")
    client.signal(handle.run_id, "go")
    async with serving(client, v2):
        await wait_until_async(lambda: client.get(handle.run_id).parked is not None,
                               "v2 to park the run")
    run = client.get(handle.run_id)
    assert run.status is ExecutionStatus.RUNNING and run.parked is not None
    assert run.parked.type == "NonDeterminismError"
    assert "'a'" in run.parked.message and "'inserted'" in run.parked.message
    async with serving(client, v1_factory()):  # the fixed deploy resumes it
        await finish(client, handle.run_id)
    assert handle.result() == "v1"


async def test_logger_does_not_repeat_lines_when_replaying(client, caplog):
    @workflow
    async def wf(ctx: Context) -> None:
        ctx.logger.info("before sleep")
        await ctx.sleep(0.02)
        ctx.logger.info("after sleep")

    with caplog.at_level(logging.INFO, logger="durable.workflow"):
        await run_to_end(client, wf)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("durable.workflow")]
    assert [line.split("] ")[1] for line in lines] == ["before sleep", "after sleep"]


async def test_compute_time_excludes_waiting_time(client):
    @workflow
    async def wf(ctx: Context) -> None:
        await ctx.sleep(0.3)

    handle = await run_to_end(client, wf)
    run = client.get(handle.run_id)
    assert run.ended_at is not None
    assert run.compute_seconds < (run.ended_at - run.created_at) / 2


def test_run_blocks_until_the_result(db_url):
    @workflow
    async def wf(ctx: Context, name: str) -> str:
        return await ctx.step(lambda: f"hello {name}")

    assert durable.run(wf, "ada", db=db_url) == "hello ada"


async def test_a_steps_own_timeout_error_is_an_ordinary_failure_not_a_step_timeout(client):
    @workflow
    async def wf(ctx: Context) -> str:
        def calls_slow_api() -> None:
            raise TimeoutError("upstream timed out")
        try:
            await ctx.step(calls_slow_api, retry=RetryPolicy(max_attempts=1))
        except StepFailed as e:
            return e.error_type
        return "no"

    assert (await run_to_end(client, wf)).result() == "TimeoutError"


async def test_cancel_racing_the_start_of_a_wait_still_stops_the_run_at_that_wait(client):
    @workflow
    async def wf(ctx: Context) -> None:
        await ctx.step(lambda: None, name="before")
        await ctx.sleep(3600)

    handle = client.start(wf)
    real = client.store.awrite
    cancelled = False

    def cancel_just_before_the_wait_starts(fn: Any, fence: Fence | None = None) -> Any:
        nonlocal cancelled
        if not cancelled and client.get(handle.run_id).status is ExecutionStatus.RUNNING and any(
                o.name == "before" for o in client.operations(handle.run_id)):
            cancelled = True
            client.cancel(handle.run_id)  # commits before the WAIT's START checkpoint
        return real(fn, fence)

    client.store.awrite = cancel_just_before_the_wait_starts  # type: ignore[method-assign]
    async with serving(client, wf):
        await finish(client, handle.run_id, timeout=10)
    assert client.get(handle.run_id).status is ExecutionStatus.STOPPED


async def test_an_invocation_fenced_out_runs_no_further_step_even_if_user_code_catches(client):
    ran: list[str] = []

    @workflow
    async def wf(ctx: Context) -> None:
        with contextlib.suppress(Exception):  # a broad handler must not swallow losing the run
            await ctx.step(lambda: ran.append("first"), name="first")
        await ctx.step(lambda: ran.append("second"), name="second")

    handle = client.start(wf)
    [claimed] = client.store.write_sync(lambda tx: machine.claim(
        tx, "worker-1", client.clock(), 1, 30.0, [wf.name]))
    taken_over = False

    async def checkpointer(updates: list[Any]) -> Any:
        nonlocal taken_over
        if not taken_over:  # another worker leases the run: this invocation's token is stale
            taken_over = True
            client.store.write_sync(lambda tx: tx.lease([handle.run_id], "worker-2", 1e12))
        return await client.store.awrite(lambda tx: machine.checkpoint(
            tx, handle.run_id, claimed.token, updates, client.clock()))

    with pytest.raises(durable.errors.StaleToken):
        await wf.handler(claimed.invocation, checkpointer)
    assert ran == ["first"]


async def test_recorded_values_are_durable_before_a_step_body_can_use_them(client):
    seen_in_store: list[bool] = []

    @workflow
    async def wf(ctx: Context) -> None:
        key = ctx.uuid4()  # a crash inside charge must not mint a different key on replay

        def charge(idempotency_key: str) -> None:
            stored = [o for o in client.operations(ctx.run_id) if o.sub_type == "Uuid"]
            seen_in_store.append(bool(stored) and stored[0].result == f'"{idempotency_key}"')
        await ctx.step(charge, str(key))

    await run_to_end(client, wf)
    assert seen_in_store == [True]


async def test_a_worker_resumes_at_once_the_runs_of_a_dead_worker_of_its_own_host(client):
    @workflow
    async def wf(ctx: Context) -> str:
        return await ctx.step(lambda: "resumed", name="work")

    handle = client.start(wf)
    dead_owner = f"{pid_scope()}:{2**22 + 12345}:deadbeef"  # this host and namespace, no such pid
    client.store.write_sync(lambda tx: tx.lease([handle.run_id], dead_owner, 1e12))
    async with serving(client, wf):
        await finish(client, handle.run_id, timeout=10)  # not after the (endless) lease
    assert handle.result() == "resumed"


async def serves(client: durable.Client, wf: durable.Workflow[..., Any]) -> None:
    """Until a worker on this event loop serves `wf` from the client's database, so that a run
    started here goes straight to it."""
    await wait_until_async(lambda: serving_here(client.store.url, wf.name),
                           f"a worker here to serve {wf.name}")


@contextlib.contextmanager
def counting_claims() -> Any:
    """The run ids each `machine.claim` handed out, while the block runs."""
    claimed: list[str] = []
    real = machine.claim

    def claim(*args: Any, **kwargs: Any) -> list[machine.Claimed]:
        out = real(*args, **kwargs)
        claimed.extend(c.invocation.run_id for c in out)
        return out
    machine.claim = claim  # type: ignore[assignment]
    try:
        yield claimed
    finally:
        machine.claim = real  # type: ignore[assignment]


async def test_a_run_started_beside_a_worker_serving_it_runs_there_without_a_claim(client):
    @workflow
    async def wf(ctx: Context, n: int) -> int:
        return await ctx.step(lambda: n * 2, name="double")

    with counting_claims() as claimed:
        async with serving(client, wf):
            await serves(client, wf)
            handles = [await client.start_async(wf, n, id=f"here-{n}") for n in range(3)]
            again = await client.start_async(wf, 0, id="here-0")  # idempotent: no new run
            for h in handles:
                await finish(client, h.run_id)
    assert [h.result() for h in handles] == [0, 2, 4] and again.result() == 0
    assert claimed == []


async def test_a_webhook_run_goes_straight_to_the_server_s_own_worker(client):
    """`durable server --worker` serves its workflows on the loop its routes run on, so a run a
    webhook starts is created leased to that worker, as `Client.start_async` does."""
    from httpx import ASGITransport, AsyncClient

    from durable.engine.worker import serving_here
    from durable.server.app import create_app

    @workflow(webhook=True)
    async def hooked(ctx: Context, n: int) -> int:
        return await ctx.step(lambda: n + 1, name="inc")

    app = create_app(client, workflows=[hooked])
    with counting_claims() as claimed:
        async with app.router.lifespan_context(app), AsyncClient(
                transport=ASGITransport(app), base_url="http://127.0.0.1") as http:
            await wait_until_async(lambda: serving_here(client.store.url, hooked.name),
                                   "the app's worker to serve")
            answer = await http.post(f"/hooks/{hooked.name}", json=41, params={"wait": "true"},
                                     headers={"Idempotency-Key": "hooked-1"})
    assert answer.status_code == 200 and answer.json()["result"] == 42
    assert claimed == []


async def test_a_start_goes_through_a_claim_when_the_worker_here_is_full_or_queued(client):
    release = asyncio.Event()

    @workflow
    async def busy(ctx: Context) -> str:
        async def hold() -> str:
            await release.wait()
            return "held"
        return await ctx.step(hold, name="hold")

    lane = durable.Queue("lane", limit=5)

    @workflow(queue=lane)
    async def queued(ctx: Context) -> str:
        return await ctx.step(lambda: "admitted", name="work")

    worker = durable.Worker([busy, queued], client.store, concurrency=1)
    task = asyncio.create_task(worker.run_async())
    try:
        with counting_claims() as claimed:
            await serves(client, busy)
            first = await client.start_async(busy, id="first")  # takes the only slot
            second = await client.start_async(busy, id="second")  # none left: queued up
            release.set()
            await finish(client, second.run_id)
            q = await client.start_async(queued, id="q")  # its queue must admit it first
            await finish(client, q.run_id)
    finally:
        worker.stop()
        await task
    assert (first.result(), second.result(), q.result()) == ("held", "held", "admitted")
    assert claimed == ["second", "q"]


async def test_a_run_started_for_a_worker_that_stopped_meanwhile_is_given_back(client):
    @workflow
    async def wf(ctx: Context) -> str:
        return await ctx.step(lambda: "ran", name="work")

    worker = durable.Worker([wf], client.store)
    task = asyncio.create_task(worker.run_async())
    await serves(client, wf)
    lease = worker.reserve()  # as Client.start_async does, then the worker stops before adopting
    run, _ = client.store.write_sync(
        lambda tx: machine.start_run(tx, "back", wf.name, None, client.clock(), lease=lease))
    worker.stop()
    await task
    await worker.adopt(machine.invocation_of(run), lease)
    async with serving(client, wf):  # another worker takes it now, not when the lease ends
        await finish(client, "back", timeout=5)
    assert client.handle("back").result() == "ran"
    assert worker.stats.invocations == 0  # the stopped worker ran nothing


async def test_steps_running_past_the_start_delay_have_their_start_recorded_while_they_run(
        any_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Executor.checkpoint_later`: one timer per invocation serves every step still running
    (ctx.gather's branches too), so each records its START once it has run for
    RUNNING_RECORDED_AFTER, while it runs; a step that ends before records none."""
    monkeypatch.setattr(durable.sdk.step, "RUNNING_RECORDED_AFTER", 0.05)
    release = asyncio.Event()

    async def quick() -> str:
        return "q"

    async def held(i: int) -> int:
        await release.wait()
        return i

    @workflow
    async def wf_held(ctx: Context) -> list[int]:
        await ctx.step(quick)
        return await ctx.gather(ctx.step(held, 1, name="a"), ctx.step(held, 2, name="b"))

    client = durable.Client(any_db)
    try:
        handle = client.start(wf_held)
        async with serving(client, wf_held):
            await wait_until_async(lambda: sorted(
                op.name or "" for op in client.operations(handle.run_id)
                if op.type is OperationType.STEP and op.status is OperationStatus.STARTED
            ) == ["a", "b"], "both held steps to have their START recorded")
            release.set()
            await finish(client, handle.run_id)
        assert handle.result() == [1, 2]
        started = [e.name for e in client.history(handle.run_id)
                   if e.type == EventType.STEP_STARTED]
        assert sorted(started) == ["a", "b"]
    finally:
        client.close()
