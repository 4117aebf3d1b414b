"""The web UI: server-rendered pages, refreshed in place by a little vanilla JS (static/app.js).

Pages read through the client; every action (start, signal, resolve a callback, cancel, rerun)
is a call of the JSON API from the page, so the UI can do nothing the API cannot.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from durable.errors import RunNotFound
from durable.server import observe, views
from durable.server.deps import ServerDep
from durable.server.templating import render

router = APIRouter(include_in_schema=False)

Status = Annotated[str | None, Query(max_length=20)]
Search = Annotated[str, Query(max_length=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]


@router.get("/", response_class=HTMLResponse)
def runs(request: Request, state: ServerDep, status: Status = None, q: Search = "",
         offset: Offset = 0) -> HTMLResponse:
    page = views.runs_page(state.client, status, q, offset, list(state.workflows.values()))
    return render(request, "runs.html", {"page": page, "statuses": views.STATUSES})


@router.get("/ui/runs", response_class=HTMLResponse)
def runs_rows(request: Request, state: ServerDep, status: Status = None, q: Search = "",
              offset: Offset = 0) -> HTMLResponse:
    """The runs table alone, for the list's auto-refresh."""
    page = views.runs_page(state.client, status, q, offset, [])
    return render(request, "runs_table.html", {"page": page})


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: str, state: ServerDep) -> HTMLResponse:
    try:
        page = views.run_page(state.client, run_id)
    except RunNotFound as e:
        return render(request, "missing.html", {"message": str(e)}, status=404)
    return render(request, "run.html", {"page": page})


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
def run_live(request: Request, run_id: str, state: ServerDep) -> HTMLResponse:
    """The parts of a run page that change while it runs, for its auto-refresh."""
    try:
        page = views.run_page(state.client, run_id)
    except RunNotFound as e:
        return render(request, "missing.html", {"message": str(e)}, status=404)
    return render(request, "run_live.html", {"page": page})


@router.get("/queues", response_class=HTMLResponse)
def queues(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "queues.html", {"queues": observe.queues(state),
                                           "window": observe.RATE_WINDOW,
                                           "now": state.client.clock()})


@router.get("/schedules", response_class=HTMLResponse)
def schedules(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "schedules.html", {"schedules": observe.schedules(state),
                                              "now": state.client.clock()})


@router.get("/functions", response_class=HTMLResponse)
def functions(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "functions.html", {"functions": observe.functions(state),
                                              "window": observe.HEALTH_WINDOW})
