"""A client shaped like `temporalio.client.Client`'s common calls, on a Durable store.

    client = await Client.connect("sqlite:///.durable/durable.db")   # or DURABLE_DB
    handle = await client.start_workflow(GreetingWorkflow.run, "Ada", id="greet-ada",
                                         task_queue="greetings")
    await handle.signal(GreetingWorkflow.approve, True)
    print(await handle.execute_update(GreetingWorkflow.set_language, "fr"))
    print(await handle.query(GreetingWorkflow.status), await handle.result())

There is no Temporal server: the client talks to Durable's store directly, and a Durable worker
(`durable.temporal.worker.Worker`, `durable worker`, or the serverless `run` entry) executes the
runs. A workflow id is a Durable run id.

An update's caller follows the run's `UPDATES` stream, on which the worker writes the update's
stages (accepted or rejected, then its result or failure; see `_runtime`), woken by the store's
commit notifications: it waits across worker crashes and restarts without polling.
"""

from __future__ import annotations

import asyncio
import typing
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Generic, TypeVar

from durable.client import Client as DurableClient
from durable.errors import RunNotFound, UsageError
from durable.model import ErrorObject, ExecutionStatus, RunInfo
from durable.model.listing import RunFilter
from durable.sdk.serializer import DEFAULT_SERIALIZER, Serializer
from durable.store import Store
from durable.temporal._async_completion import AsyncActivityHandle, parse_task_token
from durable.temporal._cron import CronStart
from durable.temporal._cron import parse as parse_cron
from durable.temporal._definition import Definition, definition_of
from durable.temporal._options import IGNORED_CONNECT_OPTIONS, accept
from durable.temporal._queries import ask
from durable.temporal._runtime import CHANNEL, UPDATES
from durable.temporal.common import (
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
    run_attributes,
)
from durable.temporal.exceptions import (
    TERMINATED,
    ApplicationError,
    UnsupportedFeature,
    WorkflowAlreadyStartedError,
    WorkflowFailureError,
    WorkflowQueryFailedError,
    cause_of,
)
from durable.temporal.service import RPCError, RPCStatusCode

__all__ = [
    "AsyncActivityHandle",
    "Client",
    "WithStartWorkflowOperation",
    "WorkflowAlreadyStartedError",
    "WorkflowExecutionDescription",
    "WorkflowExecutionStatus",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowQueryFailedError",
    "WorkflowUpdateFailedError",
    "WorkflowUpdateHandle",
    "WorkflowUpdateStage",
]

R = TypeVar("R")

STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgres://")


def store_url(target_host: str | None) -> str | None:
    """The Durable database a Temporal client address names. A database URL
    (`sqlite:///path.db`, `postgresql://...`) is that database, so TEMPORAL_ADDRESS can point
    unchanged Temporal code at the store its workers share. A Temporal frontend address
    (`localhost:7233`: host and port, no scheme) names no Durable database: None, which means
    DURABLE_DB, else the embedded default (sqlite:///.durable/durable.db). Anything else (an
    http:// URL of a Durable server, say) is refused: this client has no network transport."""
    if not target_host or "://" not in target_host:
        return None
    if target_host.startswith(STORE_SCHEMES):
        return target_host
    raise UsageError(f"Client.connect: target_host {target_host!r} is neither a Temporal "
                     "address (host:port, which means DURABLE_DB or the embedded database) nor a "
                     "Durable database URL (sqlite:///path.db, postgresql://...); set "
                     "TEMPORAL_ADDRESS (or target_host) to the database URL the workers use")


class _NoArg:
    pass


_NOARG: Any = _NoArg()


class WorkflowUpdateFailedError(Exception):
    """The update was rejected by its validator, failed in its handler (`cause` says how), or
    its workflow ended before the handler finished."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("Workflow update failed")
        self.__cause__ = cause

    @property
    def cause(self) -> BaseException:
        assert self.__cause__ is not None
        return self.__cause__


class WorkflowUpdateStage(IntEnum):
    """How far `start_update` waits: ACCEPTED (the validator passed and the handler started)
    or COMPLETED. ADMITTED, which Temporal's client does not take either, is refused."""

    ADMITTED = 1
    ACCEPTED = 2
    COMPLETED = 3


class WorkflowExecutionStatus(IntEnum):
    RUNNING = 1
    COMPLETED = 2
    FAILED = 3
    CANCELED = 4
    TERMINATED = 5
    CONTINUED_AS_NEW = 6
    TIMED_OUT = 7


_STATUS = {
    ExecutionStatus.RUNNING: WorkflowExecutionStatus.RUNNING,
    ExecutionStatus.PAUSED: WorkflowExecutionStatus.RUNNING,  # Temporal's has no paused one
    ExecutionStatus.SUCCEEDED: WorkflowExecutionStatus.COMPLETED,
    ExecutionStatus.FAILED: WorkflowExecutionStatus.FAILED,
    ExecutionStatus.STOPPED: WorkflowExecutionStatus.CANCELED,
    ExecutionStatus.TIMED_OUT: WorkflowExecutionStatus.TIMED_OUT,
}


@dataclass(frozen=True, slots=True)
class WorkflowExecutionDescription:
    id: str
    run_id: str
    workflow_type: str
    status: WorkflowExecutionStatus
    start_time: datetime
    close_time: datetime | None


def _args(arg: Any, args: Sequence[Any]) -> list[Any]:
    if arg is not _NOARG and args:
        raise ValueError("pass either one argument or args=[...], not both")
    return [arg] if arg is not _NOARG else list(args)


def _refuse(what: str, **given: Any) -> None:
    for option, value in given.items():
        if value:
            raise UnsupportedFeature(f"{option}= on {what}")


class Client:
    """Start, signal, query, cancel and await Temporal-style workflows stored by Durable."""

    def __init__(self, durable: DurableClient | str | Store | None = None, *,
                 namespace: str = "default") -> None:
        self.durable = durable if isinstance(durable, DurableClient) else DurableClient(durable)
        self.namespace = namespace

    @classmethod
    async def connect(cls, target_host: str | None = None, *, namespace: str = "default",
                      **options: Any) -> Client:
        """`target_host` as `store_url` maps it; the keyword arguments of
        `envconfig.ClientConfig.load_client_connect_config()` are all taken, so
        `Client.connect(**config)` works. Temporal's other connection options (`api_key`,
        `tls`, `data_converter`, ...) secure, tag or encode a connection to Temporal's
        frontend; Durable's client opens the database itself, so they are logged once as
        ignored (`_options`), and a keyword Temporal's `connect` lacks is a TypeError."""
        accept("Client.connect", options, IGNORED_CONNECT_OPTIONS)
        return cls(store_url(target_host), namespace=namespace)

    async def start_workflow(
            self, workflow: Any, arg: Any = _NOARG, *, args: Sequence[Any] = (), id: str,
            task_queue: str = "", execution_timeout: timedelta | None = None,
            run_timeout: timedelta | None = None, task_timeout: timedelta | None = None,
            id_reuse_policy: Any = None, id_conflict_policy: Any = None,
            retry_policy: Any = None, cron_schedule: str = "", memo: Any = None,
            search_attributes: Any = None, start_signal: str | None = None,
            start_signal_args: Sequence[Any] = (), result_type: Any = None,
            **options: Any) -> WorkflowHandle[Any]:
        """Start a run of `workflow` (its class, run method or name) under `id`. With
        `start_signal`, the signal is delivered before the workflow's code first runs. With
        `cron_schedule` (`"0 * * * *"`, `"CRON_TZ=Europe/Paris 0 9 * * *"`), the workflow runs
        at each tick, under this id, until cancelled (`_cron`)."""
        _refuse("start_workflow", execution_timeout=execution_timeout, run_timeout=run_timeout,
                retry_policy=retry_policy, memo=memo)
        attributes = (run_attributes(search_attributes, "start_workflow")
                      if search_attributes else None)
        defn = definition_of(workflow)
        handle: WorkflowHandle[Any] = WorkflowHandle(self, id, defn, result_type)
        use_existing = await self._make_room(id, WorkflowIDReusePolicy(id_reuse_policy or 1),
                                             WorkflowIDConflictPolicy(id_conflict_policy or 0))
        run_args = _args(arg, args)
        if cron_schedule:
            parse_cron(cron_schedule)  # a bad one fails here, not at the first tick
            run_args = [CronStart(cron_schedule, run_args)]
        if not use_existing:
            await self.durable.start_async(defn.durable, *run_args, id=id,
                                           attributes=attributes)
        if start_signal is not None:
            await handle.signal(start_signal, args=start_signal_args)
        return handle

    async def execute_workflow(self, workflow: Any, arg: Any = _NOARG, *,
                               args: Sequence[Any] = (), id: str, task_queue: str = "",
                               **options: Any) -> Any:
        """Start the workflow and wait for its result (a worker must be running it)."""
        handle = await self.start_workflow(workflow, arg, args=args, id=id,
                                           task_queue=task_queue, **options)
        return await handle.result()

    async def execute_update_with_start_workflow(
            self, update: str | Callable[..., Any], arg: Any = _NOARG, *,
            start_workflow_operation: WithStartWorkflowOperation[Any], args: Sequence[Any] = (),
            id: str | None = None, result_type: Any = None, **options: Any) -> Any:
        """Start the operation's workflow (or, as its `id_conflict_policy` says, use the one
        running under its id), send it the update and wait for the update's result."""
        handle = await self.start_update_with_start_workflow(
            update, arg, args=args, start_workflow_operation=start_workflow_operation, id=id,
            wait_for_stage=WorkflowUpdateStage.COMPLETED, result_type=result_type)
        return await handle.result()

    async def start_update_with_start_workflow(
            self, update: str | Callable[..., Any], arg: Any = _NOARG, *,
            start_workflow_operation: WithStartWorkflowOperation[Any],
            wait_for_stage: WorkflowUpdateStage, args: Sequence[Any] = (),
            id: str | None = None, result_type: Any = None,
            **options: Any) -> WorkflowUpdateHandle[Any]:
        """`execute_update_with_start_workflow` up to `wait_for_stage`. Not one atomic step as
        in Temporal: the run is started, then the update sent; a crash in between leaves the
        run started, and the caller's retry (with USE_EXISTING) sends the update to it."""
        op = start_workflow_operation
        try:
            wf_handle = await self.start_workflow(op.workflow, args=op.args, id=op.id,
                                                  **op.options)
        except BaseException as e:
            op.started.set_exception(e)
            raise
        op.started.set_result(wf_handle)
        return await wf_handle.start_update(update, arg, args=args, id=id,
                                            wait_for_stage=wait_for_stage,
                                            result_type=result_type)

    def get_workflow_handle(self, workflow_id: str, *, run_id: str | None = None,
                            result_type: Any = None) -> WorkflowHandle[Any]:
        return WorkflowHandle(self, workflow_id, None, result_type)

    def get_workflow_handle_for(self, workflow: Any, workflow_id: str, *,
                                run_id: str | None = None,
                                result_type: Any = None) -> WorkflowHandle[Any]:
        return WorkflowHandle(self, workflow_id, definition_of(workflow), result_type)

    def get_async_activity_handle(self, *, task_token: bytes | None = None,
                                  workflow_id: str | None = None, run_id: str | None = None,
                                  activity_id: str | None = None) -> AsyncActivityHandle:
        """A handle completing an activity that raised `activity.raise_complete_async()`: by
        its `task_token`, or by `workflow_id` (or `run_id`, the same here) and `activity_id`
        (`activity.info().activity_id`)."""
        if task_token is not None:
            run, activity = parse_task_token(task_token)
        elif (workflow_id or run_id) and activity_id:
            run, activity = str(workflow_id or run_id), activity_id
        else:
            raise UsageError("get_async_activity_handle: pass task_token=..., or workflow_id= "
                             "and activity_id=... (from activity.info())")
        return AsyncActivityHandle(self.durable, run, activity)

    async def _make_room(self, id: str, reuse: WorkflowIDReusePolicy,
                         conflict: WorkflowIDConflictPolicy) -> bool:
        """Apply Temporal's id policies to a run already under `id`; True if that run is to be
        used as it is. Durable keeps one run per id, so starting anew under the id of an ended
        run replaces it: the ended run's record and history are deleted first. A crash between
        the two leaves no run under the id, which the caller's retry of the start fills."""
        existing = await asyncio.to_thread(self._find, id)
        if existing is None:
            return False
        if existing.status.live:
            if conflict is WorkflowIDConflictPolicy.USE_EXISTING:
                return True
            if (conflict is not WorkflowIDConflictPolicy.TERMINATE_EXISTING
                    and reuse is not WorkflowIDReusePolicy.TERMINATE_IF_RUNNING):
                raise WorkflowAlreadyStartedError(id, existing.workflow, run_id=existing.run_id)
            await self.durable.terminate_async(id, "terminated by start_workflow: "
                                               "a new run takes its id")
        elif reuse is WorkflowIDReusePolicy.REJECT_DUPLICATE or (
                reuse is WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
                and existing.status is ExecutionStatus.SUCCEEDED):
            raise WorkflowAlreadyStartedError(id, existing.workflow, run_id=existing.run_id)
        await self._delete_with_ended_children(id)
        return False

    async def _delete_with_ended_children(self, run_id: str) -> None:
        """Delete an ended run and, first, its ended child runs (theirs too). A child's id is
        its parent's id and the call's position (or the id the call gave), the same for the new
        run under this id: left in place, the old child would be found by that id and taken
        for the new run's own, which would then wait on it forever. A child still running
        (ParentClosePolicy.ABANDON) is left alone."""
        children = await asyncio.to_thread(self._ended_children, run_id)
        for child in children:
            await self._delete_with_ended_children(child)
        await self.durable.delete_async(run_id)

    def _ended_children(self, run_id: str) -> list[str]:
        found: list[str] = []
        cursor: str | None = None
        while True:
            page = self.durable.runs(RunFilter(parent=run_id), limit=500, cursor=cursor)
            found += [run.run_id for run in page.runs if not run.status.live]
            cursor = page.next_cursor
            if cursor is None:
                return found

    async def _update_stages(self, run_id: str, update_id: str) -> list[tuple[int, Any]]:
        """The stages written so far for `update_id` (offset, stage), oldest first."""
        stream = self.durable.stream_async(run_id, UPDATES, follow=False)
        return [(entry.offset, entry.data) async for entry in stream
                if isinstance(entry.data, dict) and entry.data.get("id") == update_id]

    def _find(self, run_id: str) -> RunInfo | None:
        try:
            return self.durable.get(run_id)
        except RunNotFound:
            return None


class WithStartWorkflowOperation(Generic[R]):
    """The workflow start of an update-with-start: what `start_workflow` takes.
    `await op.workflow_handle()` gives the started (or existing) run's handle."""

    def __init__(self, workflow: Any, arg: Any = _NOARG, *, args: Sequence[Any] = (),
                 id: str, task_queue: str = "", id_conflict_policy: Any = None,
                 **options: Any) -> None:
        self.workflow = workflow
        self.args = _args(arg, args)
        self.id = id
        self.options = {"task_queue": task_queue, "id_conflict_policy": id_conflict_policy,
                        **options}
        self._started: asyncio.Future[WorkflowHandle[R]] | None = None

    @property
    def started(self) -> asyncio.Future[WorkflowHandle[R]]:
        if self._started is None:  # made where it is first awaited, on that loop
            self._started = asyncio.get_running_loop().create_future()
        return self._started

    async def workflow_handle(self) -> WorkflowHandle[R]:
        return await self.started


class WorkflowHandle(Generic[R]):
    """A handle on one run; `id` and `run_id` are both the Durable run id."""

    def __init__(self, client: Client, id: str, defn: Definition | None,
                 result_type: Any = None) -> None:
        self.client = client
        self.id = id
        self.run_id = id
        self.result_run_id = id
        self.first_execution_run_id = id
        self._defn = defn
        self._result_type = result_type

    def _definition(self, run: RunInfo) -> Definition:
        if self._defn is None:
            self._defn = definition_of(run.workflow)
        return self._defn

    async def result(self, *, follow_runs: bool = True,
                     rpc_timeout: timedelta | None = None) -> R:
        """Wait for the run to end. Continue-as-new keeps the run id, so it is followed. Holds
        no thread while it waits: a program awaiting many results at once (asyncio.gather)
        must not take every thread the worker in the same process needs."""
        run = await self.client.durable.wait_ended_async(self.id)
        if run.status is not ExecutionStatus.SUCCEEDED:
            cause = (cause_of(run.error) if run.error is not None
                     else ApplicationError(f"run ended {run.status}"))
            raise WorkflowFailureError(cause=cause, status=_status(run).name)
        wf = self._definition(run).durable
        if self._result_type is not None and run.result is not None:
            return wf.serializer.decode(run.result, self._result_type)  # type: ignore[no-any-return]
        return wf.decode_result(run.result)  # type: ignore[no-any-return]

    async def signal(self, signal: str | Callable[..., Any], arg: Any = _NOARG, *,
                     args: Sequence[Any] = ()) -> None:
        """Deliver a signal; it is applied, in order of arrival, by the running workflow."""
        run = self.client.durable.get(self.id)
        name = self._definition(run).signal_name(signal)
        self.client.durable.signal(self.id, CHANNEL, {"name": name, "args": _args(arg, args)})

    async def query(self, query: str | Callable[..., Any], arg: Any = _NOARG, *,
                    args: Sequence[Any] = (), reject_condition: Any = None) -> Any:
        """Answer from the run's state, as Temporal does with the worker's code: a `Worker`
        serving the workflow answers with its own class (see `_queries`); with none serving,
        this process's class replays the run's history read-only, plus the signals delivered
        but not yet taken."""
        run = self.client.durable.get(self.id)
        defn = self._definition(run)
        name = defn.query_name(query)
        return await ask(self.client.durable, defn, self.id, name, _args(arg, args))

    async def execute_update(self, update: str | Callable[..., Any], arg: Any = _NOARG, *,
                             args: Sequence[Any] = (), id: str | None = None,
                             result_type: Any = None, **options: Any) -> Any:
        """Send an update and wait for its result. WorkflowUpdateFailedError if its validator
        rejects it or its handler fails (`cause`: the handler's ApplicationError)."""
        handle = await self.start_update(update, arg, args=args, id=id,
                                         wait_for_stage=WorkflowUpdateStage.COMPLETED,
                                         result_type=result_type)
        return await handle.result()

    async def start_update(self, update: str | Callable[..., Any], arg: Any = _NOARG, *,
                           wait_for_stage: WorkflowUpdateStage, args: Sequence[Any] = (),
                           id: str | None = None, result_type: Any = None,
                           **options: Any) -> WorkflowUpdateHandle[Any]:
        """Send an update under `id` (default: a new UUID) and return its handle once it has
        reached `wait_for_stage`. An id already accepted is that update: nothing is sent
        again, and the handle gives its result."""
        if wait_for_stage is WorkflowUpdateStage.ADMITTED:
            raise ValueError("wait_for_stage=WorkflowUpdateStage.ADMITTED is not supported by "
                             "start_update; use WorkflowUpdateStage.ACCEPTED")
        run = await self._run_for_update()
        defn = self._definition(run)
        name = defn.update_name(update)
        if not run.status.live:
            raise RPCError("workflow execution already completed", RPCStatusCode.NOT_FOUND)
        if result_type is None:
            result_type = _return_type(defn.updates[name].fn)
        update_id = id or str(uuid.uuid4())
        seen = await self.client._update_stages(self.id, update_id)
        # A rejected update was never accepted: its id may be sent again, and its stages
        # from before are not this sending's.
        after = max((offset for offset, stage in seen if stage["stage"] == "rejected"),
                    default=0)
        if not any(offset > after for offset, _ in seen):
            self.client.durable.signal(self.id, CHANNEL, {"name": name,
                                                          "args": _args(arg, args),
                                                          "update_id": update_id})
        handle: WorkflowUpdateHandle[Any] = WorkflowUpdateHandle(
            self.client, update_id, self.id, name=name, result_type=result_type, after=after,
            serializer=defn.durable.serializer)
        await handle._wait(wait_for_stage)
        return handle

    def get_workflow_update_handle(self, id: str, *, workflow_run_id: str | None = None,
                                   result_type: Any = None) -> WorkflowUpdateHandle[Any]:
        """A handle on the update sent under `id`, to wait for its result."""
        return WorkflowUpdateHandle(self.client, id, self.id, result_type=result_type,
                                    serializer=self._serializer())

    def get_workflow_update_handle_for(self, update: str | Callable[..., Any], id: str, *,
                                       workflow_run_id: str | None = None
                                       ) -> WorkflowUpdateHandle[Any]:
        result_type = None if isinstance(update, str) else _return_type(update)
        return WorkflowUpdateHandle(self.client, id, self.id, result_type=result_type,
                                    serializer=self._serializer())

    def _serializer(self) -> Serializer:
        return DEFAULT_SERIALIZER if self._defn is None else self._defn.durable.serializer

    async def _run_for_update(self) -> RunInfo:
        """The run an update is for; Temporal's RPCError if there is none."""
        try:
            return await self.client.durable.get_async(self.id)
        except RunNotFound:
            raise RPCError(f"workflow not found for ID: {self.id}",
                           RPCStatusCode.NOT_FOUND) from None

    async def cancel(self) -> None:
        """Ask the run to stop: asyncio.CancelledError meets its code at the next durable
        await; if the code lets it escape, the run ends cancelled."""
        self.client.durable.cancel(self.id)

    async def terminate(self, *args: Any, reason: str | None = None) -> None:
        """End the run at once, none of its code running again (unlike `cancel`): what stops a
        cron workflow between firings. `args` (Temporal's details) are not kept."""
        await self.client.durable.terminate_async(self.id, reason or "Workflow terminated")

    async def describe(self) -> WorkflowExecutionDescription:
        run = self.client.durable.get(self.id)
        return WorkflowExecutionDescription(
            id=run.run_id, run_id=run.run_id, workflow_type=run.workflow,
            status=_status(run), start_time=_utc(run.created_at),
            close_time=None if run.ended_at is None else _utc(run.ended_at))


def _status(run: RunInfo) -> WorkflowExecutionStatus:
    """Temporal's status of the run: a stopped run was cancelled, or terminated."""
    if run.status is ExecutionStatus.STOPPED and run.error is not None and (
            run.error.type == TERMINATED):
        return WorkflowExecutionStatus.TERMINATED
    return _STATUS[run.status]


class WorkflowUpdateHandle(Generic[R]):
    """A handle on one update of one run: `result()` waits for its outcome."""

    def __init__(self, client: Client, id: str, workflow_id: str, *,
                 workflow_run_id: str | None = None, name: str | None = None,
                 result_type: Any = None, after: int = 0,
                 serializer: Serializer = DEFAULT_SERIALIZER) -> None:
        self._client = client
        self._serializer = serializer  # the workflow's: the handler's value is encoded with it
        self._id = id
        self._workflow_id = workflow_id
        self._name = name
        self._result_type = result_type
        self._after = after  # stages before this offset are of an earlier, rejected sending
        self._outcome: dict[str, Any] | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def workflow_id(self) -> str:
        return self._workflow_id

    @property
    def workflow_run_id(self) -> str:
        return self._workflow_id

    @property
    def name(self) -> str | None:
        return self._name

    async def result(self, *, rpc_metadata: Any = None, rpc_timeout: Any = None) -> R:
        """The handler's return value, once it has returned (waiting across crashes of the
        worker); WorkflowUpdateFailedError if it was rejected, failed, or never finished."""
        outcome = self._outcome or await self._wait(WorkflowUpdateStage.COMPLETED)
        value = outcome["value"]
        if self._result_type is not None:
            return self._serializer.decode(value, self._result_type)  # type: ignore[no-any-return]
        return self._serializer.decode(value)  # type: ignore[no-any-return]

    async def _wait(self, stage: WorkflowUpdateStage) -> dict[str, Any]:
        """Follow the run's `UPDATES` stream to this update's `stage`."""
        durable = self._client.durable
        async for entry in durable.stream_async(self._workflow_id, UPDATES, self._after):
            found = entry.data
            if not isinstance(found, dict) or found.get("id") != self._id:
                continue
            if "error" in found:
                raise WorkflowUpdateFailedError(cause_of(ErrorObject.from_dict(found["error"])))
            if found["stage"] == "result":
                self._outcome = found
                return found
            if stage is WorkflowUpdateStage.ACCEPTED:
                return found
        raise WorkflowUpdateFailedError(ApplicationError(
            f"workflow {self._workflow_id!r} ended before update {self._id!r} completed",
            type="AcceptedUpdateCompletedWorkflow"))


def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:  # unresolvable forward references: plain JSON
        return None


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)
