"""A bulk action: one action (cancel, terminate, pause, resume, rerun) over every run a listing
filter selects, as a job whose progress is kept in the store so that it can be resumed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from durable.errors import UsageError
from durable.model.listing import Cursor

ACTIONS = ("cancel", "terminate", "pause", "resume", "rerun")
"""What a bulk job can do to each run it selects (each as the Client's command of that name)."""
FILTER_KEYS = ("status", "workflow", "search", "where", "since", "until", "parent", "roots")
"""The parts of a listing filter (`model.listing.run_filter`) a job keeps, as typed but for
`since`/`until`, kept as the epoch seconds they meant when the job began."""
RUNNING, DONE, DRY_RUN = "RUNNING", "DONE", "DRY_RUN"


def checked_action(action: str, from_step: str | None) -> str:
    """`action` if a bulk job can do it with `from_step`; else UsageError saying what can."""
    if action not in ACTIONS:
        raise UsageError(f"unknown bulk action {action!r}; use one of {', '.join(ACTIONS)}")
    if (action == "rerun") != bool(from_step):
        raise UsageError("a bulk rerun needs the step to rerun from (--from STEP / from_step)"
                         if action == "rerun" else
                         f"from_step is for a bulk rerun only, not {action}")
    return action


@dataclass(frozen=True, slots=True)
class BulkJob:
    """A bulk action and how far it got. `cursor`: the last run it acted on or skipped (runs
    are walked newest first, as a listing pages them); `acted`/`skipped`: runs the action was
    applied to, and runs it no longer applied to (ended, already paused...). It selects only
    runs created before `started_at`, so runs it starts (reruns) or that start meanwhile are
    never swept in. A dry run (status DRY_RUN, no id, never stored) counts what it would do."""

    job_id: str
    action: str
    filter: dict[str, Any]
    from_step: str | None
    reason: str | None
    status: str
    started_at: float
    updated_at: float
    acted: int = 0
    skipped: int = 0
    cursor: Cursor | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id or None, "action": self.action, "filter": self.filter,
                "from_step": self.from_step, "reason": self.reason, "status": self.status,
                "started_at": self.started_at, "updated_at": self.updated_at,
                "matched": self.acted + self.skipped, "acted": self.acted,
                "skipped": self.skipped}
