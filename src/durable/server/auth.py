"""Token auth: with a token set, every API call and UI page needs it.

API clients send `Authorization: Bearer <token>`. Browsers log in once through a form that sets
an HttpOnly, SameSite=Strict cookie holding an HMAC of the token (never the token itself), so
the UI's own requests carry it and other sites' pages cannot. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from durable.server.deps import ServerState, get_state
from durable.server.errors import Unauthenticated
from durable.server.templating import render

COOKIE = "durable_session"

router = APIRouter(include_in_schema=False)


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"durable-ui-session", hashlib.sha256).hexdigest()


def is_authenticated(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                          token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def require_token(request: Request,
                  state: Annotated[ServerState, Depends(get_state)]) -> None:
    """Dependency on every protected router (see `app.ROUTERS`)."""
    if not is_authenticated(request, state.token):
        raise Unauthenticated


def _safe_next(target: str | None) -> str:
    """Only a path on this server: never an open redirect to another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return render(request, "login.html", {"next": _safe_next(next), "failed": False})


@router.post("/login")
async def login(request: Request,
                state: Annotated[ServerState, Depends(get_state)]) -> Response:
    form = parse_qs((await request.body()).decode(errors="replace"))
    given = form.get("token", [""])[0]
    target = _safe_next(form.get("next", ["/"])[0])
    token = state.token
    if token is not None and not hmac.compare_digest(given.encode(), token.encode()):
        return render(request, "login.html", {"next": target, "failed": True}, status=401)
    response = RedirectResponse(target, status_code=303)
    if token is not None:
        response.set_cookie(COOKIE, session_value(token), httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
