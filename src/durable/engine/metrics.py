"""Prometheus metrics: what this process saw, and what the store holds.

What a process sees (step durations, checkpoint latency, failed invocations, lease takeovers,
admission waits, schedule ticks) is counted as it happens, in prometheus_client's default
registry, so one process's `/metrics` shows them beside the client library's process metrics
and any of the application's own. What the store holds (runs started and ended, queue depth,
timers due) is read from it at scrape time (`Snapshot`, `StoreCollector`): the same numbers
from every process that serves them, so a dashboard takes their `max`, never their `sum`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from durable.model import (
    ErrorObject,
    ExecutionStatus,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
)
from durable.model.queues import ServedQueue
from durable.store.tx import Tx

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SLOW = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

STEP_SECONDS = Histogram("durable_step_duration_seconds",
                         "How long step attempts ran, by how they ended",
                         ["workflow", "step", "outcome"], buckets=_SLOW)
CHECKPOINT_SECONDS = Histogram("durable_checkpoint_seconds",
                               "How long a checkpoint took to become durable",
                               ["workflow"], buckets=_FAST)
INVOCATION_FAILURES = Counter("durable_invocation_failures",
                              "Invocations that failed to run (a function unreachable, "
                              "crashed, timed out); each is retried", ["workflow"])
LEASE_TAKEOVERS = Counter("durable_lease_takeovers",
                          "Runs taken over from a worker that stopped renewing its lease",
                          ["workflow"])
ADMISSION_WAIT = Histogram("durable_queue_admission_wait_seconds",
                           "How long runs waited for their queue to admit them", ["queue"],
                           buckets=_SLOW)
SCHEDULE_TICKS = Counter("durable_schedule_ticks", "Schedule ticks that started a run",
                         ["workflow"])

_OUTCOMES = {OperationAction.SUCCEED: "succeeded", OperationAction.FAIL: "failed",
             OperationAction.RETRY: "retried"}


def step_attempts(workflow: str, updates: Sequence[OperationUpdate], now: float) -> None:
    """Observe the step attempts a checkpoint ended (timed from their `started_at`)."""
    for u in updates:
        outcome = _OUTCOMES.get(u.action)
        if u.type is OperationType.STEP and outcome and u.started_at is not None:
            _step_seconds(workflow, u.name or "", outcome).observe(max(now - u.started_at, 0.0))


@functools.cache
def _step_seconds(workflow: str, step: str, outcome: str) -> Any:
    """STEP_SECONDS's series for these labels, looked up once: `labels` costs more than the
    observation, on the path of every step. Unbounded like the series themselves, which a
    registry keeps for good."""
    return STEP_SECONDS.labels(workflow, step, outcome)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the store holds, as the gauges and store-side counters show it."""

    started: dict[str, int]  # workflow -> runs ever created (that still exist)
    ended: dict[tuple[str, str], int]  # (workflow, status) -> runs that ended so
    queue_waiting: dict[str, int]  # queue -> runs waiting for admission
    queue_running: dict[str, int]  # queue -> runs holding a slot
    timers_due: int  # waits, retries and timeouts due now that no invocation has taken up yet


def snapshot(tx: Tx, now: float, queues: Sequence[ServedQueue]) -> Snapshot:
    started: dict[str, int] = {}
    ended: dict[tuple[str, str], int] = {}
    for workflow, status, n in tx.run_counts():
        started[workflow] = started.get(workflow, 0) + n
        if not ExecutionStatus(status).live:
            ended[(workflow, status)] = n
    occupancy = {q.queue.name: _occupancy(tx, q) for q in queues}
    return Snapshot(started, ended, {name: n[0] for name, n in occupancy.items()},
                    {name: n[1] for name, n in occupancy.items()},
                    tx.timers_due(now, OperationStatus.PENDING.value))


def _occupancy(tx: Tx, q: ServedQueue) -> tuple[int, int]:
    """(runs waiting for admission, runs holding a slot) of the queue."""
    return tx.queue_depth(q.workflows), tx.queue_held(q.queue.name)


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One queue as the server's queues page shows it: its limits, what it holds, how fast it
    admitted runs over the last `window` seconds, and since when its oldest run waits."""

    queue: ServedQueue
    waiting: int
    running: int
    admitted: int  # runs admitted within the window
    window: float
    oldest_waiting: float | None  # when the run waiting longest became ready to start

    @property
    def per_minute(self) -> float:
        return self.admitted * 60.0 / self.window


def queue_stats(tx: Tx, now: float, queues: Sequence[ServedQueue],
                window: float) -> list[QueueStats]:
    out = []
    for q in queues:
        waiting, running = _occupancy(tx, q)
        out.append(QueueStats(q, waiting, running, tx.queue_admitted(q.queue.name, now - window),
                              window, tx.queue_first_waiting(q.workflows) if waiting else None))
    return out


@dataclass(frozen=True, slots=True)
class FunctionHealth:
    """How invoking a function went over the last `window` seconds, from its runs' history:
    invocations that ended, those that failed to run (unreachable, crashed, timed out; each
    retried), the latest of each."""

    invocations: int
    failures: int
    window: float
    last_at: float | None
    last_ok: bool | None  # None: not invoked within the window
    last_run_id: str | None
    last_error: ErrorObject | None
    last_error_at: float | None
    last_error_run_id: str | None


def function_health(tx: Tx, names: Sequence[str], now: float,
                    window: float) -> dict[str, FunctionHealth]:
    since = now - window
    counts = tx.invocation_counts(names, since)
    out = {}
    for name in names:
        invocations, failures = counts.get(name, (0, 0))
        last = tx.last_invocation(name, since) if invocations else None
        failed = tx.last_invocation(name, since, failed=True) if failures else None
        error = _error_of(failed[2]) if failed else None
        out[name] = FunctionHealth(
            invocations, failures, window, last[0] if last else None,
            None if last is None else _error_of(last[2]) is None,
            last[1] if last else None, error, failed[0] if failed else None,
            failed[1] if failed else None)
    return out


def _error_of(details: str | None) -> ErrorObject | None:
    """The error an `InvocationCompleted` event's details carry (None: the function answered)."""
    error = json.loads(details or "{}").get("error")
    return None if error is None else ErrorObject.from_dict(error)


class StoreCollector(Collector):
    """The store's numbers for a registry, read through `read` at every scrape."""

    def __init__(self, read: Callable[[], Snapshot]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._read()))


def families(s: Snapshot) -> list[Metric]:
    started = CounterMetricFamily("durable_runs_started", "Runs created, by workflow",
                                  labels=["workflow"])
    for workflow, n in sorted(s.started.items()):
        started.add_metric([workflow], n)
    ended = CounterMetricFamily("durable_runs_ended", "Runs that ended, by workflow and status",
                                labels=["workflow", "status"])
    for (workflow, status), n in sorted(s.ended.items()):
        ended.add_metric([workflow, status], n)
    depth = GaugeMetricFamily("durable_queue_depth", "Runs waiting for their queue to admit "
                              "them", labels=["queue"])
    running = GaugeMetricFamily("durable_queue_running", "Runs holding a slot of their queue",
                                labels=["queue"])
    for name in sorted(s.queue_waiting):
        depth.add_metric([name], s.queue_waiting[name])
        running.add_metric([name], s.queue_running[name])
    timers = GaugeMetricFamily("durable_timers_due", "Timers (sleeps, retry backoffs, callback "
                               "timeouts) due now that no invocation has taken up yet",
                               value=s.timers_due)
    return [started, ended, depth, running, timers]
