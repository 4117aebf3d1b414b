"""Push mode's wire: the checkpoints of branches that complete together travel in one request,
a function host and a server keep their connections alive, the invocation carries the run's
state (no state call), and a host killed while batches are in flight loses no completed step
and completes none twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import durable
from durable.invoke.keepalive import Pool
from durable.invoke.push import FunctionSpec, register
from durable.server import serve
from durable.server.app import create_app
from durable.store import Store, open_store
from tests.apps import push_wire_functions
from tests.apps.serverless_kit import register as register_cli
from tests.apps.serverless_kit import start_function_host, start_server
from tests.kit import free_port, stopping, wait_until
from tests.serverkit import serving

CHECKPOINT = "/checkpoint"


@dataclass
class Request:
    method: str
    path: str
    connection: tuple[str, int]  # the client's address and port: one per TCP connection
    body: bytes


@dataclass
class Seen:
    """An ASGI app in front of another, noting every HTTP request it passes on."""

    app: ASGIApp
    requests: list[Request] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def noting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message
        await self.app(scope, noting, send)
        client = scope["client"]
        self.requests.append(Request(scope["method"], scope["path"], (client[0], client[1]),
                                     b"".join(chunks)))

    def checkpoints(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(CHECKPOINT)]


@dataclass
class Wire:
    store: Store
    server: Seen
    host: Seen


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[Wire]:
    """A durable server and a function host (`durable.serve`), both under uvicorn on
    loopback, each behind a `Seen`; the functions of tests/apps/push_wire_functions.py are
    registered with the server."""
    store = open_store(f"sqlite:///{tmp_path}/wire.db")
    host = Seen(push_wire_functions.app)
    port = free_port()
    server = Seen(create_app(store, public_url=f"http://127.0.0.1:{port}"))
    try:
        with serving(host) as host_url:
            for name in ("fanout", "chain"):
                register(store, FunctionSpec(name, url=f"{host_url}/{name}"))
            with serving(server, port):
                yield Wire(store, server, host)
    finally:
        store.close()


def run(store: Store, function: str, n: int) -> tuple[str, object]:
    """Run `function(n)` to its end; its run id and result."""
    client = durable.Client(store)
    started, _ = client.start_run(function, json.dumps(n))
    done = client.wait_ended(started.run_id, 60)
    assert done.status.value == "SUCCEEDED", done
    return done.run_id, json.loads(done.result or "null")


def step_updates(request: Request) -> list[str]:
    return [u["Id"] for u in json.loads(request.body)["Updates"]
            if u["Type"] == "STEP" and u["Action"] == "SUCCEED"]


def test_the_step_completions_of_concurrent_branches_go_in_one_checkpoint(wire: Wire) -> None:
    run_id, result = run(wire.store, "fanout", 8)
    assert result == [0, 2, 4, 6, 8, 10, 12, 14]
    per_request = [len(step_updates(r)) for r in wire.server.checkpoints()]
    assert sum(per_request) == 8
    assert per_request.count(8) == 1, per_request  # all eight in one request, none alone
    ops = {op.name: op for op in durable.Client(wire.store).operations(run_id)}
    assert [ops[f"double{i}"].result for i in range(8)] == [str(i * 2) for i in range(8)]


def test_checkpoints_and_invocations_reuse_one_connection_and_fetch_no_state(
        wire: Wire) -> None:
    assert run(wire.store, "chain", 20)[1] == sum(i * 2 for i in range(20))
    assert run(wire.store, "chain", 5)[1] == sum(i * 2 for i in range(5))
    checkpoints = wire.server.checkpoints()
    assert len(checkpoints) == 25  # a step each; the result goes back as the answer
    assert len({r.connection for r in checkpoints}) == 1  # kept alive across both runs
    invocations = [r for r in wire.host.requests if r.method == "POST"]
    assert len(invocations) == 2 and len({r.connection for r in invocations}) == 1
    # The invocation carried the run's state: no GetDurableExecutionState call at all.
    assert not [r for r in wire.server.requests if r.path.endswith("/state")]


def test_a_host_killed_while_batches_are_in_flight_loses_no_step_and_repeats_none(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/durable.db"
    fx = tmp_path / "effects.log"
    server = start_server(tmp_path, db)
    port = free_port()
    app = "tests.apps.push_wire_functions:app"
    host = start_function_host(tmp_path, app, "http://127.0.0.1:1", port, PUSH_EFFECTS=str(fx))
    back = None
    store = open_store(db)
    try:
        register_cli(db, "waves", f"{host.url}/waves")
        client = durable.Client(store)
        started, _ = client.start_run("waves", json.dumps([3, 12]))

        def ran() -> Counter[str]:
            return Counter(fx.read_text().split()) if fx.exists() else Counter()
        wait_until(lambda: len(ran()) >= 18, "half the step bodies to run", interval=0.005)
        os.kill(host.pid, signal.SIGKILL)  # branches of the second wave are mid-checkpoint
        host.wait_exit()
        durable_before = {str(op.result) for op in client.operations(started.run_id)
                          if op.status.value == "SUCCEEDED" and op.type.value == "STEP"}
        assert 0 < len(durable_before) < 36
        back = start_function_host(tmp_path, app, "http://127.0.0.1:1", port,
                                   PUSH_EFFECTS=str(fx))
        done = client.wait_ended(started.run_id, 60)
        assert done.status.value == "SUCCEEDED", done
        assert json.loads(done.result or "null") == sum(range(36))
        effects = ran()
        assert set(effects) == {str(i) for i in range(36)}  # every step ran
        for item in durable_before:  # what was durable before the kill never ran again
            assert effects[item] == 1, (item, effects)
        succeeded = Counter(e.operation_id for e in client.history(started.run_id)
                            if e.type == "StepSucceeded")
        assert len(succeeded) == 36 and set(succeeded.values()) == {1}  # none completed twice
    finally:
        store.close()
        with stopping(server, host, *([back] if back else [])):
            pass


def test_both_ends_send_without_waiting_for_acks() -> None:
    """TCP_NODELAY on both ends of a kept-alive connection: without it a request's body (or an
    answer's) waits behind the delayed ACK of its headers, 40 ms a request on Linux."""
    async def accepted_nodelay() -> int:
        nodelay: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            nodelay.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()
        server = await asyncio.start_server(accept, sock=serve._listen("127.0.0.1", port))
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return await asyncio.wait_for(nodelay, 10)
    port = free_port()
    assert asyncio.run(accepted_nodelay()) == 1
    with socket.create_server(("127.0.0.1", 0)) as listening:
        conn, _ = Pool()._take(("http", "127.0.0.1", listening.getsockname()[1]), 10)
        try:
            assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        finally:
            conn.close()
