"""`Guard`: what every request to `durable server` passes before any route sees it.

A pure ASGI middleware, so it works from the request's headers alone and decides before a byte
of the body is read; routes never have to remember a check. In order:

1. `Host` must name this server (`Hosts`): an IP address, `localhost`, or a configured name.
   Otherwise a page on a name an attacker controls, re-pointed at this address (DNS
   rebinding), would be same-origin with it.
2. A write (any method but GET, HEAD, OPTIONS) from a browser must come from one of this
   server's own pages: `Sec-Fetch-Site`, or else `Origin`, says where it comes from. Without
   this, any page could post a form (no body, or `text/plain`) that cancels a run or starts a
   webhook, and a page on another port of the same host shares the login cookie's site.
   Clients that send neither header (curl, httpx, boto3) are not browsers and pass.
3. The token, on the routes that need it (`Zone.authenticated`): a bearer token or a UI session,
   else 401 at once. A webhook with a secret takes its body's signature instead (read, within
   the limit, to check it).
4. The body's size: a `Content-Length` over the route's limit is refused before reading, and a
   body sent without one is counted as it streams and refused when it runs past. The app never
   holds more than the limit.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from durable.server import errors
from durable.server.auth import SIGNATURE, Auth, signed

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SMALL_BODY = 64 * 1024
"""The limit where no route expects more than a form: the login form, body-less actions."""
DEFAULT_PORTS = {"http": 80, "https": 443}

Refuse = Callable[[int, str, str], Response]
"""Renders a refusal (status, code, message) in a router's own error shape."""


@dataclass(frozen=True, slots=True)
class Zone:
    """How the guard treats the requests of one router (an `app.Mount`)."""

    authenticated: bool
    """The guard asks for the server's token (False: public, or the router checks itself)."""
    max_body: int
    refuse: Refuse = errors.error_response


@dataclass(frozen=True, slots=True)
class Hosts:
    """The `Host` names this server answers to, besides any IP address (which no DNS answer
    can re-point) and `localhost`. `any`: every name (a proxy in front checks them)."""

    names: frozenset[str]
    any: bool = False

    @classmethod
    def of(cls, entries: Iterable[str]) -> Hosts:
        """From names, `name:port`s or URLs, separated by commas or repeated; `*`: any."""
        names = {"localhost"}
        for entry in entries:
            for part in filter(None, re.split(r"[,\s]+", entry)):
                if part == "*":
                    return cls(frozenset(names), any=True)
                name = _hostname(part if "//" in part else "//" + part)
                if name:
                    names.add(name)
        return cls(frozenset(names))

    def allows(self, host: str | None) -> bool:
        if self.any or host is None:  # no Host at all: HTTP/1.0, not a browser
            return True
        name = _hostname("//" + host)
        if name is None:
            return False
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            return name in self.names


def _hostname(url: str) -> str | None:
    try:
        name = urlsplit(url).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


class BodyTooLarge(Exception):
    """Raised into the app by the body it reads, once that runs past the route's limit."""


class Guard:
    """The middleware; `zones` pairs route paths with how to treat them (`fallback`: a path
    no router serves), `signed_hooks` maps a webhook's path to its secret."""

    def __init__(self, app: ASGIApp, *, auth: Auth, hosts: Hosts,
                 zones: list[tuple[re.Pattern[str], Zone]], fallback: Zone,
                 signed_hooks: Mapping[str, str]) -> None:
        self.app, self.auth, self.hosts = app, auth, hosts
        self.zones, self.fallback, self.signed_hooks = zones, fallback, signed_hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        zone = next((z for regex, z in self.zones if regex.match(path)), self.fallback)
        headers = Headers(scope=scope)
        pending = _has_body(headers)
        secret = self.signed_hooks.get(path)
        if secret is not None and self.auth.proves_token(headers):
            secret = None  # the token opens every route: no signature needed
        refusal = (self._misdirected(scope, headers, zone)
                   or self._unauthenticated(scope, headers, zone, secret)
                   or _too_large(zone, headers.get("content-length", "")))
        if refusal is not None:
            if pending:  # the connection closes after the answer: the body is never read
                refusal.headers["connection"] = "close"
            await refusal(scope, receive, send)
        elif secret is not None:
            await self._signed(scope, receive, send, zone, secret, headers[SIGNATURE])
        else:
            await self._bounded(scope, receive, send, zone)

    def _misdirected(self, scope: Scope, headers: Headers, zone: Zone) -> Response | None:
        """Refused for where it comes from: another Host name, or another site's page."""
        host = headers.get("host")
        if not self.hosts.allows(host):
            return zone.refuse(400, "host_not_allowed", f"this server does not answer to Host "
                               f"{host!r}; if that is its name, start it with --allowed-host "
                               "NAME (or DURABLE_ALLOWED_HOSTS)")
        if scope["method"] not in SAFE_METHODS:
            where = _cross_site(headers)
            if where is not None:
                return zone.refuse(403, "cross_site", f"refused a {scope['method']} from "
                                   f"another site's page ({where}): the server takes writes "
                                   "from its own pages and from clients that are not browsers")
        return None

    def _unauthenticated(self, scope: Scope, headers: Headers, zone: Zone,
                         secret: str | None) -> Response | None:
        if secret is not None:
            if SIGNATURE in headers:
                return None  # checked once the body is read
            return zone.refuse(401, "signature_required", "this webhook needs the signature of "
                               f"its body ({SIGNATURE}: sha256=<hex HMAC-SHA256 with the "
                               "webhook's secret>) or the server's token")
        if zone.authenticated and not self.auth.admits(headers):
            return errors.unauthenticated(Request(scope))
        return None

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, zone: Zone) -> None:
        """The app, reading a body counted as it arrives; once past the limit, the app's read
        fails and its answer is replaced by the 413."""
        seen, over, started = 0, False, False

        async def counted() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > zone.max_body:
                    over = True
                    raise BodyTooLarge
            return message

        async def answer(message: Message) -> None:
            nonlocal started
            if over:  # what the app says about a body it could not read: the 413 goes instead
                return
            started = started or message["type"] == "http.response.start"
            await send(message)
        try:
            await self.app(scope, counted, answer)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _past_limit(zone)(scope, receive, send)

    async def _signed(self, scope: Scope, receive: Receive, send: Send, zone: Zone,
                      secret: str, given: str) -> None:
        """A webhook with a secret: read its body (within the limit), check the signature, and
        hand the app the same body."""
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the sender went away
                return
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > zone.max_body:
                await _past_limit(zone)(scope, receive, send)
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if not signed(body, secret, given):
            await zone.refuse(401, "bad_signature", f"{SIGNATURE} is not the signature of this "
                              "body with the webhook's secret")(scope, receive, send)
            return
        replayed = False

        async def again() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, again, send)


def _cross_site(headers: Headers) -> str | None:
    """Where a browser's request comes from when that is not this server, else None. The
    browser sets both headers itself: a page cannot forge them."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return None if site in ("same-origin", "none") else f"Sec-Fetch-Site: {site}"
    origin = headers.get("origin")
    if origin is None or _same_origin(origin, headers.get("host", "")):
        return None
    return f"Origin: {origin}"


def _same_origin(origin: str, host: str) -> bool:
    try:
        theirs, ours = urlsplit(origin), urlsplit("//" + host)
        default = DEFAULT_PORTS.get(theirs.scheme)
        return (theirs.hostname is not None and theirs.hostname == ours.hostname
                and (theirs.port or default) == (ours.port or default))
    except ValueError:  # a port that is not a number
        return False


def _has_body(headers: Headers) -> bool:
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _too_large(zone: Zone, length: str) -> Response | None:
    """The 413 for a declared length over the limit, refused before reading."""
    return _past_limit(zone) if length.isdigit() and int(length) > zone.max_body else None


def _past_limit(zone: Zone) -> Response:
    response = zone.refuse(413, "too_large", f"the request body is larger than this route "
                           f"takes ({zone.max_body} bytes; `durable server --max-body` sets "
                           "the limit of the API and webhooks)")
    response.headers["connection"] = "close"  # the rest of the body is never read
    return response
