"""What the server's queues, schedules and functions pages read, on both stores: a queue's
waiting and running runs, admission rate and oldest waiting run; a function's invocations,
failures to run and last error, from its runs' history (so they outlive the process)."""

from __future__ import annotations

from durable import Client
from durable.engine import machine
from durable.model import (
    RETRY_INVOCATIONS,
    ErrorObject,
    InvocationOutput,
    InvocationStatus,
)
from durable.model.queues import Queue, ServedQueue
from durable.store import open_store

T0 = 1_000_000.0


def test_function_health_counts_invocations_and_failures_and_keeps_the_last_error(
        any_db: str) -> None:
    store = open_store(any_db)
    try:
        down = ErrorObject("Function.Unreachable", "function 'billing' at http://x: refused")
        store.write_sync(lambda tx: machine.start_run(tx, "b-1", "billing", None, T0))
        store.write_sync(lambda tx: machine.start_run(tx, "q-1", "quiet", None, T0))
        (first,) = store.write_sync(lambda tx: machine.claim(tx, "w", T0, 1, 30.0, ["billing"]))
        store.write_sync(lambda tx: machine.retry_invocation(
            tx, "b-1", first.token, down, T0 + 1, 0.5, RETRY_INVOCATIONS))
        client = Client(store, clock=lambda: T0 + 2)
        failing = client.function_health(["billing", "quiet", "unknown"])
        assert (failing["billing"].invocations, failing["billing"].failures) == (1, 1)
        assert failing["billing"].last_ok is False
        assert failing["billing"].last_error == down
        assert failing["billing"].last_error_run_id == "b-1"
        assert failing["quiet"].last_ok is None and failing["quiet"].invocations == 0
        assert failing["unknown"].last_at is None

        (second,) = store.write_sync(lambda tx: machine.claim(tx, "w", T0 + 100, 1, 30.0,
                                                              ["billing"]))
        store.write_sync(lambda tx: machine.finish_invocation(
            tx, "b-1", second.token, InvocationOutput(InvocationStatus.FAILED,
                                                      error=ErrorObject("ValueError", "bad")),
            T0 + 101, 0.2))
        later = Client(store, clock=lambda: T0 + 102).function_health(["billing"])["billing"]
        # The workflow's own failure is an answer: the function ran.
        assert (later.invocations, later.failures, later.last_ok) == (2, 1, True)
        assert later.last_at == T0 + 101 and later.last_error == down

        day_after = Client(store, clock=lambda: T0 + 1 + 86400.0)
        moved_on = day_after.function_health(["billing"])["billing"]
        assert (moved_on.invocations, moved_on.failures, moved_on.last_error) == (1, 0, None)
    finally:
        store.close()


def test_queue_stats_show_waiting_running_rate_and_the_oldest_waiting_run(any_db: str) -> None:
    queue = ServedQueue(Queue("observe-q", limit=1, rate="100/minute"), ("job",))
    store = open_store(any_db)
    try:
        for n in range(3):
            store.write_sync(lambda tx, n=n: machine.start_run(tx, f"j-{n}", "job", None,
                                                               T0 + n))
        claimed = store.write_sync(lambda tx: machine.claim(tx, "w", T0 + 10, 5, 30.0, ["job"],
                                                            [queue]))
        assert [c.invocation.run_id for c in claimed] == ["j-0"]
        (stats,) = Client(store, clock=lambda: T0 + 20).queues([queue], window=600.0)
        assert (stats.waiting, stats.running, stats.admitted) == (2, 1, 1)
        assert stats.per_minute == 0.1
        assert stats.oldest_waiting == T0 + 1  # j-1, ready since it was created
        (idle,) = Client(store, clock=lambda: T0 + 700).queues([queue], window=600.0)
        assert idle.admitted == 0
    finally:
        store.close()
