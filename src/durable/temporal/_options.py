"""The keyword options of Temporal's `Worker(...)` and `Client.connect(...)`, sorted by what
they mean on Durable.

Temporal code passes many tuning options. Those with a Durable meaning are mapped by the caller
(`MAPPED_WORKER_OPTIONS`); those without one are accepted, so the code runs unchanged, and named
once in the log (`ignore`), so nobody relies on them unawares. A keyword Temporal's own class
does not take is a TypeError, as it is there: a typo must not pass as an ignored option.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from durable.temporal._ignored import ignore

_NO_ACTIVITY_TASKS = ("activities run inside their workflow's step, in the process serving the "
                      "workflow, bounded by max_concurrent_workflow_tasks")
_NO_STICKY_CACHE = ("a Durable worker replays a run's checkpointed history on each invocation; "
                    "there is no sticky queue or workflow cache to tune")
_NO_POLLING = "Durable's worker claims runs from the database; there is no task poller"
_NO_SERVER = "there is no Temporal server: the database is the only party"

IGNORED_WORKER_OPTIONS: Mapping[str, str] = {
    "activity_executor": "sync activities run on threads of Durable's own",
    "workflow_task_executor": "workflow code runs on Durable's event loop",
    "nexus_task_executor": "Nexus is not supported",
    "nexus_service_handlers": "Nexus is not supported",
    "workflow_runner": "workflow code runs on Durable's replay machinery, not in a sandbox",
    "unsandboxed_workflow_runner": "workflow code runs on Durable's replay machinery",
    "plugins": "Temporal worker plugins hook into Temporal's own worker",
    "interceptors": "Temporal interceptors are not called; wrap activities or use Durable's "
                    "logs and metrics",
    "build_id": "versions are told apart by workflow.patched(...) and Durable's replay check",
    "use_worker_versioning": "versions are told apart by workflow.patched(...)",
    "deployment_config": "versions are told apart by workflow.patched(...)",
    "identity": "Durable records which worker holds a run by its lease, not by a name",
    "max_cached_workflows": _NO_STICKY_CACHE,
    "nonsticky_to_sticky_poll_ratio": _NO_STICKY_CACHE,
    "sticky_queue_schedule_to_start_timeout": _NO_STICKY_CACHE,
    "disable_safe_workflow_eviction": _NO_STICKY_CACHE,
    "max_concurrent_activities": _NO_ACTIVITY_TASKS,
    "max_concurrent_local_activities": _NO_ACTIVITY_TASKS,
    "max_activities_per_second": _NO_ACTIVITY_TASKS,
    "max_task_queue_activities_per_second": _NO_ACTIVITY_TASKS,
    "no_remote_activities": _NO_ACTIVITY_TASKS,
    "disable_eager_activity_execution": _NO_ACTIVITY_TASKS,
    "max_concurrent_nexus_tasks": "Nexus is not supported",
    "tuner": "set max_concurrent_workflow_tasks, the worker's one concurrency bound",
    "max_concurrent_workflow_task_polls": _NO_POLLING,
    "max_concurrent_activity_task_polls": _NO_POLLING,
    "workflow_task_poller_behavior": _NO_POLLING,
    "activity_task_poller_behavior": _NO_POLLING,
    "nexus_task_poller_behavior": _NO_POLLING,
    "max_heartbeat_throttle_interval": "heartbeats are not sent to a server",
    "default_heartbeat_throttle_interval": "heartbeats are not sent to a server",
    "shared_state_manager": "sync activities run on threads, never in other processes",
    "workflow_failure_exception_types": "declare them per workflow with "
                                        "@workflow.defn(failure_exception_types=[...])",
    "debug_mode": "there is no deadlock detector or sandbox to disable",
    "on_fatal_error": "a Durable worker does not stop on errors; it logs them and backs off",
    "plugin_shutdown_timeout": "Temporal worker plugins hook into Temporal's own worker",
    "patch_activation_callback": "workflow code runs on Durable's replay machinery",
    "max_eager_activity_reservations_per_workflow_task": _NO_ACTIVITY_TASKS,
    "disable_payload_error_limit": _NO_SERVER,
    "max_workflow_task_external_storage_concurrency": _NO_SERVER,
}
"""Temporal's `Worker(...)` options with no effect here, and why."""

MAPPED_WORKER_OPTIONS = frozenset({"max_concurrent_workflow_tasks", "graceful_shutdown_timeout"})
"""Taken by `durable.temporal.worker.Worker` itself: its concurrency and its shutdown drain."""

IGNORED_CONNECT_OPTIONS: Mapping[str, str] = {
    "api_key": "the client opens the Durable database directly; put TLS settings in its URL",
    "tls": "the client opens the Durable database directly; put TLS settings in its URL",
    "rpc_metadata": _NO_SERVER,
    "data_converter": "values are encoded by Durable's serializer (JSON; dataclasses and "
                      "pydantic models by the run method's and activity's annotations)",
    "plugins": "Temporal client plugins hook into Temporal's own client",
    "interceptors": "Temporal client interceptors are not called",
    "default_workflow_query_reject_condition": "queries are answered from the run's history, "
                                               "whatever its status",
    "retry_config": _NO_SERVER,
    "keep_alive_config": _NO_SERVER,
    "http_connect_proxy_config": _NO_SERVER,
    "identity": _NO_SERVER,
    "lazy": "the client connects when a call first needs the database",
    "runtime": _NO_SERVER,
    "header_codec_behavior": _NO_SERVER,
    "connect_timeout": _NO_SERVER,
    "dns_load_balancing_config": _NO_SERVER,
    "grpc_compression": _NO_SERVER,
    "payload_limits": _NO_SERVER,
}
"""Temporal's `Client.connect(...)` options with no effect here, and why."""


def _unset(value: Any) -> bool:
    """Left at Temporal's default (or an empty list): nothing the code relies on."""
    return value is None or value is False or (isinstance(value, list | tuple) and not value)


def accept(where: str, given: Mapping[str, Any], ignored: Mapping[str, str]) -> None:
    """Refuse keywords Temporal's `where` lacks (TypeError, as Python says it); log each ignored
    one that is set, once per process."""
    for option in given:
        if option not in ignored:
            raise TypeError(f"{where}() got an unexpected keyword argument {option!r}")
    for option, value in given.items():
        if not _unset(value):
            ignore(option, where, ignored[option])
