"""The control API's routes for operating a run in place: pause, resume, edit a step.

Each change is recorded in the run's history with who made it: the identity of the token the
request proved (`auth.identity`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from durable.model import ErrorObject
from durable.server.auth import identity
from durable.server.deps import ServerDep
from durable.server.errors import ERROR_RESPONSES
from durable.server.schemas import EditedStep, Operated, StepFailure, StepSuccess
from durable.views.jsonio import checked_json, operation_json

router = APIRouter(prefix="/api", tags=["runs"], responses=ERROR_RESPONSES)


@router.post("/runs/{run_id}/pause", response_model=Operated)
def pause(run_id: str, state: ServerDep, request: Request) -> Operated:
    """Pause the run: a step in flight finishes and is checkpointed, then the run holds at its
    next durable await (PAUSED); timers, retries, signals and callbacks that fall due
    meanwhile take effect on resume. Pausing a paused run changes nothing; 409 if it ended."""
    run = state.client.pause(run_id, by=identity(request))
    return Operated(run_id=run_id, status=run.status, message=f"run {run_id} is PAUSED")


@router.post("/runs/{run_id}/resume", response_model=Operated)
def resume(run_id: str, state: ServerDep, request: Request) -> Operated:
    """Resume a paused (or parked) run: what fell due meanwhile takes effect now; 409 if it
    is neither paused nor parked."""
    run = state.client.resume(run_id, by=identity(request))
    return Operated(run_id=run_id, status=run.status, message=f"run {run_id} resumed")


@router.post("/runs/{run_id}/operations/{operation}/succeed", response_model=EditedStep)
def succeed_step(run_id: str, operation: str, body: StepSuccess, state: ServerDep,
                 request: Request) -> EditedStep:
    """Record the step (name or operation id) of a paused or parked run SUCCEEDED with
    `result`, whatever it was: the replay after resume returns it. 409 if the run is not
    paused or parked, or an invocation still holds it."""
    op = state.client.edit_operation(run_id, operation, checked_json(body.result, "result"),
                                     by=identity(request))
    return EditedStep(operation=operation_json(run_id, op),
                      message=f"step {op.name!r} of run {run_id} is now SUCCEEDED")


@router.post("/runs/{run_id}/operations/{operation}/fail", response_model=EditedStep)
def fail_step(run_id: str, operation: str, body: StepFailure, state: ServerDep,
              request: Request) -> EditedStep:
    """Record the step of a paused or parked run FAILED with this error: the replay after
    resume raises StepFailed there. 409 as for succeed."""
    op = state.client.edit_operation(run_id, operation, error=ErrorObject(body.type,
                                                                          body.message),
                                     by=identity(request))
    return EditedStep(operation=operation_json(run_id, op),
                      message=f"step {op.name!r} of run {run_id} is now FAILED")
