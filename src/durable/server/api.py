"""The control API under /api: start, list, inspect, wait for and talk to runs.

Routes are plain `def`s where they only touch the store (FastAPI runs them on its thread pool)
and `async def` where they wait for a run, so a long poll holds no thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from durable.model import ErrorObject, RunInfo
from durable.model.attributes import json_value
from durable.model.bulk import BulkJob
from durable.model.listing import run_filter
from durable.model.schedule import ScheduleInfo
from durable.model.streams import StreamEntry, check_stream_name
from durable.server import observe, service
from durable.server.deps import ServerDep, ServerState
from durable.server.errors import ERROR_RESPONSES, ApiError
from durable.server.schemas import (
    Accepted,
    BackfilledRun,
    BackfillRequest,
    BulkJobList,
    BulkJobOut,
    BulkRequest,
    CallbackFailure,
    CallbackSuccess,
    Event,
    HistoryPage,
    LogEntry,
    LogPage,
    Outcome,
    PendingCallbacks,
    PublishedEvents,
    Purged,
    PurgeRequest,
    RerunRequest,
    Run,
    RunDetail,
    RunPage,
    RunSummary,
    ScheduleCreate,
    ScheduleOut,
    SignalRequest,
    StartedRun,
    StartRequest,
    StreamList,
    StreamOut,
    TerminateRequest,
    WorkflowInfo,
)
from durable.views.jsonio import (
    PREVIEW,
    RunView,
    checked_json,
    event_json,
    listed_json,
    log_json,
    outcome_json,
    payload_text,
    run_json,
    schedule_json,
    stream_entry_json,
    stream_info_json,
)
from durable.views.values import Which, is_json, stored

log = logging.getLogger("durable.server")
router = APIRouter(prefix="/api", tags=["runs"], responses=ERROR_RESPONSES)


Limit = Annotated[int, Query(ge=1, le=1000, description="Page size")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]


def _run(run: RunInfo, state: ServerState) -> Run:
    return Run.model_validate(run_json(run, state.client.clock()))


@router.post("/runs", response_model=StartedRun, status_code=201,
             responses={200: {"model": StartedRun, "description": "The run with this id"}})
def start_run(body: StartRequest, state: ServerDep, request: Request,
              response: Response) -> StartedRun:
    """Start a run of a workflow; with `id`, starting again returns the same run (200), as
    does a `dedup_id` a live run of the workflow's queue has. A run of a queued workflow
    starts ENQUEUED."""
    payload = service.encoded_input(state, body.workflow,
                                    service.given(body.model_fields_set, body.input))
    attributes = {k: json_value(v) for k, v in (body.attributes or {}).items()}
    run, created = state.client.start_run(body.workflow, payload, body.id, request.headers,
                                          attributes,
                                          existing=body.existing, priority=body.priority,
                                          dedup_id=body.dedup_id)
    if not created:
        response.status_code = 200
    return StartedRun(**_run(run, state).model_dump(), created=created)


Text = Annotated[str | None, Query(max_length=500)]


@router.get("/runs", response_model=RunPage)
def list_runs(state: ServerDep,
              status: Annotated[str | None, Query(max_length=40, description=(
                  "A status, or PARKED (any case)"))] = None,
              workflow: Text = None,
              q: Annotated[str | None, Query(max_length=200,
                                             description="Part of a run id or workflow")] = None,
              where: Annotated[str | None, Query(max_length=2000, description=(
                  'Attribute filter: customer = "acme" AND amount >= 3 AND '
                  "due < 2026-12-01T00:00:00Z"))] = None,
              since: Annotated[str | None, Query(max_length=60, description=(
                  "Created at or after: ISO 8601, a date, or a span before now (2h)"))] = None,
              until: Annotated[str | None, Query(max_length=60,
                                                 description="Created before (as since)")] = None,
              parent: Annotated[str | None, Query(max_length=500, description=(
                  "Only the runs this run started"))] = None,
              roots: Annotated[bool, Query(description="Only runs no run started")] = False,
              cursor: Annotated[str | None, Query(max_length=1000, description=(
                  "The previous page's next_cursor"))] = None,
              limit: Limit = 50, offset: Offset = 0) -> RunPage:
    """Runs, newest first, filtered by status, workflow, search text, attributes, creation time
    and parent; input and result as previews (the run itself has them whole). Page with
    `cursor` (`offset` too, where no cursor is given). A malformed `where` is a 400 whose
    message gives the position."""
    now = state.client.clock()
    chosen = run_filter(status=status, workflow=workflow, search=q, where=where, since=since,
                        until=until, parent=parent, roots=roots, now=now)
    page = state.client.runs(chosen, limit, cursor, offset=offset, preview=PREVIEW)
    return RunPage(runs=[RunSummary.model_validate(listed_json(r, page, now, summary=True))
                         for r in page.runs],
                   next_offset=offset + limit if page.next_cursor else None,
                   next_cursor=page.next_cursor)


@router.get("/runs/{run_id}", response_model=RunDetail)
def get_run(run_id: str, state: ServerDep) -> RunDetail:
    """Status, input, result or error, what it waits on, published events, operations and the
    full history: what `durable show --json` prints."""
    return RunDetail.model_validate(RunView.read(state.client, run_id).to_json())


@router.get("/runs/{run_id}/history", response_model=HistoryPage)
def history(run_id: str, state: ServerDep, after: Offset = 0,
            limit: Limit = 500) -> HistoryPage:
    """The run's events in order, a page at a time: pass `next_after` back as `after`."""
    run = state.client.get(run_id)
    events = state.client.history(run_id, after, limit + 1)
    page = events[:limit]
    return HistoryPage(events=[Event.model_validate(event_json(e, run.created_at))
                               for e in page],
                       next_after=page[-1].id if len(events) > limit else None)


@router.get("/runs/{run_id}/events", response_model=PublishedEvents)
def events(run_id: str, state: ServerDep) -> PublishedEvents:
    """What the run published with ctx.set_event: the latest value per key."""
    return PublishedEvents(events=state.client.events(run_id))


@router.get("/runs/{run_id}/pending-callbacks", response_model=PendingCallbacks,
            tags=["callbacks"])
def pending_callbacks(run_id: str, state: ServerDep) -> PendingCallbacks:
    """Ids of the run's callbacks still waiting to be resolved."""
    return PendingCallbacks(callback_ids=state.client.pending_callbacks(run_id))


@router.get("/runs/{run_id}/logs", response_model=LogPage)
def logs(run_id: str, state: ServerDep, after: Offset = 0) -> LogPage:
    """What the run's workflow logged through `ctx.logger`, kept with the run: lines after
    `after`, oldest first."""
    run = state.client.get(run_id)
    lines = state.client.logs(run_id, after)
    return LogPage(lines=[LogEntry.model_validate(log_json(n, line, run.created_at))
                          for n, line in lines],
                   next_after=lines[-1][0] if lines else (after or None))


@router.get("/runs/{run_id}/streams", response_model=StreamList)
async def streams(run_id: str, state: ServerDep) -> StreamList:
    """The run's streams (`ctx.stream(name)`), by name, each with its last offset."""
    found = await state.client.streams_async(run_id)
    return StreamList(streams=[StreamOut.model_validate(stream_info_json(s)) for s in found])


KEEPALIVE = 15.0
"""Seconds an idle event stream goes without sending anything: then a comment, so proxies
and load balancers do not take it for dead and cut it."""

_SSE_DOC = (
    "Server-Sent Events: one event per entry, `id:` its offset, `event:` its kind (`value`, "
    "`abandoned`, `closed`), `data:` the entry as JSON (offset, kind, value, timestamp, "
    "operation_id, attempt, attempt_key), then `event: end` once the stream is over (closed, "
    "or the run ended). Reconnecting with `Last-Event-ID` (EventSource does) resumes after "
    "that offset. An `abandoned` entry voids the earlier values with its `attempt_key`.")


@router.get("/runs/{run_id}/streams/{name}", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
                             "description": _SSE_DOC}})
async def stream_events(
        run_id: str, name: str, state: ServerDep, after: Offset = 0, follow: bool = True,
        with_abandoned: bool = False,
        last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0)] = None,
) -> StreamingResponse:
    """Stream `name` of the run, after offset `after` (or the `Last-Event-ID` header), live
    until it is over; with `follow=false`, what is there now. Values of step attempts known
    dead are left out unless `with_abandoned`."""
    try:
        check_stream_name(name)
    except ValueError as e:
        raise ApiError(400, "bad_stream_name", str(e)) from None
    await state.client.streams_async(run_id)  # an unknown run is a 404, not an empty stream
    entries = state.client.stream_async(run_id, name, after if last_event_id is None
                                        else last_event_id, follow=follow,
                                        with_abandoned=with_abandoned)
    return StreamingResponse(_sse(entries), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _sse(entries: AsyncGenerator[StreamEntry, None]) -> AsyncIterator[str]:
    pending: asyncio.Future[StreamEntry] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(entries))
            done, _ = await asyncio.wait({pending}, timeout=KEEPALIVE)
            if not done:
                yield ": keepalive\n\n"
                continue
            try:
                entry = pending.result()
            except StopAsyncIteration:
                break
            finally:
                pending = None
            yield (f"id: {entry.offset}\nevent: {entry.kind.value}\n"
                   f"data: {json.dumps(stream_entry_json(entry), ensure_ascii=False)}\n\n")
        yield "event: end\ndata: {}\n\n"
    finally:
        if pending is not None:
            pending.cancel()
        await entries.aclose()


@router.get("/runs/{run_id}/operations/{op_id}/{which}",
            responses={200: {"content": {"application/json": {},
                                         "text/plain": {"schema": {"type": "string"}}},
                             "description": "The whole value, as stored"}})
def operation_value(run_id: str, op_id: str, which: Which, state: ServerDep) -> Response:
    """The whole input or output of one operation, which the run's views show cut when long:
    JSON as the default serializer wrote it, any other serializer's text (encrypted) as text.
    404 if the operation has none recorded."""
    op = state.client.operation(run_id, op_id)
    text = stored(op, which)
    if text is None:
        raise ApiError(404, "value_not_recorded", f"operation {op.id} ({op.name}) of run "
                       f"{run_id!r} has no {which} recorded")
    return Response(payload_text(text), media_type="application/json" if is_json(text)
                    else "text/plain")


@router.get("/runs/{run_id}/result", response_model=Outcome,
            responses={202: {"model": Outcome, "description": "Still RUNNING after the wait"}})
async def result(run_id: str, state: ServerDep,
                 wait: Annotated[float, Query(ge=0, le=3600, description=(
                     "Seconds to wait for the run to end (long poll), capped by the server's "
                     "request limit"))] = 0) -> Response:
    """How the run ended; 202 with status RUNNING if it has not ended within `wait`."""
    run = await state.client.wait_ended_async(run_id, min(wait, state.wait_limit))
    outcome = Outcome.model_validate(outcome_json(run))
    code = 202 if run.status.live else 200
    return JSONResponse(outcome.model_dump(mode="json"), status_code=code)


@router.post("/runs/{run_id}/signal", response_model=Accepted, status_code=202)
def signal(run_id: str, body: SignalRequest, state: ServerDep) -> Accepted:
    """Send a named signal; one sent before the run waits for it is kept until it does."""
    state.client.signal(run_id, body.name, checked_json(body.payload, "payload"))
    return Accepted(message=f"signal {body.name!r} sent to run {run_id}")


@router.post("/runs/{run_id}/cancel", response_model=Run)
def cancel(run_id: str, state: ServerDep) -> Run:
    """Ask the run to stop: `Cancelled` is raised in it at its next durable await."""
    return _run(state.client.cancel(run_id), state)


@router.post("/runs/{run_id}/terminate", response_model=Run)
def terminate(run_id: str, state: ServerDep, body: TerminateRequest | None = None) -> Run:
    """End the run STOPPED now, without running its handlers or compensations (unlike
    cancel); the invocation in flight is fenced out, its running children go as `children`
    says. A run that has ended already is returned as it is."""
    body = body or TerminateRequest()
    state.client.terminate(run_id, body.reason, body.children)
    return _run(state.client.get(run_id), state)


@router.delete("/runs/{run_id}", response_model=Accepted)
def delete_run(run_id: str, state: ServerDep) -> Accepted:
    """Delete an ended run with its operations, history, signals, published events and logs;
    a run still running is refused (409): terminate it first."""
    state.client.delete(run_id)
    return Accepted(message=f"run {run_id} deleted")


@router.post("/purge", response_model=Purged)
def purge(body: PurgeRequest, state: ServerDep) -> Purged:
    """Delete ended runs that ended before `ended_before`, oldest first, in short batches so
    running work is not held up; at most `limit` per request."""
    deleted = state.client.purge(body.ended_before, workflow=body.workflow, limit=body.limit)
    return Purged(deleted=deleted, more=deleted == body.limit)


def _run_job(state: ServerState, job_id: str) -> None:
    """Run a bulk job after the response. A failure (the database gone, say) is logged, not
    raised: the job keeps its progress, and POST /api/bulk/{id}/continue goes on with it."""
    try:
        state.client.bulk_resume(job_id)
    except Exception:
        log.exception("bulk job %s stopped; POST /api/bulk/%s/continue goes on from where it "
                      "got to", job_id, job_id)


def _job(job: BulkJob) -> BulkJobOut:
    return BulkJobOut.model_validate(job.to_dict())


@router.post("/bulk", response_model=BulkJobOut, status_code=202, tags=["bulk"],
             responses={200: {"model": BulkJobOut, "description": "A dry run's count"}})
def start_bulk(body: BulkRequest, state: ServerDep, tasks: BackgroundTasks,
               response: Response) -> BulkJobOut:
    """Apply `action` to every run the filters select (created before the job began),
    skipping those it no longer applies to. The job is stored and run after the response, in
    the background: follow it with GET /api/bulk/{job_id}. `dry_run`: the counts at once, 200,
    nothing stored or changed. A bad filter or action is a 400."""
    given: dict[str, Any] = {
        "status": body.status, "workflow": body.workflow, "search": body.q, "where": body.where,
        "since": body.since, "until": body.until, "parent": body.parent, "roots": body.roots}
    asked: dict[str, Any] = {"from_step": body.from_step or None, "reason": body.reason}
    if body.dry_run:
        response.status_code = 200
        return _job(state.client.bulk(body.action, dry_run=True, **asked, **given))
    job = state.client.bulk_create(body.action, **asked, **given)
    tasks.add_task(_run_job, state, job.job_id)
    return _job(job)


@router.get("/bulk", response_model=BulkJobList, tags=["bulk"])
def list_bulk(state: ServerDep) -> BulkJobList:
    """The newest bulk jobs first, with their progress."""
    return BulkJobList(jobs=[_job(j) for j in state.client.bulk_jobs()])


@router.get("/bulk/{job_id}", response_model=BulkJobOut, tags=["bulk"])
def get_bulk(job_id: str, state: ServerDep) -> BulkJobOut:
    return _job(state.client.bulk_job(job_id))


@router.post("/bulk/{job_id}/continue", response_model=BulkJobOut, status_code=202,
             tags=["bulk"])
def continue_bulk(job_id: str, state: ServerDep, tasks: BackgroundTasks) -> BulkJobOut:
    """Go on with a job interrupted (by a restart, say) from where it got to, in the
    background; each run it has reached already is not touched again."""
    job = state.client.bulk_job(job_id)
    tasks.add_task(_run_job, state, job_id)
    return _job(job)


@router.post("/runs/{run_id}/rerun", response_model=Run, status_code=201)
def rerun(run_id: str, body: RerunRequest, state: ServerDep) -> Run:
    """A new run reusing this one's results before `from_step`, executing from it on."""
    given = service.given(body.model_fields_set, body.input)
    if given is not None and body.patch is not None:
        raise ApiError(400, "bad_request", "give the whole new input as `input` or a merge "
                       "patch of the recorded one as `patch`, not both")
    input_json = None if given is None else json.dumps(given.value)
    patch = None if body.patch is None else checked_json(body.patch, "patch")
    handle = state.client.rerun(run_id, body.from_step, id=body.id, input_json=input_json,
                                patch=patch)
    return _run(state.client.get(handle.run_id), state)


@router.post("/callbacks/{callback_id}/succeed", response_model=Accepted, tags=["callbacks"])
def callback_succeed(callback_id: str, body: CallbackSuccess, state: ServerDep) -> Accepted:
    """Resolve a callback with a result; the run waiting on it resumes."""
    state.client.complete_callback(callback_id, checked_json(body.payload, "payload"))
    return Accepted(message=f"callback {callback_id} succeeded")


@router.post("/callbacks/{callback_id}/fail", response_model=Accepted, tags=["callbacks"])
def callback_fail(callback_id: str, body: CallbackFailure, state: ServerDep) -> Accepted:
    """Resolve a callback with an error: the run's wait raises CallbackFailed."""
    state.client.fail_callback(callback_id, ErrorObject(body.type, body.message))
    return Accepted(message=f"callback {callback_id} failed")


@router.post("/callbacks/{callback_id}/heartbeat", response_model=Accepted, tags=["callbacks"])
def callback_heartbeat(callback_id: str, state: ServerDep) -> Accepted:
    """Say that whoever holds the callback is still at work: recorded in the run's history, and
    for a callback with a heartbeat timeout, its deadline moves out."""
    state.client.heartbeat_callback(callback_id)
    return Accepted(message=f"heartbeat recorded for callback {callback_id}")


@router.get("/workflows", response_model=list[WorkflowInfo], tags=["workflows"])
def workflows(state: ServerDep) -> list[WorkflowInfo]:
    """The workflows this server has loaded: it can check their input and serve their webhooks."""
    return [WorkflowInfo(name=wf.name, params=wf.params, webhook=getattr(wf, "webhook", False),
                         schedule=wf.schedule.cron if wf.schedule else None)
            for wf in state.workflows.values()]


# -- schedules ------------------------------------------------------------------------------------

def _schedule(info: ScheduleInfo) -> ScheduleOut:
    return ScheduleOut.model_validate(schedule_json(info))


@router.get("/schedules", response_model=list[ScheduleOut], tags=["schedules"])
def list_schedules(state: ServerDep) -> list[ScheduleOut]:
    """Every schedule: declared in code (`registered` once a worker served it) or created
    here, each with its last tick's run's status."""
    return [ScheduleOut(**schedule_json(row.info), last_run_status=row.last_status)
            for row in observe.schedules(state)]


@router.post("/schedules", response_model=ScheduleOut, status_code=201, tags=["schedules"])
def create_schedule(body: ScheduleCreate, state: ServerDep) -> ScheduleOut:
    """Schedule a workflow by name; a worker serving it fires it from its next tick (409 if
    the workflow has a schedule)."""
    return _schedule(state.client.create_schedule(body.workflow, body.cron, body.timezone,
                                                  body.missed))


@router.delete("/schedules/{workflow}", response_model=ScheduleOut, tags=["schedules"])
def delete_schedule(workflow: str, state: ServerDep) -> ScheduleOut:
    """Delete a schedule created through the API (one declared in code can be paused)."""
    return _schedule(state.client.delete_schedule(workflow))


@router.post("/schedules/{workflow}/pause", response_model=ScheduleOut, tags=["schedules"])
def pause_schedule(workflow: str, state: ServerDep) -> ScheduleOut:
    """Stop the schedule firing; ticks that fall while it is paused never run."""
    return _schedule(state.client.pause_schedule(workflow))


@router.post("/schedules/{workflow}/resume", response_model=ScheduleOut, tags=["schedules"])
def resume_schedule(workflow: str, state: ServerDep) -> ScheduleOut:
    """Fire the schedule again from its next tick."""
    return _schedule(state.client.resume_schedule(workflow))


@router.post("/schedules/{workflow}/trigger", response_model=Run, status_code=201,
             tags=["schedules"])
def trigger_schedule(workflow: str, state: ServerDep) -> Run:
    """Start a run of the scheduled workflow now, as if a tick fell now."""
    return _run(state.client.trigger_schedule(workflow), state)


@router.post("/schedules/{workflow}/backfill", response_model=list[BackfilledRun],
             tags=["schedules"])
def backfill_schedule(workflow: str, body: BackfillRequest,
                      state: ServerDep) -> list[BackfilledRun]:
    """Start the run of each past tick from `from` to `to` (included) that has none, under the
    id the schedule gives the tick: a tick never runs twice, however the backfill races the
    workers firing the schedule."""
    runs = state.client.backfill_schedule(workflow, body.from_.timestamp(), body.to.timestamp())
    return [BackfilledRun(run_id=run.run_id, created=created) for run, created in runs]
