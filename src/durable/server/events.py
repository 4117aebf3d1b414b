"""Events over HTTP: publish (`POST /api/events/{topic}`, and `POST /hooks/events/{topic}` for
senders such as GitHub that post their own JSON), list, show and redispatch.

An event's id comes from `?id=`, else the `Idempotency-Key` header, else (webhooks) the
sender's delivery id (`X-GitHub-Delivery`), else a fresh one: a sender retrying a delivery
publishes one event, and so starts each triggered workflow once.

A webhook's event keeps the request (method, path, query, headers but the caller's
credentials). When a trigger of the topic declared `respond=` and its filter passes the event,
the request is answered by that trigger's run: with what it gave `ctx.respond`, else its
result when it ends, else (after the trigger's wait, at most the server's `wait_limit`) 202
with the run's id and a Location to poll. The trigger, not the request, says so: a sender such
as GitHub cannot be taught a query parameter per event type, and the workflow that answers is
the one that knows it answers. An event no such trigger takes gets the publish answer (201,
or 200 for a retry): nothing was started to answer it. A retried delivery (the same id) reads
the same run's recorded answer.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from durable.engine.events import Responder
from durable.errors import UsageError
from durable.model.events import SEQ_MAX, Delivery, Event, WebhookRequest, WebhookResponse
from durable.server.deps import ServerDep, ServerState
from durable.server.errors import ERROR_RESPONSES, ApiError
from durable.views.jsonio import parse_json

router = APIRouter(prefix="/api/events", tags=["events"], responses=ERROR_RESPONSES)
hooks = APIRouter(prefix="/hooks/events", tags=["webhooks"], responses=ERROR_RESPONSES)


class EventOut(BaseModel):
    seq: int = Field(description="The event's number in this database")
    topic: str
    id: str
    data: Any
    published_at: float
    generation: int = Field(description="How many times it was redispatched")
    request: dict[str, Any] | None = Field(
        None, description="The webhook request that posted it (method, path, query, headers; "
        "the body is `data`); absent for events published otherwise")


class Published(EventOut):
    created: bool = Field(description="False: an event with this id was published already")


class DeliveryOut(BaseModel):
    workflow: str
    generation: int
    run_id: str | None = Field(description="The run it started; null: the filter said no")
    delivered_at: float


class EventDetail(EventOut):
    deliveries: list[DeliveryOut]


class EventPage(BaseModel):
    events: list[EventOut]
    next_before: int | None = Field(description="Pass as ?before= for the next, older page")


_BODY = {"requestBody": {"required": False, "description": "The event's data as JSON",
                        "content": {"application/json": {"schema": {}}}}}


def _delivery(d: Delivery) -> DeliveryOut:
    return DeliveryOut(workflow=d.workflow, generation=d.generation, run_id=d.run_id,
                       delivered_at=d.at)


class Answering(BaseModel):
    run_id: str = Field(description="The run answering the request: poll it at Location")
    event: int = Field(description="The event's number")
    detail: str


async def _data(request: Request) -> str:
    raw = await request.body()
    try:
        return json.dumps(parse_json(raw, "body").value if raw.strip() else None)
    except UsageError as e:
        raise ApiError(400, "invalid_json", f"request body refused: {e}") from None


def _published(event: Event, created: bool) -> JSONResponse:
    out = Published(**event.to_dict(), created=created)
    return JSONResponse(out.model_dump(mode="json"), status_code=201 if created else 200)


async def _publish(state: ServerState, topic: str, request: Request,
                   event_id: str | None) -> JSONResponse:
    event, created = await asyncio.to_thread(state.client.publish_json, topic,
                                             await _data(request), id=event_id)
    return _published(event, created)


def _response(answer: WebhookResponse) -> Response:
    body = answer.body
    if body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    if isinstance(body, str):
        return Response(body, status_code=answer.status, headers=answer.headers,
                        media_type="text/plain")
    return JSONResponse(body, status_code=answer.status, headers=answer.headers)


async def _answered(state: ServerState, event: Event, created: bool,
                    responding: Responder) -> Response:
    wait = min(responding.seconds, state.wait_limit)
    found = await state.client.webhook_answer_async(event, responding, wait)
    if found.response is not None:
        return _response(found.response)
    if not found.started:
        return _published(event, created)
    pending = Answering(run_id=responding.run_id, event=event.seq,
                        detail=f"run {responding.run_id} of {responding.workflow} has not "
                        f"answered within {wait:g} s; it goes on: poll its Location")
    return JSONResponse(pending.model_dump(mode="json"), status_code=202,
                        headers={"Location": f"/api/runs/{responding.run_id}"})


Seq = Annotated[int, Path(ge=1, le=SEQ_MAX, description="The event's number")]
IdQuery = Annotated[str | None, Query(alias="id", max_length=500,
                                      description="The event's id (deduplicates retries)")]
IdemHeader = Annotated[str | None, Header(max_length=500, description="The event's id")]


@router.post("/{topic}", status_code=201, response_model=Published, openapi_extra=_BODY,
             responses={200: {"model": Published, "description": "Published already"}})
async def publish(topic: str, state: ServerDep, request: Request, event_id: IdQuery = None,
                  idempotency_key: IdemHeader = None) -> JSONResponse:
    """Publish the body on `topic`: it starts the runs of the workflows it triggers and
    reaches the runs subscribed to it."""
    return await _publish(state, topic, request, event_id or idempotency_key)


@hooks.post("/{topic}", status_code=201, response_model=Published, openapi_extra=_BODY,
            responses={200: {"model": Published, "description": "Published already"},
                       202: {"model": Answering, "description": "The answering run has not "
                             "answered in time"}})
async def hook(topic: str, state: ServerDep, request: Request, event_id: IdQuery = None,
               idempotency_key: IdemHeader = None,
               x_github_delivery: IdemHeader = None) -> Response:
    """A webhook publishing what it receives on `topic` (point GitHub, Stripe, ... here);
    answered by the run of the trigger of the topic declaring `respond=`, if one matches."""
    asked = WebhookRequest.request_json(request.method, request.url.path,
                                        dict(request.query_params), dict(request.headers))
    event, created, responding = await asyncio.to_thread(
        state.client.publish_webhook, topic, await _data(request),
        event_id or idempotency_key or x_github_delivery, asked)
    if responding is None:
        return _published(event, created)
    return await _answered(state, event, created, responding)


@router.get("", response_model=EventPage)
def list_events(state: ServerDep, topic: str | None = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                before: Annotated[int | None, Query(ge=1, le=SEQ_MAX)] = None) -> EventPage:
    """Events, newest first."""
    found = state.client.list_events(topic, limit, before)
    return EventPage(events=[EventOut(**e.to_dict()) for e in found],
                     next_before=found[-1].seq if len(found) == limit else None)


@router.get("/{seq}", response_model=EventDetail)
def get_event(seq: Seq, state: ServerDep) -> EventDetail:
    """The event and what each trigger made of each dispatch of it."""
    event, deliveries = state.client.event(seq)
    return EventDetail(**event.to_dict(), deliveries=[_delivery(d) for d in deliveries])


@router.post("/{seq}/redispatch", response_model=EventOut)
def redispatch(seq: Seq, state: ServerDep) -> EventOut:
    """Dispatch the event again: each workflow it triggers starts a new run of it."""
    return EventOut(**state.client.redispatch(seq).to_dict())
