"""Temporal's Worker(...) and Client.connect(...) options as Temporal programs pass them: the
ones with a meaning here act (concurrency, the shutdown drain), the others are accepted and
named once in the log, and a keyword Temporal lacks is a TypeError, as under Temporal."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from durable.temporal import activity, workflow
from durable.temporal._ignored import _warned
from durable.temporal.client import Client
from durable.temporal.worker import SharedStateManager, UnsandboxedWorkflowRunner, Worker

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works


@activity.defn
def shout(text: str) -> str:
    return text.upper()


@workflow.defn
class Shout:
    @workflow.run
    async def run(self, text: str) -> str:
        return await workflow.execute_activity(shout, text,
                                               start_to_close_timeout=timedelta(seconds=5))


async def test_temporal_worker_options_run_and_the_ignored_ones_are_logged_once(
        any_db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "durable.temporal")
    _warned.clear()
    client = await Client.connect(any_db, data_converter=object(), identity="me", lazy=False)
    manager = multiprocessing.Manager()
    try:
        options = dict(
            activity_executor=ThreadPoolExecutor(4), max_concurrent_activities=4,
            max_concurrent_workflow_tasks=2, identity="worker-1", build_id="v2",
            max_cached_workflows=0, sticky_queue_schedule_to_start_timeout=timedelta(seconds=5),
            interceptors=[object()], workflow_runner=UnsandboxedWorkflowRunner(),
            shared_state_manager=SharedStateManager.create_from_multiprocessing(manager),
            graceful_shutdown_timeout=timedelta(seconds=2), debug_mode=False, plugins=[])
        for _ in range(2):
            async with Worker(client, task_queue="q", workflows=[Shout], activities=[shout],
                              **options):
                assert await asyncio.wait_for(client.execute_workflow(
                    Shout.run, "hi", id="shout", task_queue="q"), HANG_GUARD) == "HI"
    finally:
        manager.shutdown()
    warned = [r.getMessage() for r in caplog.records]
    for option in ("activity_executor", "max_concurrent_activities", "identity", "build_id",
                   "max_cached_workflows", "sticky_queue_schedule_to_start_timeout",
                   "interceptors", "workflow_runner", "shared_state_manager"):
        assert sum(f"Worker: {option}= has no effect" in m for m in warned) == 1, option
    for option in ("data_converter", "identity"):
        assert sum(f"Client.connect: {option}= has no effect" in m for m in warned) == 1
    # mapped, or left at Temporal's default: nothing to say
    for option in ("max_concurrent_workflow_tasks", "graceful_shutdown_timeout", "debug_mode",
                   "plugins", "lazy"):
        assert not any(f" {option}=" in m for m in warned), option
    client.durable.close()


async def test_a_keyword_temporals_worker_lacks_is_a_type_error(db_url: str) -> None:
    client = Client(db_url)
    with pytest.raises(TypeError, match=r"Worker\(\) got an unexpected keyword argument "
                                        r"'max_concurrent_workflows'"):
        Worker(client, task_queue="q", workflows=[Shout], max_concurrent_workflows=5)
    with pytest.raises(TypeError, match="unexpected keyword argument 'namespce'"):
        await Client.connect(db_url, namespce="x")
    client.durable.close()


def test_the_options_and_failure_fields_are_temporals_own() -> None:
    """Against temporalio's own signatures and protobuf, where it is installed: every option
    its Worker and Client.connect take is sorted here, none that they lack, and the Failure
    fields `.failure` has are Failure's."""
    temporalio_worker = pytest.importorskip("temporalio.worker", reason="temporalio is not "
                                            "installed: `pip install temporalio` to compare")
    import dataclasses
    import inspect

    from temporalio.api.failure.v1 import ApplicationFailureInfo, Failure
    from temporalio.client import Client as TemporalClient

    from durable.temporal import _failure
    from durable.temporal._options import (
        IGNORED_CONNECT_OPTIONS,
        IGNORED_WORKER_OPTIONS,
        MAPPED_WORKER_OPTIONS,
    )

    theirs = set(inspect.signature(temporalio_worker.Worker.__init__).parameters) - {
        "self", "client", "task_queue", "activities", "workflows"}
    assert theirs == set(IGNORED_WORKER_OPTIONS) | MAPPED_WORKER_OPTIONS
    theirs = set(inspect.signature(TemporalClient.connect).parameters) - {
        "cls", "target_host", "namespace"}
    assert theirs == set(IGNORED_CONNECT_OPTIONS)
    for ours, proto in ((_failure.Failure, Failure),
                        (_failure.ApplicationFailureInfo, ApplicationFailureInfo)):
        assert {f.name for f in dataclasses.fields(ours)} <= {
            f.name for f in proto.DESCRIPTOR.fields}
