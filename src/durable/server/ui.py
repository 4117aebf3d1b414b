"""The web UI: server-rendered pages, refreshed in place by a little vanilla JS (static/app.js).

Pages read through the client; every action (start, signal, resolve a callback, cancel, rerun)
is a call of the JSON API from the page, so the UI can do nothing the API cannot. A run page
stays small for a run of any size: the rest is fetched as it is opened, and a running run's
page asks only for what happened after the last event it shows.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from durable.errors import OperationNotFound, RunNotFound, UsageError
from durable.model.bulk import ACTIONS
from durable.model.kv import KEY_MAX
from durable.model.listing import listed_statuses
from durable.server import observe, views
from durable.server.deps import ServerDep
from durable.server.templating import fragment, macro, render

router = APIRouter(include_in_schema=False)

Search = Annotated[str, Query(max_length=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000_000)]
OpId = Annotated[str, Query(max_length=500)]
KV_PAGE = 100


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
                                         "ranges": views.RANGES, "bulk_actions": ACTIONS})


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


def _missing(request: Request, e: UsageError) -> HTMLResponse:
    return render(request, "missing.html", {"message": str(e)}, status=404)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run(request: Request, run_id: str, state: ServerDep, hq: Search = "",
        hafter: Offset = 0) -> HTMLResponse:
    """The run page: small whatever the run's size (its tree collapsed, a page of history);
    the rest comes on demand from the /ui routes below."""
    try:
        page = views.run_page(state.client, run_id, hq, hafter)
    except RunNotFound as e:
        return _missing(request, e)
    return render(request, "run.html", {"page": page})


@router.get("/ui/runs/{run_id}/ops", response_class=HTMLResponse)
def run_ops(request: Request, run_id: str, state: ServerDep, parent: OpId = "",
            offset: Offset = 0) -> HTMLResponse:
    """A page of an operation's children (the run's top level for no parent), as rows."""
    try:
        run_info, listing = views.children(state.client, run_id, parent or None, offset)
    except RunNotFound as e:
        return _missing(request, e)
    return render(request, "_ops_list.html", {"page": listing, "run_id": run_info.run_id})


@router.get("/ui/runs/{run_id}/ops/{op_id}/values", response_class=HTMLResponse)
def op_values(request: Request, run_id: str, op_id: str, state: ServerDep) -> HTMLResponse:
    """One operation's input and output, for its row when a reader opens them."""
    try:
        values = views.op_values(state.client, run_id, op_id)
    except (RunNotFound, OperationNotFound) as e:
        return _missing(request, e)
    return render(request, "_op_values.html", {"row": values})


@router.get("/ui/runs/{run_id}/history", response_class=HTMLResponse)
def run_history(request: Request, run_id: str, state: ServerDep, q: Search = "",
                after: Offset = 0) -> HTMLResponse:
    """A page of the run's history matching `q`, searched on the server."""
    try:
        run_info, page = views.history_page(state.client, run_id, q, after)
    except RunNotFound as e:
        return _missing(request, e)
    return render(request, "_history_page.html", {"h": page, "run_id": run_info.run_id})


@router.get("/ui/runs/{run_id}/gantt", response_class=HTMLResponse)
def run_gantt(request: Request, run_id: str, state: ServerDep) -> HTMLResponse:
    try:
        run_info, chart, left_out = views.gantt_chart(state.client, run_id)
    except RunNotFound as e:
        return _missing(request, e)
    return render(request, "_gantt_part.html",
                  {"page": {"run": run_info, "chart": chart}, "left_out": left_out})


@router.get("/ui/runs/{run_id}/updates")
def run_updates(run_id: str, state: ServerDep, after: Offset = 0) -> JSONResponse:
    """What happened after event `after`, for the open run page to apply in place: the new
    history rows, the operation rows they changed, the run's head. Nothing new costs one
    indexed read and a few bytes."""
    try:
        update = views.update(state.client, run_id, after)
    except RunNotFound as e:
        return JSONResponse({"error": {"code": "not_found", "message": str(e)}}, 404)
    head = None if update.state is None else fragment("_run_head.html", state=update.state)
    return JSONResponse({
        "after": update.watermark, "more": update.more, "head": head,
        "status": None if update.state is None else update.state.run.status.value,
        "events": "".join(macro("_history.html", "history_row", line)
                          for line in update.lines),
        "ops": [{"id": c.node.op.id, "parent": c.parent or "",
                 "line": macro("_ops.html", "op_line", c.node, run_id),
                 "item": macro("_ops.html", "op_item", c.node, run_id)}
                for c in update.changed]})



@router.get("/queues", response_class=HTMLResponse)
def queues(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "queues.html", {"queues": observe.queues(state),
                                           "window": observe.RATE_WINDOW,
                                           "now": state.client.clock()})


@router.get("/schedules", response_class=HTMLResponse)
def schedules(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "schedules.html", {"schedules": observe.schedules(state),
                                              "now": state.client.clock()})


@router.get("/kv", response_class=HTMLResponse)
def kv(request: Request, state: ServerDep, prefix: Annotated[str, Query(max_length=KEY_MAX)] = "",
       after: Annotated[str, Query(max_length=KEY_MAX)] = "") -> HTMLResponse:
    """The key-value store: a page of keys with their values, each editable in place through
    the API (PUT and DELETE /api/kv/{key}), and a form to add one."""
    entries = state.client.kv.entries(prefix, after or None, KV_PAGE)
    return render(request, "kv.html", {
        "entries": entries, "prefix": prefix,
        "next_after": entries[-1].key if len(entries) == KV_PAGE else None})


EVENTS_SHOWN = 100


@router.get("/events", response_class=HTMLResponse)
def events(request: Request, state: ServerDep,
           topic: Annotated[str, Query(max_length=200)] = "") -> HTMLResponse:
    shown = state.client.list_events(topic or None, EVENTS_SHOWN)
    return render(request, "events.html", {
        "events": [(e, state.client.event(e.seq)[1]) for e in shown], "topic": topic})


@router.get("/functions", response_class=HTMLResponse)
def functions(request: Request, state: ServerDep) -> HTMLResponse:
    return render(request, "functions.html", {"functions": observe.functions(state),
                                              "window": observe.HEALTH_WINDOW})
