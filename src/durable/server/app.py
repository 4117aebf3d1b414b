"""`create_app`: the control API, webhooks and web UI of `durable server` as one ASGI app.

Routers are mounted from `ROUTERS`, a list of dotted references, so another part of the server
(e.g. the AWS durable-execution contract) joins with a one-line change. Each is protected by the
token unless its entry says it checks requests itself, and each has a body limit. Both are
enforced by `guard.Guard` in front of the whole app, which sees a request before any route reads
its body (and checks its Host and where a browser's write comes from). With `workflows` (and
`serve=True`) the app also runs a Worker for them in its own event loop, from startup to
shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.routing import Route

from durable.client import Client
from durable.engine.retention import Retention
from durable.engine.worker import Worker
from durable.invoke.contract import MAX_CHECKPOINT_BYTES
from durable.sdk.workflow import Workflow
from durable.server import errors, hooks
from durable.server.auth import Auth, Sessions, webhook_secrets
from durable.server.deps import ServerState
from durable.server.guard import SMALL_BODY, Guard, Hosts, Refuse, Zone
from durable.store import Store


@dataclass(frozen=True, slots=True)
class Mount:
    """A router to include: `module:attribute`. `own_auth`: it checks requests itself (e.g. a
    protocol with its own signatures), so the server's token is not required on it.
    `max_body`: the largest body its routes take (None: the server's `max_body`). `refuse`:
    `module:function` rendering the guard's refusals in the router's own error shape.
    `lean`: `module:class`, an ASGI middleware answering some of its routes inside the guard,
    before FastAPI's own stack (the router keeps them: the guard's zones come from it)."""

    ref: str
    own_auth: bool = False
    max_body: int | None = None
    refuse: str | None = None
    lean: str | None = None


ROUTERS: list[Mount] = [
    Mount("durable.server.auth:router", own_auth=True, max_body=SMALL_BODY),  # the login form
    Mount("durable.server.api:router"),
    Mount("durable.server.kv:router"),
    Mount("durable.server.operate:router"),
    Mount("durable.server.functions:router"),
    Mount("durable.server.observe:router"),
    Mount("durable.server.hooks:router"),
    Mount("durable.server.events:router"),
    Mount("durable.server.events:hooks"),
    Mount("durable.server.ui:router", max_body=SMALL_BODY),
    Mount("durable.server.metrics:router", max_body=SMALL_BODY),
    # AWS's Lambda API: SigV4, checked there; bodies up to Lambda's own 6 MB
    Mount("durable.server.aws:router", own_auth=True, max_body=MAX_CHECKPOINT_BYTES,
          refuse="durable.server.aws:refusal", lean="durable.server.aws:LeanCheckpoints"),
]
DEFAULT_MAX_BODY = 1024 * 1024
"""The API's and webhooks' body limit unless `max_body` says otherwise: 1 MiB."""

STATIC = Path(__file__).parent / "static"


def _load(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _version() -> str:
    try:
        return version("durable-serverless")
    except PackageNotFoundError:
        return "0"


def create_app(db: Client | Store | str | None = None, *, token: str | None = None,
               workflows: Iterable[Workflow[..., Any]] = (), serve: bool = True,
               wait_limit: float = 30.0, allowed_hosts: Iterable[str] = (),
               max_body: int = DEFAULT_MAX_BODY, sessions: Sessions | None = None,
               environ: Mapping[str, str] = os.environ,
               public_url: str | None = None, retention: float | None = None) -> FastAPI:
    """The server app on a Client (its store and its clock, e.g. a `durable.testing`
    environment's virtual one), a Store, or a database URL (opened at startup, closed at
    shutdown; None: DURABLE_DB or the embedded default). A Client or Store given is the caller's
    to close.

    `token`: required on every protected route (None: no auth; the CLI refuses to bind beyond
    loopback then); a weak one is refused with UsageError. `workflows`: loaded workflows, used
    to check input and expose webhooks and, with `serve`, served by a Worker inside the app.
    `wait_limit`: the longest a request waits for a run to end. `allowed_hosts`: the names this
    server answers to besides IP addresses and localhost (`guard.Hosts`; `*`: any).
    `max_body`: the API's and webhooks' body limit in bytes. `sessions`: the UI's (default:
    12-hour ones). `environ`: where webhooks' secrets (`DURABLE_WEBHOOK_SECRET_<NAME>`) and
    `DURABLE_PUBLIC_URL` are read. `public_url`: where registered functions reach this server
    to checkpoint (default: DURABLE_PUBLIC_URL; without either, learned from the first call to
    the AWS API); its host is one the server answers to. `retention`: delete runs that ended
    longer ago than this many seconds, in the background (`engine/retention.py`).
    """
    public = (public_url or environ.get("DURABLE_PUBLIC_URL") or "").rstrip("/") or None
    loaded = {wf.name: wf for wf in workflows}
    auth = Auth(token, sessions)
    hooked = [name for name, wf in loaded.items() if getattr(wf, "webhook", False)]
    signed_hooks = webhook_secrets(hooked, hooks.router.prefix, environ)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not isinstance(db, Client | Store)
        client = db if isinstance(db, Client) else Client(db)
        app.state.durable = ServerState(client, loaded, token, wait_limit, public)
        worker = (Worker(loaded.values(), client.store, clock=client.clock)
                  if serve and loaded else None)
        if worker is not None:
            await worker.register_triggers()
        task = asyncio.create_task(worker.run_async()) if worker else None
        sweeps = (asyncio.create_task(Retention(client.store, retention, client.clock).run())
                  if retention else None)
        try:
            yield
        finally:
            if sweeps is not None:
                sweeps.cancel()
            if worker is not None and task is not None:
                worker.stop()
                await task
            if owned:
                client.close()

    app = FastAPI(title="Durable", version=_version(), lifespan=lifespan,
                  description="Control API of a Durable server: start, inspect, wait for and "
                  "talk to durable workflow runs. Errors are `{\"error\": {\"code\", "
                  "\"message\"}}`.", openapi_url=None, docs_url=None, redoc_url=None)
    errors.install(app)
    zones: list[tuple[re.Pattern[str], Zone]] = []
    for mount in ROUTERS:
        router: APIRouter = _load(mount.ref)
        app.include_router(router)
        refuse: Refuse = _load(mount.refuse) if mount.refuse else errors.error_response
        limit = max_body if mount.max_body is None else mount.max_body
        zone = Zone(not mount.own_auth, limit, refuse)
        zones += [(route.path_regex, zone) for route in router.routes if isinstance(route, Route)]

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    zones.append((re.compile("^/static/"), Zone(False, SMALL_BODY)))
    app.state.durable_auth = auth
    for mount in ROUTERS:  # added before the guard, so inside it
        if mount.lean:
            app.add_middleware(_load(mount.lean))
    app.add_middleware(Guard, auth=auth, hosts=Hosts.of([*allowed_hosts, public or ""]),
                       zones=zones,
                       fallback=Zone(True, SMALL_BODY), signed_hooks=signed_hooks)
    return app
