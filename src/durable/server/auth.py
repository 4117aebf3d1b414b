"""Who may call the server: its token, the web UI's sessions, and webhooks' own secrets.

API clients send `Authorization: Bearer <token>`. Browsers log in once through a form that opens
a server-side session: the cookie holds only a random session id, which expires after
`SESSION_SECONDS`, is forgotten by "Log out" and by a restart, and is named after the port the
browser reached (cookies go to every port of a host, so two servers on one host must not read
each other's). HttpOnly and SameSite=Strict keep it from scripts and other sites' requests;
`guard.Guard` refuses cross-site writes besides. Every comparison is constant-time.

A webhook whose workflow has a secret (`DURABLE_WEBHOOK_SECRET_<NAME>`) is opened by a
signature of the request's body with it, as GitHub sends one (`X-Hub-Signature-256: sha256=
<hex HMAC-SHA256>`), so a sender need not hold the server's token.

The checks run in `guard.Guard`, before a route reads any body; here are the pieces it uses and
the login form.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers
from starlette.requests import cookie_parser

from durable.errors import UsageError
from durable.server.templating import render

SESSION_SECONDS = 12 * 3600.0
"""A UI session's absolute lifetime: after it the browser logs in again."""
MAX_SESSIONS = 10_000
"""Live sessions kept at most; beyond it the oldest go (each login opens one)."""
MIN_SECRET = 16
MIN_DISTINCT = 6
SIGNATURE = "x-hub-signature-256"
SECRET_ENV = "DURABLE_WEBHOOK_SECRET_"
TOKEN = "the server's token (DURABLE_TOKEN or --token)"

router = APIRouter(include_in_schema=False)


def check_secret(value: str, what: str) -> None:
    """Refuse a token or secret that can be guessed or that a header cannot carry intact: the
    server's whole protection rests on it (a one-space token used to pass)."""
    how = ("use a random one, e.g. `python -c 'import secrets; "
           "print(secrets.token_urlsafe(32))'`")
    if not (value.isascii() and value.isprintable()) or value != value.strip():
        raise UsageError(f"{what} must be printable ASCII without leading or trailing spaces "
                         f"(an HTTP header carries it); {how}")
    if len(value) < MIN_SECRET or len(set(value)) < MIN_DISTINCT:
        raise UsageError(f"{what} is too weak: it needs at least {MIN_SECRET} characters, "
                         f"{MIN_DISTINCT} of them different; {how}")


def matches(given: str, secret: str) -> bool:
    """Constant-time: how long a guess matched must not show in the answer's timing."""
    return hmac.compare_digest(given.encode(), secret.encode())


class Sessions:
    """The UI's live sessions, server-side: a random id each, kept as its SHA-256 (a memory dump
    or a timing of the lookup shows no usable id) with the time it expires."""

    def __init__(self, lifetime: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime, self.limit, self.clock = lifetime, limit, clock
        self._expiry: dict[bytes, float] = {}  # in opening order: the oldest first
        self._lock = threading.Lock()  # logins and the guard may run on different threads

    def open(self) -> str:
        session = secrets.token_urlsafe(32)
        with self._lock:
            self._expiry[_digest(session)] = self.clock() + self.lifetime
            while len(self._expiry) > self.limit:
                del self._expiry[next(iter(self._expiry))]
        return session

    def valid(self, session: str) -> bool:
        key = _digest(session)
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is not None and expiry <= self.clock():
                del self._expiry[key]
                expiry = None
        return expiry is not None

    def close(self, session: str) -> None:
        with self._lock:
            self._expiry.pop(_digest(session), None)


def _digest(session: str) -> bytes:
    return hashlib.sha256(session.encode()).digest()


class Auth:
    """The server's token (None: no auth) and the sessions opened with it."""

    def __init__(self, token: str | None, sessions: Sessions | None = None) -> None:
        if token is not None:
            check_secret(token, TOKEN)
        self.token = token
        self.sessions = sessions if sessions is not None else Sessions()

    def admits(self, headers: Headers) -> bool:
        """No token to ask for, or the request carries it (bearer) or a live session."""
        return self.token is None or self.proves_token(headers)

    def proves_token(self, headers: Headers) -> bool:
        """There is a token and the request carries it, or a session opened with it."""
        if self.token is None:
            return False
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and matches(given.strip(), self.token):
            return True
        session = cookie_parser(headers.get("cookie", "")).get(cookie_name(headers))
        return session is not None and self.sessions.valid(session)


def identity(request: Request) -> str:
    """Who made a request, as a run's history records it: a fingerprint of the token it
    proved (never the token itself), and whether by bearer header or a login session; on a
    server without a token, "anonymous"."""
    auth = _auth(request)
    if auth.token is None:
        return "anonymous"
    fingerprint = hashlib.sha256(auth.token.encode()).hexdigest()[:12]
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    how = "bearer" if scheme.lower() == "bearer" and matches(given.strip(), auth.token) \
        else "session"
    return f"token {fingerprint} ({how})"


def cookie_name(headers: Headers) -> str:
    """`durable_session_<port>`, the port being the one the browser reached."""
    host = urlsplit("//" + headers.get("host", ""))
    try:
        port = host.port
    except ValueError:
        port = None
    return f"durable_session_{port or 'default'}"


# -- webhooks' secrets -------------------------------------------------------------------------

def secret_env(workflow: str) -> str:
    """`DURABLE_WEBHOOK_SECRET_<NAME>`: the name upper-cased, each run of other characters `_`."""
    return SECRET_ENV + re.sub(r"[^A-Z0-9]+", "_", workflow.upper()).strip("_")


def webhook_secrets(names: Iterable[str], prefix: str,
                    environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The secret of each webhook that has one, keyed by its path (`<prefix>/<name>`)."""
    found = {}
    for name in names:
        var = secret_env(name)
        if var in environ:
            check_secret(environ[var], var)
            found[f"{prefix}/{name}"] = environ[var]
    return found


def signed(body: bytes, secret: str, header: str) -> bool:
    """`header` is `sha256=<hex HMAC-SHA256 of body with secret>`."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


# -- the login form --------------------------------------------------------------------------

def _auth(request: Request) -> Auth:
    auth: Auth = request.app.state.durable_auth
    return auth


def _safe_next(target: str | None) -> str:
    """Only a path on this server: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next), "failed": False})


@router.post("/login")
async def login(request: Request) -> Response:
    auth = _auth(request)
    form = parse_qs((await request.body()).decode(errors="replace"))
    given = form.get("token", [""])[0]
    target = _safe_next(form.get("next", ["/"])[0])
    if auth.token is not None and not matches(given, auth.token):
        return render(request, "login.html", {"next": target, "failed": True}, status=401)
    response = RedirectResponse(target, status_code=303)
    if auth.token is not None:
        response.set_cookie(cookie_name(request.headers), auth.sessions.open(),
                            max_age=int(auth.sessions.lifetime), httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    auth, name = _auth(request), cookie_name(request.headers)
    session = request.cookies.get(name)
    if session is not None:
        auth.sessions.close(session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(name, httponly=True, samesite="strict")
    return response
