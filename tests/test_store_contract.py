"""The store contract: the same tests on SQLite and on PostgreSQL.

The engine's state machine runs against `Tx` only, so both stores must give it the same answers:
start idempotency, leases and fencing, every operation type's transitions, timers, retries,
callbacks, signals, cancellation, published events, history, listing, claiming under
concurrency, and wake-ups across connections. Each test here takes `any_db` (tests/conftest.py)
and so runs once per dialect, each time on a fresh database; PostgreSQL-only behaviour (SKIP
LOCKED, advisory-locked migrations, dropped connections, deadlock retries) is at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import durable
from durable import Context, workflow
from durable.engine import machine
from durable.engine.machine import Claimed, InvalidCheckpoint
from durable.errors import CallbackNotFound, RunNotFound, StaleToken, StoreUnusable, UsageError
from durable.model import (
    ChildStart,
    ErrorObject,
    EventType,
    ExecutionStatus,
    InvocationOutput,
    InvocationStatus,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
)
from durable.model.listing import RunFilter
from durable.store import Store, Tx, diagnose, migrate, open_store
from durable.store.history import attempt_details
from durable.store.runs import Fence
from durable.store.schema import LATEST, MIGRATIONS
from tests import pgkit
from tests.kit import Procs, wait_until, wait_until_async

A, S, T = OperationAction, OperationStatus, OperationType
T0 = 1_000_000.0  # the tests' clock: machine functions take `now`, so time is ours to set
WF = "contract_wf"
PENDING = InvocationOutput(InvocationStatus.PENDING)


@pytest.fixture
def store(any_db: str) -> Iterator[Store]:
    s = open_store(any_db)
    yield s
    s.close()


# -- helpers ------------------------------------------------------------------------------------

def start(store: Store, run_id: str = "r1", now: float = T0, workflow: str = WF,
          input: str | None = None) -> bool:
    return store.write_sync(lambda tx: machine.start_run(tx, run_id, workflow, input, now))[1]


def claim(store: Store, owner: str = "w1", now: float = T0, limit: int = 10,
          lease: float = 30.0) -> list[Claimed]:
    return store.write_sync(lambda tx: machine.claim(tx, owner, now, limit, lease, [WF]))


def claim_one(store: Store, owner: str = "w1", now: float = T0, lease: float = 30.0) -> Claimed:
    (c,) = claim(store, owner, now, lease=lease)
    return c


def checkpoint(store: Store, run_id: str, token: int, *updates: OperationUpdate,
               now: float = T0) -> list[Operation]:
    """A checkpoint written as the worker writes it: declaring its fence (`Fence`)."""
    return store.write(lambda tx: machine.checkpoint(tx, run_id, token, list(updates), now),
                       machine.checkpoint_fence(run_id, token, updates)).result().operations


def finish(store: Store, run_id: str, token: int, out: InvocationOutput = PENDING,
           now: float = T0) -> None:
    """An invocation's outcome written as the worker writes it: declaring its fence."""
    store.write(lambda tx: machine.finish_invocation(tx, run_id, token, out, now, 0.01),
                machine.finish_fence(run_id, token, confined=False)).result()


def read(store: Store, fn: Callable[[Tx], Any]) -> Any:
    return store.read(fn)


def run(store: Store, run_id: str = "r1") -> Any:
    return read(store, lambda tx: tx.get_run(run_id))


def op(store: Store, op_id: str, run_id: str = "r1") -> Operation:
    found = store.read(lambda tx: tx.get_operation(run_id, op_id))
    assert found is not None, op_id
    return found


def events(store: Store, run_id: str = "r1") -> list[str]:
    return [e.type for e in read(store, lambda tx: tx.history(run_id))]


def step(op_id: str, action: OperationAction, **fields: Any) -> OperationUpdate:
    return OperationUpdate(op_id, T.STEP, action, name=op_id, sub_type=SubType.STEP, **fields)


def running(store: Store, run_id: str = "r1", now: float = T0) -> int:
    """Start `run_id` and claim it; returns the invocation's token."""
    start(store, run_id, now)
    (c,) = [c for c in claim(store, now=now) if c.invocation.run_id == run_id]
    return c.token


# -- starting -----------------------------------------------------------------------------------

def test_start_is_idempotent_by_id(store: Store) -> None:
    assert start(store, input='{"a": 1}') is True
    assert start(store, input='{"a": 2}', now=T0 + 5) is False
    r = run(store)
    assert (r.status, r.input, r.created_at, r.ready_at) == (
        ExecutionStatus.RUNNING, '{"a": 1}', T0, T0)
    assert events(store) == [EventType.EXECUTION_STARTED]
    with pytest.raises(UsageError, match="already used by a run of workflow"):
        start(store, workflow="another_wf")


# -- claiming, leases, fencing ------------------------------------------------------------------

def test_claim_leases_the_run_and_hands_over_its_operations(store: Store) -> None:
    start(store, input='"in"')
    c = claim_one(store, now=T0 + 1)
    assert (c.invocation.run_id, c.invocation.workflow, c.invocation.input) == ("r1", WF, '"in"')
    assert c.invocation.operations == {}
    assert claim(store, "w2", now=T0 + 2) == []  # leased: nobody else gets it
    assert claim(store, "w2", now=T0 + 2, limit=0) == []
    checkpoint(store, "r1", c.token, step("s1", A.SUCCEED, payload="1"))
    finish(store, "r1", c.token, now=T0 + 3)
    assert run(store).ready_at is None  # nothing to do: not claimable, not due
    assert claim(store, now=T0 + 100) == []
    assert read(store, lambda tx: tx.next_due([WF])) is None


def test_a_stale_token_is_rejected_by_checkpoint_and_finish(store: Store) -> None:
    token = running(store)
    with pytest.raises(StaleToken):
        checkpoint(store, "r1", token - 1, step("s1", A.SUCCEED, payload="1"))
    with pytest.raises(StaleToken):
        finish(store, "r1", token + 1)
    assert read(store, lambda tx: tx.operations("r1")) == []  # nothing of either was applied


def test_an_expired_lease_lets_another_owner_claim_and_fences_out_the_first(store: Store
                                                                              ) -> None:
    start(store)
    first = claim_one(store, "w1", now=T0, lease=10)
    checkpoint(store, "r1", first.token, step("s1", A.SUCCEED, payload="1"))
    assert claim(store, "w2", now=T0 + 9) == []
    assert read(store, lambda tx: tx.next_due([WF])) == T0 + 10  # the lease's end
    second = claim_one(store, "w2", now=T0 + 11)
    assert second.token > first.token
    assert second.invocation.operations["s1"].status is S.SUCCEEDED  # carried over
    with pytest.raises(StaleToken):  # the first owner, back from a pause, cannot write
        checkpoint(store, "r1", first.token, step("s2", A.SUCCEED, payload="2"))
    with pytest.raises(StaleToken):
        finish(store, "r1", first.token, InvocationOutput(InvocationStatus.SUCCEEDED, "1"))
    finish(store, "r1", second.token, InvocationOutput(InvocationStatus.SUCCEEDED, "2"),
           now=T0 + 12)
    assert (run(store).status, run(store).result) == (ExecutionStatus.SUCCEEDED, "2")


def in_one_batch(store: Store, *writes: tuple[Callable[[Tx], Any], Fence | None]
                 ) -> list[Future[Any]]:
    """Run `writes` in one batch of the writer, in this order, each with the fence it declares
    (as the worker declares a checkpoint's): queued while a write holds the writer, they are
    all waiting when it next takes a batch. Their futures."""
    holding, release = threading.Event(), threading.Event()
    held = store.write(lambda tx: holding.set() or release.wait(10))
    assert holding.wait(10)
    futures = [store.write(fn, fence) for fn, fence in writes]
    release.set()
    held.result(10)
    return futures


def checkpoint_write(run_id: str, token: int, *updates: OperationUpdate
                     ) -> tuple[Callable[[Tx], Any], Fence]:
    return (lambda tx: machine.checkpoint(tx, run_id, token, list(updates), T0 + 12),
            machine.checkpoint_fence(run_id, token, updates))


WAIT_START = OperationUpdate("w", T.WAIT, A.START, delay=100)


@pytest.mark.parametrize("earlier", ["claim", "cancel", "terminate", "finish", "same run"])
def test_a_checkpoint_sees_what_an_earlier_write_of_its_batch_did_to_its_run(
        store: Store, earlier: str) -> None:
    """A writer reads the fences of a batch's checkpoints together, ahead of them (on
    PostgreSQL, one round trip for many): never across a write that changes the run. Here a
    checkpoint of another run comes first, so its fence is read ahead at the start of the
    batch; then the run's lease is taken over (the zombie's checkpoint after it must be
    refused), the run is cancelled (the checkpoint must hear of it), terminated, ended by its
    invocation's outcome, or checkpointed already (the same WAIT started twice is
    refused)."""
    start(store, "r0")
    start(store, "r1")
    claimed = {c.invocation.run_id: c for c in claim(store, "w1", now=T0, lease=10)}
    r0, r1 = claimed["r0"].token, claimed["r1"].token
    store.write_sync(lambda tx: machine.heartbeat(tx, "w1", ["r0"], T0 + 30))
    changes: dict[str, tuple[Callable[[Tx], Any], Fence | None]] = {
        "claim": (lambda tx: machine.claim(tx, "w2", T0 + 11, 10, 30, [WF]), None),
        "cancel": (lambda tx: machine.cancel(tx, "r1", T0 + 11), None),
        "terminate": (lambda tx: machine.terminate(tx, "r1", None, T0 + 11), None),
        "finish": (lambda tx: machine.finish_invocation(
            tx, "r1", r1, InvocationOutput(InvocationStatus.SUCCEEDED, "1"), T0 + 11, 0.01,
            children=False), machine.finish_fence("r1", r1, confined=True)),
        "same run": checkpoint_write("r1", r1, WAIT_START),
    }
    first, change, zombie = in_one_batch(
        store, checkpoint_write("r0", r0, step("s0", A.SUCCEED, payload="0")), changes[earlier],
        checkpoint_write("r1", r1, WAIT_START))
    assert first.result(10).operations[0].status is S.SUCCEEDED
    change.result(10)
    if earlier == "cancel":
        assert zombie.result(10).cancel_requested
        return
    with pytest.raises(InvalidCheckpoint if earlier == "same run" else StaleToken):
        zombie.result(10)
    if earlier == "claim":
        assert read(store, lambda tx: tx.operations("r1")) == []  # the zombie wrote nothing
        assert run(store).status is ExecutionStatus.RUNNING


def test_the_fences_of_a_batch_of_checkpoints_are_read_in_one_statement(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where each read is a round trip (PostgreSQL), a batch of checkpoints of distinct runs
    and outcomes confined to their run reads all their fences at once, not one each."""
    runs = [f"r{i}" for i in range(8)]
    for run_id in runs:
        start(store, run_id)
    tokens = {c.invocation.run_id: c.token for c in claim(store, limit=len(runs))}
    reads: list[int] = []
    read_fences = Tx.read_fences

    def noting(tx: Tx, fences: Any) -> Any:
        reads.append(len(fences))
        return read_fences(tx, fences)
    monkeypatch.setattr(Tx, "read_fences", noting)
    done = InvocationOutput(InvocationStatus.SUCCEEDED, "1")
    futures = in_one_batch(store, *(checkpoint_write(r, tokens[r], step("s", A.SUCCEED))
                                    for r in runs[:-1]),
                           (lambda tx: machine.finish_invocation(
                               tx, runs[-1], tokens[runs[-1]], done, T0, 0.01, children=False),
                            machine.finish_fence(runs[-1], tokens[runs[-1]], confined=True)))
    for future in futures:
        future.result(10)
    assert reads == ([len(runs)] if store.writer.read_fences_ahead else [])
    assert run(store, runs[-1]).status is ExecutionStatus.SUCCEEDED
    assert all(op(store, "s", r).status is S.SUCCEEDED for r in runs[:-1])


def test_heartbeats_keep_a_lease_and_release_gives_it_back(store: Store) -> None:
    start(store)
    claim_one(store, "w1", now=T0, lease=10)
    store.write_sync(lambda tx: machine.heartbeat(tx, "w1", ["r1"], T0 + 30))
    store.write_sync(lambda tx: machine.heartbeat(tx, "w2", ["r1"], T0 + 99))  # not its lease
    assert claim(store, "w2", now=T0 + 20) == []
    c = claim_one(store, "w2", now=T0 + 31)
    store.write_sync(lambda tx: machine.release_unstarted(tx, "r1", c.token, T0 + 32))
    assert [c.invocation.run_id for c in claim(store, "w3", now=T0 + 32)] == ["r1"]


def test_a_run_started_leased_is_claimed_by_nobody_else_until_its_lease_ends(store: Store
                                                                             ) -> None:
    run, created = store.write_sync(lambda tx: machine.start_run(
        tx, "r1", WF, '"in"', T0, lease=("here", T0 + 10)))
    here = machine.invocation_of(run)
    assert created and (here.invocation.input, here.invocation.operations) == ('"in"', {})
    assert claim(store, "w2", now=T0 + 9) == []
    assert read(store, lambda tx: tx.next_due([WF])) == T0 + 10  # the lease's end, not now
    checkpoint(store, "r1", here.token, step("s1", A.SUCCEED, payload="1"))
    taken = claim_one(store, "w2", now=T0 + 11)  # its owner stopped renewing: an orphan
    assert taken.token > here.token
    assert taken.invocation.operations["s1"].status is S.SUCCEEDED
    with pytest.raises(StaleToken):
        checkpoint(store, "r1", here.token, step("s2", A.SUCCEED, payload="2"))


def test_claim_takes_orphans_first_and_respects_the_limit(store: Store) -> None:
    for i in range(5):
        start(store, f"r{i}", now=T0 + i)
    orphan = claim(store, "dead", now=T0 + 10, limit=1, lease=5)[0].invocation.run_id
    assert orphan == "r0"  # oldest ready first
    got = [c.invocation.run_id for c in claim(store, "w2", now=T0 + 16, limit=2)]
    assert got == ["r0", "r1"]  # the orphan (lease expired) before runs merely ready


# -- checkpoints: the state machine per operation type ------------------------------------------

def test_step_transitions(store: Store) -> None:
    token = running(store)
    (started,) = checkpoint(store, "r1", token, step("a", A.START))
    assert (started.status, started.attempt) == (S.STARTED, 1)
    (done,) = checkpoint(store, "r1", token, step("a", A.SUCCEED, payload="42"))
    assert (done.status, done.attempt, done.result) == (S.SUCCEEDED, 1, "42")
    with pytest.raises(InvalidCheckpoint):  # final: no more changes
        checkpoint(store, "r1", token, step("a", A.SUCCEED, payload="43"))
    with pytest.raises(InvalidCheckpoint, match="started twice"):
        checkpoint(store, "r1", token, step("b", A.START), step("b", A.START))
    err = ErrorObject("ValueError", "bad")
    (failed,) = checkpoint(store, "r1", token, step("c", A.FAIL, error=err))
    assert (failed.status, failed.error, failed.attempt) == (S.FAILED, err, 1)
    assert op(store, "a").result == "42"
    assert [e for e in events(store) if e.startswith("Step")] == [
        EventType.STEP_STARTED, EventType.STEP_SUCCEEDED, EventType.STEP_FAILED]


def test_a_checkpoint_is_atomic(store: Store) -> None:
    token = running(store)
    with pytest.raises(InvalidCheckpoint):
        checkpoint(store, "r1", token, step("a", A.SUCCEED, payload="1"),
                   OperationUpdate("w", T.WAIT, A.SUCCEED))  # not an action a WAIT takes
    assert read(store, lambda tx: tx.operations("r1")) == []
    assert EventType.STEP_SUCCEEDED not in events(store)


@pytest.mark.parametrize("ending", ["finished", "lease_lost"])
def test_a_child_ending_while_its_parent_is_invoked_is_reported_once_the_invocation_ends(
        store: Store, ending: str) -> None:
    """Held while the parent's invocation runs; then taken by the invocation's end, or, if the
    lease is lost instead, by the claim that takes the run over."""
    token = running(store)
    invoke = OperationUpdate("i1", T.CHAINED_INVOKE, A.START, name="child",
                             sub_type=SubType.INVOKE, child=ChildStart("c1", WF, '"x"'))
    checkpoint(store, "r1", token, invoke)
    (child,) = claim(store, "w2", now=T0 + 1)
    finish(store, "c1", child.token, InvocationOutput(InvocationStatus.SUCCEEDED, result='"y"'),
           now=T0 + 2)
    assert op(store, "i1").status is S.STARTED
    assert run(store).ready_at == T0 + 2  # something arrived: the invocation's end will see
    if ending == "finished":
        finish(store, "r1", token, now=T0 + 3)
        assert run(store).ready_at <= T0 + 3  # due at once
        taken = claim_one(store, now=T0 + 3).invocation.operations["i1"]
        end = EventType.INVOCATION_COMPLETED
    else:
        taken = claim_one(store, "w3", now=T0 + 31).invocation.operations["i1"]
        end = EventType.WORKER_LOST
    assert (taken.status, taken.result) == (S.SUCCEEDED, '"y"')
    history = events(store)
    assert history.count(EventType.CHAINED_INVOKE_SUCCEEDED) == 1
    assert history.index(end) < history.index(EventType.CHAINED_INVOKE_SUCCEEDED)


def test_retry_goes_pending_then_ready_when_due(store: Store) -> None:
    token = running(store)
    err = ErrorObject("IOError", "flaky")
    (pending,) = checkpoint(store, "r1", token, step("a", A.RETRY, error=err, delay=5))
    assert (pending.status, pending.due_at, pending.attempt) == (S.PENDING, T0 + 5, 1)
    finish(store, "r1", token)
    assert run(store).ready_at == T0 + 5
    assert claim(store, now=T0 + 4) == []
    c = claim_one(store, now=T0 + 5)
    ready = c.invocation.operations["a"]
    assert (ready.status, ready.due_at) == (S.READY, None)
    (done,) = checkpoint(store, "r1", c.token, step("a", A.SUCCEED, payload="1"), now=T0 + 5)
    assert (done.status, done.attempt) == (S.SUCCEEDED, 2)
    assert EventType.STEP_READY in events(store)


def test_a_durable_timer_completes_on_the_claim_after_it_is_due(store: Store) -> None:
    token = running(store)
    (w,) = checkpoint(store, "r1", token, OperationUpdate("w", T.WAIT, A.START, delay=10))
    assert (w.status, w.due_at) == (S.STARTED, T0 + 10)
    (z,) = checkpoint(store, "r1", token, OperationUpdate("z", T.WAIT, A.START, delay=0))
    assert z.status is S.SUCCEEDED  # nothing to wait for
    finish(store, "r1", token)
    assert read(store, lambda tx: tx.next_due([WF])) == T0 + 10
    assert claim(store, now=T0 + 9.9) == []
    c = claim_one(store, now=T0 + 10)
    assert c.invocation.operations["w"].status is S.SUCCEEDED
    assert events(store).count(EventType.WAIT_SUCCEEDED) == 2


def test_callbacks_succeed_fail_time_out_and_unknown_ids_are_refused(store: Store) -> None:
    token = running(store)
    ok, bad, slow = checkpoint(
        store, "r1", token, *(OperationUpdate(i, T.CALLBACK, A.START, name=i, timeout=60,
                                              sub_type=SubType.CALLBACK)
                              for i in ("ok", "bad", "slow")))
    assert all(c.callback_id and c.status is S.STARTED for c in (ok, bad, slow))
    assert len({ok.callback_id, bad.callback_id, slow.callback_id}) == 3
    finish(store, "r1", token)
    assert run(store).ready_at == T0 + 60  # the earliest timeout

    def resolve(cid: str | None, payload: str | None, error: ErrorObject | None) -> str:
        assert cid is not None
        return store.write_sync(
            lambda tx: machine.complete_callback(tx, cid, payload, error, T0 + 1))

    assert resolve(ok.callback_id, '"yes"', None) == "r1"
    assert run(store).ready_at == T0 + 1  # woken
    resolve(bad.callback_id, None, ErrorObject("Declined", "no"))
    with pytest.raises(CallbackNotFound):
        resolve(ok.callback_id, '"again"', None)  # already resolved
    with pytest.raises(CallbackNotFound):
        resolve("no-such-callback", None, None)
    assert (op(store, "ok").status, op(store, "ok").result) == (S.SUCCEEDED, '"yes"')
    assert op(store, "bad").status is S.FAILED
    assert op(store, "bad").error == ErrorObject("Declined", "no")
    c = claim_one(store, now=T0 + 2)
    assert c.invocation.operations["slow"].status is S.STARTED
    finish(store, "r1", c.token, now=T0 + 2)
    c = claim_one(store, now=T0 + 60)
    assert c.invocation.operations["slow"].status is S.TIMED_OUT
    with pytest.raises(CallbackNotFound):
        resolve(slow.callback_id, None, None)


def test_signals_are_buffered_until_waited_for_and_delivered_to_a_waiter(store: Store) -> None:
    token = running(store)

    def send(name: str, payload: str | None, run_id: str = "r1") -> None:
        store.write_sync(lambda tx: machine.signal(tx, run_id, name, payload, T0 + 1))

    def wait_for(op_id: str, name: str) -> Operation:
        (o,) = checkpoint(store, "r1", token, OperationUpdate(
            op_id, T.CALLBACK, A.START, name=name, sub_type=SubType.SIGNAL))
        return o

    send("go", '"first"')
    send("go", '"second"')
    assert (wait_for("g1", "go").status, op(store, "g1").result) == (S.SUCCEEDED, '"first"')
    assert wait_for("g2", "go").result == '"second"'  # in order, each taken once
    waiting = wait_for("g3", "go")
    assert waiting.status is S.STARTED
    finish(store, "r1", token)
    assert run(store).ready_at is None
    send("go", '"third"')
    assert (op(store, "g3").status, op(store, "g3").result) == (S.SUCCEEDED, '"third"')
    assert run(store).ready_at == T0 + 1  # the run was woken
    with pytest.raises(RunNotFound):
        send("go", None, run_id="nope")
    c = claim_one(store, now=T0 + 2)
    finish(store, "r1", c.token, InvocationOutput(InvocationStatus.SUCCEEDED, "null"))
    with pytest.raises(UsageError, match="has ended"):
        send("go", None)


def test_cancel_cancels_waits_and_tells_the_next_checkpoint(store: Store) -> None:
    token = running(store)
    checkpoint(store, "r1", token, OperationUpdate("w", T.WAIT, A.START, delay=100),
               step("a", A.RETRY, error=ErrorObject("E", "e"), delay=100))
    finish(store, "r1", token)
    info = store.write_sync(lambda tx: machine.cancel(tx, "r1", T0 + 1))
    assert info.cancel_requested and info.ready_at == T0 + 1
    assert op(store, "w").status is S.CANCELLED
    assert op(store, "a").status is S.CANCELLED
    c = claim_one(store, now=T0 + 1)
    assert c.invocation.cancel_requested
    result = store.write_sync(lambda tx: machine.checkpoint(
        tx, "r1", c.token, [step("b", A.SUCCEED, payload="1")], T0 + 2))
    assert result.cancel_requested
    finish(store, "r1", c.token, InvocationOutput(
        InvocationStatus.FAILED, error=ErrorObject("Cancelled", "x"), stopped=True), now=T0 + 3)
    assert run(store).status is ExecutionStatus.STOPPED
    again = store.write_sync(lambda tx: machine.cancel(tx, "r1", T0 + 4))
    assert again.status is ExecutionStatus.STOPPED  # ended: cancelling again changes nothing


def test_published_events_keep_the_latest_value(store: Store) -> None:
    token = running(store)
    for i, value in enumerate(('"packing"', '"shipping"')):
        checkpoint(store, "r1", token, OperationUpdate(
            f"e{i}", T.STEP, A.SUCCEED, name="stage", sub_type=SubType.SET_EVENT, payload=value))
    assert read(store, lambda tx: tx.get_published("r1", "stage")) == ('"shipping"',)
    assert read(store, lambda tx: tx.get_published("r1", "other")) is None


def test_history_is_in_order(store: Store) -> None:
    token = running(store)
    checkpoint(store, "r1", token, step("a", A.START))
    checkpoint(store, "r1", token, step("a", A.SUCCEED, payload="1"),
               OperationUpdate("w", T.WAIT, A.START, delay=0))
    finish(store, "r1", token, InvocationOutput(InvocationStatus.SUCCEEDED, "1"))
    history = read(store, lambda tx: tx.history("r1"))
    assert [e.type for e in history] == [
        EventType.EXECUTION_STARTED, EventType.STEP_STARTED, EventType.STEP_SUCCEEDED,
        EventType.WAIT_STARTED, EventType.WAIT_SUCCEEDED, EventType.INVOCATION_COMPLETED,
        EventType.EXECUTION_SUCCEEDED]
    ids = [e.id for e in history]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert history[2].operation_id == "a" and history[2].details["attempt"] == 1
    after = read(store, lambda tx: tx.history("r1", after=ids[3], limit=2))
    assert [e.id for e in after] == ids[4:6]


def test_a_succeeded_steps_history_details_read_back_as_written(store: Store) -> None:
    """The details a succeeded step records are written out by hand (`attempt_details`), not
    by json.dumps: what every reader gets back must be the same."""
    token = running(store)
    checkpoint(store, "r1", token, step("a", A.SUCCEED, payload="1", started_at=T0 - 0.25))
    checkpoint(store, "r1", token, step("b", A.SUCCEED, payload="2"))
    succeeded = [e for e in read(store, lambda tx: tx.history("r1"))
                 if e.type == EventType.STEP_SUCCEEDED]
    assert [e.details for e in succeeded] == [{"attempt": 1, "started_at": T0 - 0.25},
                                              {"attempt": 1, "started_at": T0}]


@pytest.mark.parametrize("attempt, started_at", [
    (1, 1764815461.123456), (3, None), (2, 17), (1, 1e-7), (12, 1764815461.0),
    (1, float("nan")), (True, 1.5)])
def test_attempt_details_are_what_json_dumps_writes(attempt: int, started_at: float | None
                                                    ) -> None:
    assert attempt_details(attempt, started_at) == json.dumps(
        {"attempt": attempt, "started_at": started_at})


def test_list_filters_and_pages(store: Store) -> None:
    for i in range(5):
        start(store, f"r{i}", now=T0 + i, workflow=WF if i % 2 else "other_wf")
    (c,) = claim(store, now=T0 + 10, limit=1)
    assert c.invocation.run_id == "r1"  # of WF, the oldest
    token = c.token
    finish(store, "r1", token, InvocationOutput(InvocationStatus.SUCCEEDED, "1"))

    def ids(**kw: Any) -> list[str]:
        chosen = RunFilter(status=kw.get("status"), workflow=kw.get("workflow"))
        return [r.run_id for r in read(store, lambda tx: tx.list_runs(
            chosen, kw.get("limit", 100), kw.get("offset", 0)))]

    assert ids() == ["r4", "r3", "r2", "r1", "r0"]  # newest first
    assert ids(workflow=WF) == ["r3", "r1"]
    assert ids(status="SUCCEEDED") == ["r1"]
    assert ids(status="RUNNING", workflow="other_wf") == ["r4", "r2", "r0"]
    assert ids(limit=2, offset=1) == ["r3", "r2"]
    assert read(store, lambda tx: tx.parked_runs([WF])) == []


def test_a_listing_with_a_preview_reads_only_the_start_of_payloads(store: Store) -> None:
    big = '"' + "é" * 5000 + '"'  # characters, not bytes, are what it counts
    start(store, "big", input=big)
    start(store, "small", now=T0 + 1, input='"hi"')
    (c,) = claim(store, now=T0 + 2, limit=1)
    finish(store, "big", c.token, InvocationOutput(InvocationStatus.SUCCEEDED, big))
    listed = {r.run_id: r for r in read(store, lambda tx: tx.list_runs(RunFilter(), 10,
                                                                        preview=10))}
    assert listed["big"].input == big[:11] and listed["big"].result == big[:11]
    assert listed["small"].input == '"hi"' and listed["small"].result is None
    assert read(store, lambda tx: tx.list_runs(RunFilter(), 10))[1].input == big  # without


def test_migrate_reports_the_schema_version(any_db: str) -> None:
    assert migrate(any_db) >= 1
    assert migrate(any_db) == migrate(any_db)  # again: nothing left to do


def raw_execute(url: str, sql: str, params: tuple[Any, ...]) -> None:
    """A statement on a connection of the test's own, outside Durable (`?` placeholders)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn, conn:
            conn.execute(sql, params)
        return
    import psycopg

    with psycopg.connect(url) as pg:
        pg.execute(sql.replace("?", "%s"), params)


def test_a_database_migrated_by_a_newer_durable_is_refused_naming_both_versions(
        any_db: str) -> None:
    migrate(any_db)
    raw_execute(any_db, "INSERT INTO durable_migrations VALUES (?, ?)", (LATEST + 1, T0))
    for opening in (open_store, migrate):
        with pytest.raises(StoreUnusable) as refused:
            opening(any_db)
        assert (f"schema version {LATEST + 1}, newer than version {LATEST}, the newest this "
                "Durable knows") in str(refused.value)
    [schema] = [f for f in diagnose(any_db) if f.name == "schema"]
    assert not schema.ok and f"version {LATEST + 1}" in schema.detail


def test_doctor_reads_the_schema_version_without_migrating(any_db: str) -> None:
    if any_db.startswith("sqlite:///"):  # a file with no tables, as a new schema has none
        Path(any_db.removeprefix("sqlite:///")).touch()
    report = {f.name: f for f in diagnose(any_db)}
    assert all(f.ok for f in report.values()), report
    assert report["schema"].detail.startswith("no Durable tables yet")
    migrate(any_db)
    assert {f.name: f for f in diagnose(any_db)}["schema"].detail == (
        f"version {LATEST}, the newest this Durable knows")


OPEN_AT = """
import sys, time
from durable.store import open_store
time.sleep(max(float(sys.argv[2]) - time.time(), 0))  # imported: now all open at one moment
open_store(sys.argv[1]).close()
"""


def test_processes_opening_a_new_sqlite_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    go = str(time.time() + 3)
    with Procs(tmp_path) as procs:
        opening = [procs.start(sys.executable, "-c", OPEN_AT, url, go) for _ in range(6)]
        outcomes = [(p.wait_exit(60), p.errors()) for p in opening]
    assert [stderr for code, stderr in outcomes if code != 0] == []
    assert migrate(url) == MIGRATIONS[-1][0]  # each version recorded once: nothing left to do


# -- concurrency and wake-ups across connections ------------------------------------------------

def test_concurrent_claimers_never_get_the_same_run(any_db: str) -> None:
    stores = [open_store(any_db) for _ in range(3)]
    try:
        stores[0].write_sync(lambda tx: [machine.start_run(tx, f"r{i}", WF, None, T0)
                                         for i in range(150)])

        def drain(i: int) -> list[str]:
            got: list[str] = []
            while batch := claim(stores[i], f"w{i}", now=T0 + 1, limit=7):
                got += [c.invocation.run_id for c in batch]
            return got

        with ThreadPoolExecutor(3) as pool:
            claimed = list(pool.map(drain, range(3)))
    finally:
        for s in stores:
            s.close()
    everything = [r for got in claimed for r in got]
    assert sorted(everything) == sorted(f"r{i}" for i in range(150))  # each exactly once


def test_subscribers_hear_of_starts_and_signals_committed_elsewhere(any_db: str) -> None:
    listener, other = open_store(any_db), open_store(any_db)
    heard = threading.Event()
    unsubscribe = listener.subscribe(heard.set)
    try:
        def hears(action: Callable[[Tx], Any]) -> float:
            heard.clear()
            began = time.monotonic()
            other.write_sync(action)
            assert heard.wait(5), "no wake-up within 5 s"
            return time.monotonic() - began

        hears(lambda tx: machine.start_run(tx, "r1", WF, None, T0))
        token = claim_one(other).token
        other.write_sync(lambda tx: machine.checkpoint(tx, "r1", token, [OperationUpdate(
            "g", T.CALLBACK, A.START, name="go", sub_type=SubType.SIGNAL)], T0))
        finish(other, "r1", token)
        hears(lambda tx: machine.signal(tx, "r1", "go", None, T0 + 1))  # to a waiting run
    finally:
        unsubscribe()
        listener.close()
        other.close()


def _meanwhile(any_db: str, first: Callable[[Tx], Any], second: Callable[[Tx], Any]) -> Any:
    """Run `first` in one connection and, while its transaction is still open, `second` in
    another; returns `second`'s future. On PostgreSQL both are in flight at once, and must
    still behave as if one ran entirely before the other."""
    one, two = open_store(any_db), open_store(any_db)
    inside = threading.Event()

    def slow_first(tx: Tx) -> Any:
        result = first(tx)
        inside.set()
        time.sleep(0.3)  # still uncommitted while `second` starts
        return result

    try:
        done = one.write(slow_first)
        assert inside.wait(5)
        later = two.write(second)
        done.result(10)
        later.exception(10)
        return later
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("waiter_first", [True, False])
def test_a_signal_racing_its_waiter_is_never_lost(any_db: str, waiter_first: bool) -> None:
    store = open_store(any_db)
    token = running(store)
    store.close()

    def wait(tx: Tx) -> Any:
        return machine.checkpoint(tx, "r1", token, [OperationUpdate(
            "g", T.CALLBACK, A.START, name="go", sub_type=SubType.SIGNAL)], T0)

    def send(tx: Tx) -> None:
        machine.signal(tx, "r1", "go", '"hi"', T0)

    _meanwhile(any_db, *((wait, send) if waiter_first else (send, wait))).result()
    store = open_store(any_db)
    try:
        assert (op(store, "g").status, op(store, "g").result) == (S.SUCCEEDED, '"hi"')
        assert read(store, lambda tx: tx.pop_signal("r1", "go")) is None  # not also buffered
    finally:
        store.close()


def test_a_callback_resolved_twice_at_once_takes_the_first(any_db: str) -> None:
    store = open_store(any_db)
    token = running(store)
    (cb,) = checkpoint(store, "r1", token, OperationUpdate(
        "cb", T.CALLBACK, A.START, name="cb", sub_type=SubType.CALLBACK))
    store.close()
    cid = cb.callback_id
    assert cid is not None

    def resolve(payload: str) -> Callable[[Tx], str]:
        return lambda tx: machine.complete_callback(tx, cid, payload, None, T0)

    second = _meanwhile(any_db, resolve('"first"'), resolve('"second"'))
    assert isinstance(second.exception(), CallbackNotFound)
    store = open_store(any_db)
    try:
        assert op(store, "cb").result == '"first"'
        assert events(store).count(EventType.CALLBACK_SUCCEEDED) == 1
    finally:
        store.close()


# -- real workflows, end to end, through Worker and Client --------------------------------------

async def _double(x: int) -> int:
    return x * 2


@workflow
async def contract_order(ctx: Context, n: int) -> dict[str, Any]:
    a = await ctx.step(_double, n)
    b = await ctx.step(_double, a)
    await ctx.sleep(0.2)
    ctx.set_event("stage", "waiting")
    approval = await ctx.wait_for_signal("approve", timeout=30)
    c = await ctx.step(_double, b)
    return {"c": c, "approval": approval}


async def test_workflows_run_end_to_end(any_db: str) -> None:
    client = durable.Client(any_db)
    worker = durable.Worker([contract_order], any_db, lease_seconds=5)
    serving = asyncio.create_task(worker.run_async())
    try:
        handles = [client.start(contract_order, n, id=f"order-{n}") for n in range(3)]
        assert client.start(contract_order, 0, id="order-0").run_id == "order-0"
        def at_the_wait(run_id: str) -> bool:
            return client.get_event(run_id, "stage") == "waiting"
        for h in handles:
            await wait_until_async(functools.partial(at_the_wait, h.run_id),
                                   f"run {h.run_id} to reach the signal wait")
            client.signal(h.run_id, "approve", {"by": "ops"})
        results = [await asyncio.to_thread(h.result, 20) for h in handles]
    finally:
        worker.stop()
        await serving
        worker.store.close()
    assert results == [{"c": 8 * n, "approval": {"by": "ops"}} for n in range(3)]
    history = client.history("order-1")
    steps = [e for e in history if e.type == EventType.STEP_SUCCEEDED and e.name == "_double"]
    assert len(steps) == 3
    assert history[-1].type == EventType.EXECUTION_SUCCEEDED
    assert {r.run_id for r in client.list(status="SUCCEEDED")} == {"order-0", "order-1",
                                                                    "order-2"}
    client.close()


_flaky_calls: list[int] = []


async def _flaky_step(x: int) -> int:
    _flaky_calls.append(x)
    return x + 1


@workflow
async def contract_flaky(ctx: Context, n: int) -> int:
    return await ctx.step(_flaky_step, n)


async def test_a_database_failure_in_a_checkpoint_is_not_the_runs_failure(any_db: str) -> None:
    """The store fails the step's checkpoint (a PostgreSQL outage past the writer's retries):
    the run is not failed for it, but invoked again once its lease runs out."""
    client = durable.Client(any_db)
    worker = durable.Worker([contract_flaky], any_db, lease_seconds=1)
    awrite, failures = worker.store.awrite, [OSError("the database went away")]

    def flaky(fn: Callable[[Tx], Any], fence: Fence | None = None) -> asyncio.Future[Any]:
        if _flaky_calls and failures:  # the step body ran: this is its checkpoint
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(failures.pop())
            return fut
        return awrite(fn, fence)

    worker.store.awrite = flaky  # type: ignore[method-assign]
    _flaky_calls.clear()
    serving = asyncio.create_task(worker.run_async())
    try:
        handle = client.start(contract_flaky, 41)
        assert await asyncio.to_thread(handle.result, 20) == 42
    finally:
        worker.stop()
        await serving
        worker.store.close()
        client.close()
    assert _flaky_calls == [41, 41]  # at least once: the step's first result was never recorded


async def test_writes_of_one_loop_pass_share_a_transaction_and_a_lone_one_runs_inline(
        store: Store) -> None:
    """Group commit from an event loop: the writes one pass of the loop makes commit together
    (one transaction, on the writer thread); a lone write on SQLite commits on the loop itself,
    where handing it to the thread would cost more than the write."""
    def where(tx: Tx) -> tuple[str, int]:
        return threading.current_thread().name, id(tx)

    together = await asyncio.gather(*(store.awrite(where) for _ in range(3)))
    assert len(set(together)) == 1 and together[0][0] != threading.main_thread().name
    assert store.writer.last_flush_inline is False
    lone_thread, _ = await store.awrite(where)
    inline = store.writer.inline_lone_writes
    assert (lone_thread == threading.main_thread().name) is inline
    assert inline is store.url.startswith("sqlite")
    # what tells a worker's next write to wait by yielding once (`Worker._write`)
    assert store.writer.last_flush_inline is inline
    again = await asyncio.gather(*(store.awrite(where) for _ in range(2)))
    assert again[0] == again[1] and store.writer.last_flush_inline is False


async def test_a_write_that_fails_in_a_batch_leaves_nothing_and_the_others_commit(
        store: Store) -> None:
    """Both writers first run a batch without a savepoint per job: when one job fails after it
    wrote, the batch runs again with them, so its writes are undone and the others' kept."""
    attempts: list[str] = []

    def write(run_id: str, fail: bool) -> Callable[[Tx], bool]:
        def job(tx: Tx) -> bool:
            attempts.append(run_id)
            created = machine.start_run(tx, run_id, WF, None, T0)[1]
            if fail:
                raise InvalidCheckpoint(f"{run_id} refused after writing")
            return created
        return job

    results = await asyncio.gather(*(store.awrite(write(r, r == "b2"))
                                     for r in ("b1", "b2", "b3")), return_exceptions=True)
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], InvalidCheckpoint)
    assert [run(store, r) is not None for r in ("b1", "b2", "b3")] == [True, False, True]
    assert attempts.count("b1") == 2  # the batch ran again, each job in its own savepoint


async def test_writes_still_gathering_when_the_store_closes_are_committed(any_db: str) -> None:
    store = open_store(any_db)
    pending = [store.awrite(lambda tx, i=i: machine.start_run(tx, f"late-{i}", WF, None, T0))
               for i in range(2)]
    store.close()
    assert [created for _, created in await asyncio.gather(*pending)] == [True, True]
    reopened = open_store(any_db)
    try:
        assert run(reopened, "late-1") is not None
    finally:
        reopened.close()


# -- PostgreSQL only ----------------------------------------------------------------------------

def test_unreachable_postgres_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"cannot connect to PostgreSQL at .*127\.0\.0\.1:1/x"
                                         r".*check DURABLE_DB"):
        open_store("postgresql://nobody:secret@127.0.0.1:1/x?connect_timeout=2")
    with pytest.raises(UsageError) as e:
        open_store("postgresql://nobody:secret@127.0.0.1:1/x?connect_timeout=2")
    assert "secret" not in str(e.value)


def test_claiming_skips_rows_locked_by_another_transaction(pg_url: str) -> None:
    import psycopg

    store = open_store(pg_url)
    try:
        for i in range(3):
            start(store, f"r{i}", now=T0 + i)
        with psycopg.connect(pg_url) as other:  # holds r0's row, as a slow claimer would
            other.execute("SELECT 1 FROM runs WHERE run_id = 'r0' FOR UPDATE")
            began = time.monotonic()
            got = [c.invocation.run_id for c in claim(store, now=T0 + 5)]
            assert time.monotonic() - began < 2  # did not wait for the lock
            assert got == ["r1", "r2"]
        assert [c.invocation.run_id for c in claim(store, "w2", now=T0 + 5)] == ["r0"]
    finally:
        store.close()


def test_workers_starting_at_once_migrate_once(pg_url: str) -> None:
    import psycopg

    with ThreadPoolExecutor(6) as pool:
        stores = list(pool.map(lambda _: open_store(pg_url), range(6)))
    for s in stores:
        s.close()
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute(
            "SELECT version FROM durable_migrations ORDER BY version")]
    assert versions == sorted(set(versions)) and versions[0] == 1


def test_a_store_survives_its_connections_being_cut(pg_server: str, pg_url: str) -> None:
    name = f"durable-contract-cut-{uuid.uuid4().hex[:8]}"  # the server is shared: cut only ours
    store = open_store(pgkit.with_params(pg_url, application_name=name))
    heard = threading.Event()
    store.subscribe(heard.set)
    try:
        start(store, "r1")
        assert pgkit.terminate(pg_server, name) >= 3  # writer, reader, listener
        start(store, "r2")  # the writer reconnects and runs the batch again
        assert run(store, "r2") is not None  # so does the reading pool
        def hears_a_start() -> bool:
            heard.clear()
            start(store, f"r{time.monotonic_ns()}")
            return heard.wait(0.5)
        wait_until(hears_a_start, "a wake-up after the connection was cut", timeout=10,
                   interval=0)  # and the listener listens again
        assert {r.run_id for r in read(store, lambda tx: tx.list_runs(RunFilter(), 10))} >= {
            "r1", "r2"}
    finally:
        store.close()


def test_a_transaction_aborted_by_a_deadlock_runs_again(pg_url: str) -> None:
    url = pgkit.with_params(pg_url, options="-cdeadlock_timeout=50")
    one, two = open_store(url), open_store(url)
    try:
        start(one, "x")
        start(one, "y")
        both_hold_one = threading.Barrier(2, timeout=5)
        attempts = {"one": 0, "two": 0}

        def lock(who: str, first: str, second: str) -> Callable[[Tx], str]:
            def fn(tx: Tx) -> str:
                attempts[who] += 1
                tx.update_run(first, updated_at=T0)
                tx.get_run(first)  # a read: the update above has surely run (and locked)
                if attempts[who] == 1:
                    both_hold_one.wait()
                tx.update_run(second, updated_at=T0)
                tx.get_run(second)
                return who
            return fn

        a = one.write(lock("one", "x", "y"))
        b = two.write(lock("two", "y", "x"))
        assert (a.result(15), b.result(15)) == ("one", "two")
        assert sorted(attempts.values()) == [1, 2]  # the deadlock's victim ran again
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("committed", [True, False, None],
                         ids=["committed", "not-committed", "cut-before-commit-went-out"])
def test_a_connection_lost_during_commit_neither_loses_nor_repeats_the_batch(
        pg_url: str, committed: bool | None) -> None:
    """The connection drops while COMMIT is in flight: the writer asks the server whether the
    transaction committed. If it did, the callers get their results and nothing runs again; if
    not, the batch runs again on a new connection. Dropped before the transaction's id came
    back (None), COMMIT was never sent: the batch runs again without asking."""
    import psycopg

    store = open_store(pg_url)
    writer: Any = store.writer
    finish, calls = writer._finish, []

    def drop_at_commit(conn: psycopg.Connection[Any], tx: Tx) -> None:
        writer._finish = finish  # once
        if committed:
            finish(conn, tx)
        elif committed is False:
            writer._xact.fetch()  # as `_finish` does before COMMIT goes out, which it never will
        conn.close()
        raise psycopg.OperationalError("the connection dropped during COMMIT")

    def job(tx: Tx) -> str:
        calls.append(1)
        machine.start_run(tx, f"r{len(calls)}", WF, None, T0)
        return "done"

    try:
        writer._finish = drop_at_commit
        assert store.write_sync(job) == "done"
        ids = [r.run_id for r in read(store, lambda tx: tx.list_runs(RunFilter(), 10))]
    finally:
        store.close()
    assert (len(calls), ids) == ((1, ["r1"]) if committed else (2, ["r2"]))


def test_an_uncertain_commit_is_looked_up_not_guessed(pg_url: str) -> None:
    import psycopg

    from durable.store import postgres

    store = open_store(pg_url)
    try:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            xids = []
            for end in ("COMMIT", "ROLLBACK"):
                cur = conn.execute("BEGIN; SELECT pg_current_xact_id()")
                cur.nextset()
                xids.append(cur.fetchone()[0])  # type: ignore[index]
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS t (x int)")
                conn.execute(end)
        writer = store.writer
        assert isinstance(writer, postgres._Writer)
        assert [writer.xid_committed(x) for x in xids] == [True, False]
    finally:
        store.close()
