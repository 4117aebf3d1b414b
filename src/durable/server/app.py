"""`create_app`: the control API, webhooks and web UI of `durable server` as one ASGI app.

Routers are mounted from `ROUTERS`, a list of dotted references, so another part of the server
(e.g. the AWS durable-execution contract) joins with a one-line change. Each is protected by the
token unless its entry says it checks requests itself. With `workflows` (and `serve=True`) the app
also runs a Worker for them in its own event loop, from startup to shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from durable.client import Client
from durable.engine.worker import Worker
from durable.sdk.workflow import Workflow
from durable.server import errors
from durable.server.auth import require_token
from durable.server.deps import ServerState
from durable.store import Store


@dataclass(frozen=True, slots=True)
class Mount:
    """A router to include: `module:attribute`. `own_auth`: it checks requests itself (e.g. a
    protocol with its own signatures), so the server's token is not required on it."""

    ref: str
    own_auth: bool = False


ROUTERS: list[Mount] = [
    Mount("durable.server.auth:router", own_auth=True),  # the login form itself
    Mount("durable.server.api:router"),
    Mount("durable.server.hooks:router"),
    Mount("durable.server.ui:router"),
    Mount("durable.server.aws:router", own_auth=True),  # AWS's Lambda API: SigV4, checked there
]

STATIC = Path(__file__).parent / "static"


def _router(ref: str) -> APIRouter:
    module, _, attr = ref.partition(":")
    router: APIRouter = getattr(importlib.import_module(module), attr)
    return router


def _version() -> str:
    try:
        return version("durable-serverless")
    except PackageNotFoundError:
        return "0"


def create_app(db: Client | Store | str | None = None, *, token: str | None = None,
               workflows: Iterable[Workflow[Any]] = (), serve: bool = True,
               wait_limit: float = 30.0) -> FastAPI:
    """The server app on a Client (its store and its clock, e.g. a `durable.testing`
    environment's virtual one), a Store, or a database URL (opened at startup, closed at
    shutdown; None: DURABLE_DB or the embedded default). A Client or Store given is the caller's
    to close.

    `token`: required on every protected route (None: no auth; the CLI refuses to bind beyond
    loopback then). `workflows`: loaded workflows, used to check input and expose webhooks and,
    with `serve`, served by a Worker inside the app. `wait_limit`: the longest a request waits
    for a run to end.
    """
    loaded = {wf.name: wf for wf in workflows}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = not isinstance(db, Client | Store)
        client = db if isinstance(db, Client) else Client(db)
        app.state.durable = ServerState(client, loaded, token, wait_limit)
        worker = (Worker(loaded.values(), client.store, clock=client.clock)
                  if serve and loaded else None)
        task = asyncio.create_task(worker.run_async()) if worker else None
        try:
            yield
        finally:
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
    protected = [Depends(require_token)]
    for mount in ROUTERS:
        app.include_router(_router(mount.ref), dependencies=None if mount.own_auth else protected)

    @app.get("/openapi.json", include_in_schema=False, dependencies=protected)
    def openapi(request: Request) -> JSONResponse:
        return JSONResponse(request.app.openapi())

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
