"""What `durable server` refuses before a route runs (server/guard.py, server/auth.py): bodies
without the token or over their route's limit, unread; Host names that are not the server's;
writes from other sites' pages; expired, revoked or other ports' sessions; weak tokens; and
webhooks signed with the wrong secret. Also what stays out of a listing: whole payloads.

Most run the real app in process (Starlette's TestClient); what depends on reading from a
socket, refusing before a body has arrived, runs against the real console script on uvicorn.
"""

from __future__ import annotations

import hashlib
import hmac
import select
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from durable.errors import UsageError
from durable.server.app import create_app
from durable.server.auth import Sessions
from tests.apps import server_app
from tests.kit import ROOT
from tests.serverkit import DURABLE, Server

TOKEN = "guard-token-for-the-tests"
SECRET = "echo-webhook-secret-0123"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
URL = "http://127.0.0.1:8777"
WORKFLOWS = [server_app.approval, server_app.echo, server_app.slow_hook]
EVIL = "http://evil.example"


def app(tmp: Path, token: str | None = TOKEN, **kwargs: Any) -> Any:
    return create_app(f"sqlite:///{tmp}/guard.db", token=token, workflows=WORKFLOWS,
                      serve=False, **kwargs)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app(tmp_path), base_url=URL, follow_redirects=False) as c:
        yield c


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# -- bodies: refused unread, bounded while streaming ---------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("guard"), TOKEN, "--max-body", "64KiB",
                "--allowed-host", "durable.test",
                env={"DURABLE_WEBHOOK_SECRET_ECHO": SECRET}) as s:
        yield s


def exchange(server: Server, head: str, body: Iterator[bytes]) -> tuple[bytes, int]:
    """Send `head`, then `body` until the server answers; the answer and the bytes of body
    sent. The server must answer within 10 s of the last byte it took."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n")
        sent = 0
        for chunk in body:
            if select.select([conn], [], [], 0)[0]:
                break  # answered before the body was all sent
            try:
                conn.sendall(chunk)
            except OSError:  # it stopped reading and closed: the answer is there to read
                break
            sent += len(chunk)
        answer = b""
        while not answer.endswith(b"}"):
            try:
                data = conn.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return answer, sent


@pytest.mark.parametrize("path", ["/api/runs", "/hooks/slow_hook"])
@pytest.mark.parametrize("auth", ["", "Authorization: Bearer wrong-token-of-the-tests\n"])
def test_a_body_without_the_token_is_refused_before_it_is_read(server: Server, path: str,
                                                                auth: str) -> None:
    head = (f"POST {path} HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n{auth}"
            "Content-Length: 300000000\n")
    answer, sent = exchange(server, head, iter([b"[" * 65536]))
    assert answer.startswith(b"HTTP/1.1 401"), answer
    assert b'"unauthorized"' in answer and sent <= 65536


def test_a_declared_length_over_the_limit_is_refused_unread(server: Server) -> None:
    head = ("POST /api/runs HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n"
            f"Authorization: Bearer {TOKEN}\nContent-Length: 300000000\n")
    answer, _ = exchange(server, head, iter([b"{" * 1024]))
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b'"too_large"' in answer and b"65536 bytes" in answer


def chunks(size: int, count: int) -> Iterator[bytes]:
    for _ in range(count):
        yield f"{size:x}\r\n".encode() + b" " * size + b"\r\n"


def test_a_streamed_body_is_refused_once_it_runs_past_the_limit(server: Server) -> None:
    head = ("POST /hooks/slow_hook HTTP/1.1\nHost: 127.0.0.1\nTransfer-Encoding: chunked\n"
            f"Authorization: Bearer {TOKEN}\n")
    answer, sent = exchange(server, head, chunks(16384, 300 * 64))  # 300 MiB if all were sent
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert sent < 16 * 1024 * 1024  # what sockets buffer, far from what was on its way
    with server.client() as api:  # a streamed body within the limit goes through
        fits = api.post("/hooks/slow_hook", content=iter([b"  ", b"\n"]))
        assert fits.status_code == 202, fits.text


def test_the_server_answers_to_its_allowed_names_and_to_ips_only(server: Server) -> None:
    with server.client() as api:
        for host in ("durable.test:8777", "localhost", "127.0.0.1", "[::1]:1"):
            assert api.get("/api/workflows", headers={"Host": host}).status_code == 200, host
        refused = api.get("/api/workflows", headers={"Host": "rebound.example:8777"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "host_not_allowed"
        assert "--allowed-host" in refused.json()["error"]["message"]


def test_a_signed_webhook_needs_no_token(server: Server) -> None:
    body = b'{"via": "signature"}'
    with httpx.Client(base_url=server.url) as sender:  # no token
        signed = sender.post("/hooks/echo", content=body,
                             headers={"X-Hub-Signature-256": signature(body)})
        assert signed.status_code == 202, signed.text
        forged = sender.post("/hooks/echo", content=body,
                             headers={"X-Hub-Signature-256": signature(body, "other" * 5)})
        assert forged.status_code == 401 and forged.json()["error"]["code"] == "bad_signature"


def test_max_body_must_be_a_size() -> None:
    done = subprocess.run([DURABLE, "server", "--port", "1", "--max-body", "lots"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is not a size" in done.stderr
    assert "Traceback" not in done.stderr


def test_aws_routes_take_lambdas_six_megabytes_whatever_max_body_says(tmp_path: Path) -> None:
    with TestClient(app(tmp_path, token=None, max_body=1024), base_url=URL) as aws:
        path = "/2025-12-01/durable-executions/a%2Fb/checkpoint"
        read = aws.post(path, content=b"{" * (1024 * 1024))
        assert read.status_code == 400 and "not valid JSON" in read.json()["message"]
        big = aws.post(path, content=b"{" * (6 * 1024 * 1024 + 1))
        assert big.status_code == 413
        assert big.headers["x-amzn-errortype"] == "RequestTooLargeException"
        assert aws.post("/api/runs", content=b"{" * 1025).status_code == 413


def test_aws_routes_take_the_token_as_access_key_or_bearer(tmp_path: Path) -> None:
    path = "/2025-12-01/durable-executions/arn%2Fnope"
    signed = "AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/lambda/aws4_request, " \
             "SignedHeaders=host, Signature=00"
    with TestClient(app(tmp_path), base_url=URL) as aws:
        for header in (signed.format(TOKEN), f"Bearer {TOKEN}"):
            assert aws.get(path, headers={"Authorization": header}).status_code == 404
        for header in (signed.format("wrong"), "Bearer wrong", ""):
            denied = aws.get(path, headers={"Authorization": header})
            assert denied.status_code == 403
            assert denied.headers["x-amzn-errortype"] == "AccessDeniedException"


def test_checkpoints_skip_fastapis_router_but_not_the_guard(tmp_path: Path) -> None:
    routed: list[str] = []

    class Routed:  # innermost of the app's middleware: what reaches FastAPI's own stack
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                routed.append(scope["path"])
            await self.app(scope, receive, send)
    server = app(tmp_path)
    server.user_middleware.append(Middleware(Routed))
    path = "/2025-12-01/durable-executions/arn%3Anope/checkpoint"
    body = {"CheckpointToken": "not-a-token", "Updates": []}
    with TestClient(server, base_url=URL) as aws:
        answered = aws.post(path, headers=BEARER, json=body)
        assert answered.status_code == 400, answered.text
        assert answered.headers["x-amzn-errortype"] == "InvalidParameterValueException"
        denied = aws.post(path, json=body)
        assert denied.status_code == 403
        assert denied.headers["x-amzn-errortype"] == "AccessDeniedException"
        elsewhere = aws.post(path, headers={**BEARER, "Host": "rebound.example"}, json=body)
        assert elsewhere.status_code == 400 and "Host" in elsewhere.json()["message"]
        assert aws.post(path, headers=BEARER, content=b"{" * (6 * 1024 * 1024 + 1)
                        ).status_code == 413
        assert aws.get(path.replace("/checkpoint", "/state"), headers=BEARER,
                       params={"CheckpointToken": "x"}).status_code == 400
    assert routed == ["/2025-12-01/durable-executions/arn:nope/state"]


# -- listings ------------------------------------------------------------------------------------

def test_run_listings_carry_previews_not_payloads(client: TestClient) -> None:
    payload = {"blob": "x" * 300_000}
    started = client.post("/api/runs", headers=BEARER, json={"workflow": "not_loaded_here",
                                                              "input": payload, "id": "big"})
    assert started.status_code == 201, started.text
    (listed,) = client.get("/api/runs", headers=BEARER).json()["runs"]
    assert "input" not in listed and listed["result_preview"] is None
    preview = listed["input_preview"]
    assert preview.startswith('{"blob": "xxx') and preview.endswith("…") and len(preview) == 201
    assert client.get("/api/runs/big", headers=BEARER).json()["run"]["input"] == payload
    assert client.get("/", headers=BEARER).status_code == 200  # the UI's list too


def test_deeply_nested_json_on_a_webhook_is_a_400(client: TestClient) -> None:
    body = "[" * 100_000 + "]" * 100_000
    nested = client.post("/hooks/echo", headers=BEARER, content=body)
    assert nested.status_code == 400, nested.text
    assert nested.json()["error"]["code"] == "invalid_json"
    assert "nested too deeply" in nested.json()["error"]["message"]


# -- hosts -----------------------------------------------------------------------------------

def test_allowed_hosts_name_the_server_and_star_lets_any(tmp_path: Path) -> None:
    with TestClient(app(tmp_path, allowed_hosts=["ops.example.com, https://ui.example.com/"]),
                    base_url=URL, headers=BEARER) as named:
        for host in ("ops.example.com", "UI.example.com:443", "localhost:8777", "10.1.2.3"):
            assert named.get("/api/workflows", headers={"Host": host}).status_code == 200, host
        assert named.get("/api/workflows", headers={"Host": "other.example.com"}).status_code \
            == 400
    with TestClient(app(tmp_path, allowed_hosts=["*"]), base_url="http://anything.example",
                    headers=BEARER) as anything:
        assert anything.get("/api/workflows").status_code == 200


# -- cross-site writes ---------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    {"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site", "Origin": EVIL},
    {"Origin": "null"}, {"Origin": "http://127.0.0.1:9000"}, {"Sec-Fetch-Site": "same-site"},
])
def test_other_sites_pages_cannot_write_even_without_a_token(tmp_path: Path,
                                                             headers: dict[str, str]) -> None:
    with TestClient(app(tmp_path, token=None), base_url=URL) as open_server:
        cancel = open_server.post("/api/runs/some-run/cancel", headers=headers)  # a bare form
        assert cancel.status_code == 403, cancel.text
        assert cancel.json()["error"]["code"] == "cross_site"
        form = open_server.post("/hooks/echo", content=b'{"a": 1}',
                                headers={**headers, "Content-Type": "text/plain"})
        assert form.status_code == 403
        assert open_server.get("/api/runs", headers=headers).status_code == 200  # reads pass


def test_own_pages_and_clients_that_are_not_browsers_can_write(client: TestClient) -> None:
    for headers in ({}, {"Origin": URL}, {"Sec-Fetch-Site": "same-origin", "Origin": URL},
                    {"Origin": "http://127.0.0.1:8777", "Host": "127.0.0.1:8777"}):
        started = client.post("/api/runs", headers={**BEARER, **headers},
                              json={"workflow": "echo", "input": {"k": 1}})
        assert started.status_code in (200, 201), (headers, started.text)


def test_a_page_on_another_port_cannot_use_the_login_cookie(client: TestClient) -> None:
    assert client.post("/login", data={"token": TOKEN}).status_code == 303
    assert client.get("/api/runs").status_code == 200  # the cookie opens the API
    other_port = client.post("/api/runs", json={"workflow": "echo", "input": {}},
                             headers={"Origin": "http://127.0.0.1:9000"})
    assert other_port.status_code == 403


# -- sessions and tokens -------------------------------------------------------------------------

def test_logging_out_revokes_the_session(client: TestClient) -> None:
    login = client.post("/login", data={"token": TOKEN})
    session = login.cookies["durable_session_8777"]
    assert client.get("/api/runs").status_code == 200
    client.post("/logout")
    client.cookies.clear()
    replayed = client.get("/api/runs", headers={"Cookie": f"durable_session_8777={session}"})
    assert replayed.status_code == 401


def test_session_cookies_are_named_after_the_port_and_open_only_it(client: TestClient) -> None:
    login = client.post("/login", data={"token": TOKEN})
    cookie = login.headers["set-cookie"]
    assert cookie.startswith("durable_session_8777=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie
    session = login.cookies["durable_session_8777"]
    other = client.get("/api/runs", headers={"Host": "127.0.0.1:8778",
                                             "Cookie": f"durable_session_8777={session}"})
    assert other.status_code == 401


def test_sessions_expire_and_the_oldest_go_past_the_limit() -> None:
    now = [1000.0]
    sessions = Sessions(lifetime=60, limit=2, clock=lambda: now[0])
    first = sessions.open()
    now[0] += 59
    assert sessions.valid(first)
    now[0] += 1
    assert not sessions.valid(first)
    second, third, fourth = sessions.open(), sessions.open(), sessions.open()
    assert not sessions.valid(second) and sessions.valid(third) and sessions.valid(fourth)
    assert not sessions.valid("made-up")


def test_an_expired_session_no_longer_opens_the_ui(tmp_path: Path) -> None:
    now = [0.0]
    sessions = Sessions(lifetime=5, clock=lambda: now[0])
    with TestClient(app(tmp_path, sessions=sessions), base_url=URL) as browser:
        browser.post("/login", data={"token": TOKEN})
        assert browser.get("/api/runs").status_code == 200
        now[0] = 5
        assert browser.get("/api/runs").status_code == 401


@pytest.mark.parametrize("token, problem", [
    (" ", "printable ASCII"), ("short-token", "too weak"), ("a" * 40, "too weak"),
    (" padded-token-0123456789 ", "leading or trailing"), ("tokén-0123456789", "ASCII"),
])
def test_weak_tokens_are_refused_with_exit_2(token: str, problem: str) -> None:
    done = subprocess.run([DURABLE, "server", "--port", "1", "--token", token], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and problem in done.stderr, done.stderr
    assert "secrets.token_urlsafe" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(UsageError, match=problem):
        create_app("sqlite:///:memory:", token=token)


# -- webhook secrets -------------------------------------------------------------------------

def test_a_webhook_with_a_secret_takes_its_signature_or_the_token(tmp_path: Path) -> None:
    environ = {"DURABLE_WEBHOOK_SECRET_ECHO": SECRET}
    body = b'{"k": 1}'
    with TestClient(app(tmp_path, environ=environ, max_body=1024), base_url=URL) as hooks:
        signed = hooks.post("/hooks/echo", content=body,
                            headers={"X-Hub-Signature-256": signature(body)})
        assert signed.status_code == 202, signed.text
        assert hooks.get(f"/api/runs/{signed.json()['run_id']}",
                         headers=BEARER).json()["run"]["input"] == {"k": 1}
        unsigned = hooks.post("/hooks/echo", content=body)
        assert unsigned.status_code == 401
        assert unsigned.json()["error"]["code"] == "signature_required"
        assert hooks.post("/hooks/echo", content=body, headers=BEARER).status_code == 202
        big = b'{"k": "' + b"x" * 2000 + b'"}'
        assert hooks.post("/hooks/echo", content=big,
                          headers={"X-Hub-Signature-256": signature(big)}).status_code == 413
        assert hooks.post("/hooks/slow_hook", headers={  # no secret: the token it is
            "X-Hub-Signature-256": signature(b"")}).status_code == 401


def test_a_webhook_secret_holds_on_a_server_without_a_token(tmp_path: Path) -> None:
    environ = {"DURABLE_WEBHOOK_SECRET_ECHO": SECRET}
    with TestClient(app(tmp_path, token=None, environ=environ), base_url=URL) as hooks:
        assert hooks.post("/hooks/echo", content=b"{}").status_code == 401
        assert hooks.post("/hooks/echo", content=b"{}", headers={
            "X-Hub-Signature-256": signature(b"{}")}).status_code == 202
        assert hooks.post("/hooks/slow_hook").status_code == 202  # without a secret: open


def test_a_weak_webhook_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="DURABLE_WEBHOOK_SECRET_SLOW_HOOK is too weak"):
        app(tmp_path, environ={"DURABLE_WEBHOOK_SECRET_SLOW_HOOK": "secret"})
