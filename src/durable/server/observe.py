"""`GET /api/queues`, and what it, `GET /api/schedules` and the UI's pages of queues,
schedules and functions read (through the client).

Queues are declared in code: the server knows those of the workflows it has loaded (`--worker`
targets), as a worker does. Schedules are those stored (declared in code and served by a
worker once, or created through the API) and those of the loaded workflows not served yet.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter

from durable.engine.metrics import FunctionHealth, QueueStats
from durable.engine.worker import served_queues
from durable.errors import RunNotFound
from durable.invoke.push import FunctionSpec, registered
from durable.model import ExecutionStatus
from durable.model.schedule import ScheduleInfo
from durable.server.deps import ServerDep, ServerState
from durable.server.errors import ERROR_RESPONSES
from durable.server.schemas import (
    ErrorInfo,
    FunctionHealthOut,
    FunctionStatus,
    QueueOut,
)

router = APIRouter(prefix="/api", tags=["observe"], responses=ERROR_RESPONSES)

RATE_WINDOW = 600.0
"""The queues' admission rate is taken over the last ten minutes."""
HEALTH_WINDOW = 86400.0
"""Functions' invocations are counted over the last day."""


def queues(state: ServerState) -> list[QueueStats]:
    return state.client.queues(served_queues(state.workflows.values()), RATE_WINDOW)


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    info: ScheduleInfo
    last_status: ExecutionStatus | None


def schedules(state: ServerState) -> list[ScheduleRow]:
    stored = state.client.schedules()
    known = {info.workflow for info in stored}
    rows = []
    for info in [*stored, *(info for info in state.client.schedules(state.workflows.values())
                            if info.workflow not in known)]:
        status = None
        if info.last_run_id is not None:
            # deleted since (retention): the tick stays recorded
            with contextlib.suppress(RunNotFound):
                status = state.client.get(info.last_run_id).status
        rows.append(ScheduleRow(info, status))
    return rows


@dataclass(frozen=True, slots=True)
class FunctionRow:
    spec: FunctionSpec
    health: FunctionHealth


def functions(state: ServerState) -> list[FunctionRow]:
    specs = registered(state.client.store)
    health = state.client.function_health([s.name for s in specs], HEALTH_WINDOW)
    return [FunctionRow(s, health[s.name]) for s in specs]


def _iso(ts: float | datetime | None) -> str | None:
    if isinstance(ts, datetime):
        return ts.isoformat()
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@router.get("/queues", response_model=list[QueueOut])
def list_queues(state: ServerDep) -> list[QueueOut]:
    """The queues of the loaded workflows: runs waiting and running, the admission rate over
    the last ten minutes, and since when the oldest run waits."""
    now = state.client.clock()
    return [QueueOut(name=q.queue.queue.name, limit=q.queue.queue.limit,
                     rate=q.queue.queue.rate, workflows=list(q.queue.workflows),
                     waiting=q.waiting, running=q.running, admitted=q.admitted,
                     window_seconds=q.window, admitted_per_minute=q.per_minute,
                     oldest_waiting_since=_iso(q.oldest_waiting),
                     oldest_waiting_seconds=None if q.oldest_waiting is None
                     else max(now - q.oldest_waiting, 0.0))
            for q in queues(state)]


def function_status(row: FunctionRow) -> FunctionStatus:
    """A function and its health as `GET /api/functions` lists it."""
    h = row.health
    return FunctionStatus(**dataclasses.asdict(row.spec), health=FunctionHealthOut(
        window_seconds=h.window, invocations=h.invocations, failures=h.failures,
        last_invoked_at=_iso(h.last_at), last_ok=h.last_ok, last_run_id=h.last_run_id,
        last_error=None if h.last_error is None else ErrorInfo(**h.last_error.to_dict()),
        last_error_at=_iso(h.last_error_at), last_error_run_id=h.last_error_run_id))
