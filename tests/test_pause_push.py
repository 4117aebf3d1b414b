"""A paused run served over HTTP (push invocation) is not invoked: a signal that arrives while it
is paused is kept, and takes effect only once it is resumed; an invocation in flight finishes
its step and holds at the next one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import durable
from durable.invoke.push import FunctionSpec, register
from durable.model import ExecutionStatus
from durable.server.app import create_app
from durable.store import Store, open_store
from tests.apps import push_wire_functions
from tests.kit import free_port, wait_until
from tests.test_push_wire import Seen, serving


@pytest.fixture
def pushed(tmp_path: Path) -> Iterator[tuple[Store, Seen]]:
    """A server invoking the `signalled`, `chain` and `gated` functions of a host over HTTP;
    the store, and the host, whose requests it notes."""
    store = open_store(f"sqlite:///{tmp_path}/push.db")
    host = Seen(push_wire_functions.app)
    port = free_port()
    try:
        with serving(host) as host_url:
            for name in ("signalled", "chain", "gated"):
                register(store, FunctionSpec(name, url=f"{host_url}/{name}"))
            with serving(create_app(store, public_url=f"http://127.0.0.1:{port}"), port):
                yield store, host
    finally:
        store.close()


def test_a_paused_push_run_is_not_invoked_until_resumed(pushed: tuple[Store, Seen]) -> None:
    store, host = pushed
    client = durable.Client(store)
    run, _ = client.start_run("signalled", "5")

    def invocations() -> int:
        return sum(1 for r in host.requests if r.method == "POST")
    wait_until(lambda: any(e.type == "InvocationCompleted" and e.details["status"] == "PENDING"
                           for e in client.history(run.run_id)),
               "the first invocation to suspend")
    client.pause(run.run_id)
    client.signal(run.run_id, "go", "1")
    # A claim after the signal: the server invokes another run to its end meanwhile, and
    # would have invoked this one in the same pass had it been claimable.
    other, _ = client.start_run("chain", "3")
    assert client.wait_ended(other.run_id, 30).status is ExecutionStatus.SUCCEEDED
    assert client.get(run.run_id).status is ExecutionStatus.PAUSED
    before = invocations()
    assert [op.name for op in client.operations(run.run_id) if op.name == "second"] == []
    client.resume(run.run_id)
    done = client.wait_ended(run.run_id, 30)
    assert done.status is ExecutionStatus.SUCCEEDED and json.loads(done.result or "") == 22
    assert invocations() == before + 1  # once, on resume


def test_a_push_invocation_in_flight_finishes_its_step_then_holds(
        pushed: tuple[Store, Seen]) -> None:
    store, _ = pushed
    client = durable.Client(store)
    run, _ = client.start_run("gated", None)
    assert push_wire_functions.ENTERED.wait(30)
    client.pause(run.run_id)
    push_wire_functions.GATE.set()
    wait_until(lambda: any(e.type == "InvocationCompleted" for e in client.history(run.run_id)),
               "the invocation in flight to end")
    names = {op.name: op.status.value for op in client.operations(run.run_id)}
    assert names == {"slow": "SUCCEEDED"}  # checkpointed; "after" not begun
    assert client.get(run.run_id).status is ExecutionStatus.PAUSED
    client.resume(run.run_id)
    done = client.wait_ended(run.run_id, 30)
    assert json.loads(done.result or "") == ["slow", "after"]
