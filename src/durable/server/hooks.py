"""Webhooks: `POST /hooks/{workflow}` starts a run of a `@workflow(webhook=True)` with the JSON
body as its input, so any system that can send an HTTP request can start a workflow.

`?wait=true` answers with the run's outcome if it ends within the request (`timeout`, at most the
server's limit), else 202 with the run id to poll. An `Idempotency-Key` header becomes the run id,
so a sender's retries start one run.

Who may call one: holders of the server's token, like the API; and, for a workflow given a
secret in `DURABLE_WEBHOOK_SECRET_<NAME>`, a sender that signs the body with it as GitHub does
(`X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`). `guard.Guard` checks both before this runs.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse

from durable.errors import UsageError
from durable.server import service
from durable.server.deps import ServerDep, ServerState
from durable.server.errors import ERROR_RESPONSES, ApiError
from durable.server.schemas import RUN_ID_DOC, RUN_ID_SCHEMA, HookAccepted, Outcome
from durable.views.jsonio import JsonValue, outcome_json, parse_json

router = APIRouter(prefix="/hooks", tags=["webhooks"], responses=ERROR_RESPONSES)


_BODY = {"requestBody": {"required": False, "description": "The workflow's input as JSON "
                        "(any content type is read as JSON; empty: no input)",
                        "content": {"application/json": {"schema": {}}}}}


@router.post("/{workflow}", status_code=202, response_model=HookAccepted, openapi_extra=_BODY,
             responses={200: {"model": Outcome, "description": "The run ended (with ?wait=true)"}})
async def hook(workflow: str, state: ServerDep, request: Request,
               wait: bool = False,
               timeout: Annotated[float | None, Query(ge=0, le=3600)] = None,
               idempotency_key: Annotated[str | None, Header(
                   description=RUN_ID_DOC, json_schema_extra=RUN_ID_SCHEMA)] = None,
               ) -> JSONResponse:
    """Start a run of `workflow` with the body as input; with `wait`, answer with its outcome
    if it ends in time."""
    wf = state.workflows.get(workflow)
    if wf is None or not getattr(wf, "webhook", False):
        raise ApiError(404, "no_such_webhook", f"no webhook for workflow {workflow!r}: this "
                       "server serves webhooks for the @workflow(webhook=True) it loaded with "
                       f"--worker ({', '.join(_hooks(state)) or 'none'})")
    payload = service.encoded_input(state, workflow, _input(await request.body()))
    run, created = await state.client.start_run_async(workflow, payload, idempotency_key,
                                                      request.headers)
    if wait:
        limit = state.wait_limit if timeout is None else min(timeout, state.wait_limit)
        run = await state.client.wait_ended_async(run.run_id, limit)
        if run.status.ended:
            outcome = Outcome.model_validate(outcome_json(run))
            return JSONResponse(outcome.model_dump(mode="json"), status_code=200)
    accepted = HookAccepted(run_id=run.run_id, status=run.status, created=created)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202)


def _input(raw: bytes) -> JsonValue | None:
    """The body as the run's input, whatever content type the sender declared: webhook senders
    are not always careful with it."""
    if not raw.strip():
        return None
    try:
        return parse_json(raw, "body")
    except UsageError as e:
        raise ApiError(400, "invalid_json", f"request body refused: {e}") from None


def _hooks(state: ServerState) -> list[str]:
    return [name for name, wf in state.workflows.items() if getattr(wf, "webhook", False)]
