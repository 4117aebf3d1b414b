"""Stream writes from the step body of a function served over HTTP: the function host sends
them to the server that invoked it with its checkpoints (contract.STREAM_CHUNKS), marked with
the attempt and fenced by the invocation's token. Real `durable server` and function host
processes (uvicorn) on both stores, one host SIGKILLed mid-step; the data plane's rules at the
transaction level; a host whose request with chunks failed checkpointing nothing more."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import durable
from durable import Context, workflow
from durable.engine import machine
from durable.invoke import dataplane
from durable.invoke.contract import INVALID_TOKEN, STREAM_CHUNKS, ContractError, chunk_to_wire
from durable.invoke.host import BackendError, HttpBackend, run_invocation
from durable.model.streams import StreamChunk, StreamEntry, StreamKind
from durable.server.app import create_app
from durable.store import Store, open_store
from tests.apps.serverless_kit import Service, register, start_function_host, start_server
from tests.kit import free_port, stopping, wait_until
from tests.serverkit import serving
from tests.streamkit import Follower

APP = "tests.apps.push_stream_functions:app"
N = 6  # tokens the step writes; it holds after N // 2 while the hold file exists


@dataclass
class Push:
    db: str
    server: Service
    effects: Path
    hold: Path
    port: int
    client: durable.Client
    hosts: list[Service]

    def host(self) -> Service:
        """A function host on the registered port (a new one where a killed one was)."""
        host = start_function_host(self.effects.parent, APP, "http://127.0.0.1:1", self.port,
                                   PUSH_EFFECTS=str(self.effects), PUSH_HOLD=str(self.hold))
        self.hosts.append(host)
        return host

    def effects_seen(self) -> list[str]:
        return self.effects.read_text().splitlines()

    def start(self, fail_first: bool) -> str:
        return self.client.start_run("speak", json.dumps([N, fail_first]))[0].run_id


@pytest.fixture
def push(any_db: str, tmp_path: Path) -> Iterator[Push]:
    effects = tmp_path / "effects.txt"
    effects.touch()
    server = start_server(tmp_path, any_db)
    lab = Push(any_db, server, effects, tmp_path / "hold", free_port(), durable.Client(any_db),
               [])
    try:
        register(any_db, "speak", f"http://127.0.0.1:{lab.port}/speak")
        yield lab
    finally:
        lab.client.close()
        with stopping(server, *lab.hosts):
            pass


def tokens(entries: list[StreamEntry]) -> list[str]:
    return [str(e.data) if e.kind is StreamKind.VALUE else str(e.kind) for e in entries]


@pytest.mark.crash
def test_a_host_killed_mid_step_leaves_its_live_chunks_abandoned_and_the_retry_streams_anew(
        push: Push) -> None:
    push.hold.touch()
    host = push.host()
    run_id = push.start(fail_first=False)
    follower = Follower(push.db, run_id, "tokens")
    wait_until(lambda: "half" in push.effects_seen() and len(follower.entries) == N // 2,
               lambda: f"the step's first tokens, live over HTTP: {follower.entries}")
    os.kill(host.pid, signal.SIGKILL)
    host.wait_exit()
    push.hold.unlink()
    push.host()
    assert push.client.result(run_id, timeout=60) == N

    seen = follower.join()
    killed = [f"tok{i}" for i in range(N // 2)]
    assert tokens(seen) == [*killed, "abandoned", *(f"tok{i}" for i in range(N)), "closed"]
    assert [e.offset for e in seen] == list(range(1, len(seen) + 1))
    marker, kept = seen[N // 2], seen[N // 2 + 1:-1]
    assert {e.attempt_key for e in seen[:N // 2]} == {marker.attempt_key}
    assert {e.attempt_key for e in kept} == {kept[0].attempt_key} != {marker.attempt_key}
    later = list(push.client.stream(run_id, "tokens"))
    assert later == seen[N // 2:]  # the killed attempt's values left out, its marker kept


def test_a_failed_attempt_of_a_pushed_step_is_marked_abandoned_before_its_retry(
        push: Push) -> None:
    push.host()
    run_id = push.start(fail_first=True)
    assert push.client.result(run_id, timeout=60) == N
    seen = list(push.client.stream(run_id, "tokens", with_abandoned=True))
    assert tokens(seen) == ["tok0", "abandoned", *(f"tok{i}" for i in range(N)), "closed"]
    assert seen[0].attempt == 1 and seen[2].attempt == 2


def test_chunks_the_server_cannot_take_are_refused_with_what_to_fix(push: Push) -> None:
    arn = "arn:aws:lambda:us-east-1:000000000000:function:speak/durable-execution/x/y"
    url = f"{push.server.url}/2025-12-01/durable-executions/{arn}/checkpoint"
    for chunks, says in [("nope", "must be a list"),
                         ([{"Stream": "", "OperationId": "a", "Attempt": 1, "Timestamp": 1}],
                          "stream name"),
                         ([{"Stream": "t", "OperationId": "a", "Attempt": 0, "Timestamp": 1,
                            "Value": "1"}], "Attempt"),
                         ([{"Stream": "t", "OperationId": "a", "Attempt": 1, "Timestamp": 1,
                            "Value": "{oops"}], "not valid JSON")]:
        answer = httpx.post(url, json={"CheckpointToken": "t", STREAM_CHUNKS: chunks},
                            timeout=30)
        assert answer.status_code == 400, answer.text
        assert says in answer.json()["message"]


# -- the data plane's rules -------------------------------------------------------------------

@pytest.fixture
def store(any_db: str) -> Iterator[Store]:
    s = open_store(any_db)
    yield s
    s.close()


def envelope(store: Store, run_id: str, at: float, function: str = "fn") -> dict[str, Any]:
    """Lease the run as the engine would at time `at`; the new invocation's envelope."""
    (claimed,) = store.write_sync(lambda tx: machine.claim(tx, "w", at, 1, 30, [function]))
    opened: dict[str, Any] = store.write_sync(
        lambda tx: dataplane.open_invocation(tx, run_id, claimed.token))
    return opened


def invoke(store: Store, run_id: str, at: float) -> str:
    """Lease the run at time `at`; the new invocation's checkpoint token."""
    return str(envelope(store, run_id, at)["CheckpointToken"])


def checkpoint(store: Store, run_id: str, token: str, chunks: list[StreamChunk],
               updates: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(store.write_sync(lambda tx: dataplane.checkpoint(
        tx, run_id, token, updates or [], None, time.time(), chunks)))
    return answer


def test_a_stale_invocations_chunks_are_refused_and_its_attempt_is_marked_abandoned(
        store: Store) -> None:
    now = time.time()
    run, _ = store.write_sync(lambda tx: dataplane.start_execution(tx, "fn", "e1", None, now))
    first = invoke(store, run.run_id, now)
    said = [StreamChunk("t", json.dumps(f"tok{i}"), "s1", 1, now) for i in range(2)]
    first = checkpoint(store, run.run_id, first, said[:1])["CheckpointToken"]
    # The lease ran out and another invocation took the run over.
    invoke(store, run.run_id, now + 60)
    with pytest.raises(ContractError, match=INVALID_TOKEN):
        checkpoint(store, run.run_id, first, said[1:])
    entries = store.read(lambda tx: tx.stream_entries(run.run_id, "t", 0, 100, True))
    assert [(e.kind, e.data) for e in entries] == [(StreamKind.VALUE, "tok0"),
                                                   (StreamKind.ABANDONED, None)]


def test_chunks_go_in_before_the_outcome_they_ride_with(store: Store) -> None:
    now = time.time()
    run, _ = store.write_sync(lambda tx: dataplane.start_execution(tx, "fn", "e2", None, now))
    token = invoke(store, run.run_id, now)
    chunk = StreamChunk("t", '"tok0"', "s1", 1, now)
    assert chunk_to_wire(chunk)["Value"] == '"tok0"'
    checkpoint(store, run.run_id, token, [chunk], [
        {"Id": "s1", "Type": "STEP", "Action": "SUCCEED", "Name": "say", "Payload": "1"}])
    # A later claim settles the attempt as succeeded: its value stays, no marker comes.
    store.write_sync(lambda tx: machine.claim(tx, "w", now + 60, 1, 30, ["fn"]))
    entries = store.read(lambda tx: tx.stream_entries(run.run_id, "t", 0, 100, True))
    assert [(e.kind, e.data, e.attempt) for e in entries] == [(StreamKind.VALUE, "tok0", 1)]


# -- a request with chunks that fails -------------------------------------------------------

SENT_FIRST = threading.Event()
"""`chattering`'s body waits here after its first token, until the request carrying it failed."""


@workflow(name="chattering")
async def chattering(ctx: Context) -> int:
    def say() -> int:
        ctx.stream("t").write("tok0")
        assert SENT_FIRST.wait(30)
        ctx.stream("t").write("tok1")
        return 2
    return int(await ctx.step(say, name="say"))


@dataclass
class RefusingFirstChunks:
    """In front of the server: the first request carrying stream chunks gets a 503, as from
    an overloaded proxy, whether or not the server would have kept them; every other request
    is passed on, its body noted in `passed`."""

    app: ASGIApp
    passed: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if STREAM_CHUNKS.encode() in body and not SENT_FIRST.is_set():
            await JSONResponse({"message": "overloaded"}, status_code=503)(scope, receive, send)
            SENT_FIRST.set()
            return
        self.passed.append(body)

        async def replayed() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replayed, send)


async def test_after_a_request_with_chunks_fails_the_host_checkpoints_no_step_of_it(
        store: Store) -> None:
    SENT_FIRST.clear()
    now = time.time()
    run, _ = store.write_sync(
        lambda tx: dataplane.start_execution(tx, "chattering", "e3", None, now))
    front = RefusingFirstChunks(create_app(store))
    with serving(front) as url:
        opened = envelope(store, run.run_id, now, "chattering")
        with pytest.raises(BackendError, match="overloaded") as failed:
            await run_invocation(chattering, opened, HttpBackend(url))
    assert failed.value.retryable  # the function fails: invoked again, it resumes
    assert SENT_FIRST.is_set()
    # Whether tok0 was kept is unknown to the host: it sent nothing more, so the step did not
    # count as done with its chunks maybe lost.
    assert front.passed == []
    assert store.read(lambda tx: tx.operations(run.run_id)) == []
    assert store.read(lambda tx: tx.stream_entries(run.run_id, "t", 0, 100, True)) == []
