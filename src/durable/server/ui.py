"""The web UI: server-rendered pages, refreshed in place by a little vanilla JS (static/app.js).

Pages read through the client; every action (start, signal, resolve a callback, cancel, rerun)
is a call of the JSON API from the page, so the UI can do nothing the API cannot.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from durable.errors import RunNotFound
from durable.model.listing import listed_statuses
from durable.server import observe, views
from durable.server.deps import ServerDep
from durable.server.templating import render

router = APIRouter(include_in_schema=False)

Search = Annotated[str, Query(max_length=200)]


def runs_query(status: Annotated[str, Query(max_length=40)] = "", q: Search = "",
               where: Annotated[str, Query(max_length=2000)] = "",
               range: Annotated[str, Query(max_length=10)] = "",
               children: bool = False,
               cursor: Annotated[str, Query(max_length=1000)] = "") -> views.RunsQuery:
    return views.RunsQuery(status, q, where, range, children, cursor)


Listing = Annotated[views.RunsQuery, Depends(runs_query)]


@router.get("/", response_class=HTMLResponse)
def runs(request: Request, state: ServerDep, query: Listing) -> HTMLResponse:
    page = views.runs_page(state.client, query, list(state.workflows.values()))
    return render(request, "runs.html", {"page": page, "statuses": listed_statuses(),
                                         "ranges": views.RANGES})


@router.get("/ui/runs/changes", response_class=HTMLResponse)
def runs_changes(request: Request, state: ServerDep, query: Listing,
                 since: Annotated[float, Query(ge=0, le=1e11)],
                 shown: Annotated[str, Query(max_length=60_000)] = "") -> HTMLResponse:
    """The rows of the runs list that changed since its last update, and new ones, for its
    live update (static/app.js puts them in place): not the whole table again."""
    ids = [i for i in shown.split(",") if i][:views.PAGE * 4]
    page = views.runs_changed(state.client, query, ids, since)
    response = render(request, "runs_rows.html", {"page": page, "depth": 0})
    response.headers["X-As-Of"] = repr(page.now)  # the next update's `since`
    return response


@router.get("/ui/runs/children", response_class=HTMLResponse)
def runs_children(request: Request, state: ServerDep,
                  parent: Annotated[str, Query(max_length=500)],
                  depth: Annotated[int, Query(ge=0, le=50)] = 1) -> HTMLResponse:
    """The rows of the runs `parent` started, for the toggle under its row."""
    page = views.children_page(state.client, parent)
    return render(request, "runs_rows.html", {"page": page, "depth": depth})


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
