"""Auth over a real socket: with a token every API call and UI page needs it (bearer header or
the login form's cookie); without one the server will not bind beyond loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest

from durable.server.serve import is_loopback
from tests.kit import ROOT
from tests.serverkit import DURABLE, Server

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("auth"), TOKEN) as s:
        yield s


@pytest.mark.parametrize("method, path", [
    ("GET", "/api/runs"), ("POST", "/api/runs"), ("GET", "/api/runs/x"),
    ("POST", "/api/callbacks/x/succeed"), ("POST", "/hooks/echo"), ("GET", "/openapi.json"),
    ("GET", "/api/workflows"),
])
def test_api_calls_need_the_token(server: Server, method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.request(method, server.url + path, headers=headers, json={})
        assert response.status_code == 401, (headers, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_bearer_token_opens_the_api(server: Server) -> None:
    with server.client() as api:
        started = api.post("/api/runs", json={"workflow": "echo", "input": {"k": 1}})
        assert started.status_code == 201
        assert api.get("/api/runs").json()["runs"][0]["run_id"] == started.json()["run_id"]
        assert api.get("/openapi.json").status_code == 200


def test_ui_pages_send_browsers_to_the_login_form(server: Server) -> None:
    page = httpx.get(f"{server.url}/runs/abc?x=1", headers={"Accept": "text/html"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fruns%2Fabc%3Fx%3D1"
    assert "Log in" in httpx.get(f"{server.url}/login").text


def test_the_login_form_sets_a_cookie_that_opens_pages_and_api(server: Server) -> None:
    with httpx.Client(base_url=server.url) as browser:
        wrong = browser.post("/login", data={"token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "not the server" in wrong.text
        assert browser.get("/", headers={"Accept": "text/html"}).status_code == 303
        login = browser.post("/login", data={"token": TOKEN, "next": "//evil.example/"})
        assert login.status_code == 303 and login.headers["location"] == "/"  # no open redirect
        cookie = login.headers["set-cookie"]
        assert TOKEN not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert browser.get("/").status_code == 200
        assert browser.get("/api/runs").status_code == 200
        browser.post("/logout")
        assert browser.get("/api/runs").status_code == 401


def test_static_assets_need_no_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/static/app.js").status_code == 200


def test_no_token_means_loopback_only() -> None:
    done = subprocess.run([DURABLE, "server", "--host", "0.0.0.0", "--port", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without a token" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.8.0.1", True), ("0.0.0.0", False), ("192.168.1.4", False), ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
