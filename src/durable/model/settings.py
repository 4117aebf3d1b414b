"""What a worker's code says of its workflows that other processes need without the code: kept
in the store (`workflow_settings`) by every worker as it starts serving."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from durable.errors import UsageError


@dataclass(frozen=True, slots=True)
class WorkflowSettings:
    """What a worker's code says of a workflow that processes without the code need to know:
    the `queue` its runs wait on, and its own `retention` (seconds an ended run is kept),
    which overrides the global one."""

    workflow: str
    queue: str | None = None
    retention: float | None = None


def retention_seconds(workflow: str, retention: timedelta | float | None) -> float | None:
    """A workflow's `retention` (`@workflow(retention=...)`) in seconds; refused unless
    positive."""
    if retention is None:
        return None
    seconds = retention.total_seconds() if isinstance(retention, timedelta) else retention
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise UsageError(f"workflow {workflow!r}: retention={retention!r} must be a positive "
                         "timedelta, e.g. retention=timedelta(days=30)")
    return float(seconds)
