"""The control API's request and response bodies: what /openapi.json documents.

Response shapes are those of `durable show --json` and `durable ls --json` (built by the same
functions in views/jsonio.py), so a script can move between the CLI and the API without
reshaping data, except that the API's listing gives previews of input and result, not values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, StrictFloat, StrictInt, StrictStr

from durable.model import LOG_LINE_CHARS, LOG_LINES_KEPT, ChildPolicy, ExecutionStatus
from durable.model.ids import RUN_ID_MAX, RUN_ID_PATTERN, RUN_ID_RULE
from durable.model.queues import PRIORITY_MAX
from durable.views.jsonio import PREVIEW

RUN_ID_DOC = (f"A run id of your choosing: {RUN_ID_RULE}. Starting an id that exists returns "
              "that run (start is idempotent by id). An id outside the rule is refused with a "
              "400 that says why.")
RUN_ID_SCHEMA: dict[str, Any] = {"pattern": RUN_ID_PATTERN, "maxLength": RUN_ID_MAX}
"""The id rule, documented but not enforced by the schema: the one check is `check_run_id`
(through `Client`), so a bad id gets the same 400 and message whichever way it arrives."""
RunId = Field(None, description=RUN_ID_DOC, json_schema_extra=RUN_ID_SCHEMA)


class ErrorInfo(BaseModel):
    type: str
    message: str
    traceback: str | None = None
    data: str | None = None


class InvocationFailure(BaseModel):
    error: ErrorInfo = Field(description="The last attempt's error")
    since: str | None = Field(description="When the failures in a row began")
    attempts: int = Field(description="Invocations in a row that failed to run")


class RunFields(BaseModel):
    run_id: str
    workflow: str
    status: ExecutionStatus
    parent_run_id: str | None
    parked: ErrorInfo | None = Field(description="Set while a NonDeterminismError, or a "
                                     "function's retry deadline, holds the run")
    invocation_failure: InvocationFailure | None = Field(
        None, description="Set while the run's function cannot be invoked (unreachable, timed "
        "out, throttled, crashed without answering); retried, never failing the run")
    cancel_requested: bool
    queue: str | None = Field(None, description="The run's queue: the one it waits for while "
                              "ENQUEUED, then the one that admitted it")
    position: int | None = Field(None, description="While ENQUEUED: its place in its queue, 1 "
                                 "being admitted next (by priority, then start order)")
    priority: int = Field(0, description="Higher is admitted first by its queue")
    dedup_id: str | None = Field(None, description="Unique among its queue's live runs")
    error: ErrorInfo | None
    created_at: str | None
    updated_at: str | None
    ended_at: str | None
    elapsed_seconds: float
    compute_seconds: float = Field(description="Sum of invocation durations: the compute used")


class Run(RunFields):
    input: Any
    result: Any


class RunSummary(RunFields):
    """A run in a listing: its input and result only as a preview, so one large payload does
    not weigh on every page."""

    input_preview: str | None = Field(description=f"The input's JSON text, cut to {PREVIEW} "
                                      "characters and ending in … when cut; "
                                      "GET /api/runs/{run_id} has all of it")
    result_preview: str | None = Field(description="The result's, likewise")
    attributes: dict[str, Any] = Field(description="Its searchable attributes: text, numbers, "
                                       "times (ISO 8601)")
    children: int = Field(description="How many runs it started")


class StartedRun(Run):
    created: bool = Field(description="False when a run with this id existed already")


class RunPage(BaseModel):
    runs: list[RunSummary]
    next_offset: int | None = Field(description="Pass as `offset` for the next page; null: last")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: last")


class ValueInfo(BaseModel):
    chars: int = Field(description="Length of the stored value, in characters")
    truncated: bool = Field(description="Only its start is shown: fetch the whole from `url`")
    is_json: bool | None = Field(description="Whether it is JSON (false: a custom serializer's "
                              "text, e.g. encrypted); null: too long to check here")
    url: str = Field(description="Where the API answers the whole value")


class OperationOut(BaseModel):
    id: str
    type: str
    sub_type: str | None
    name: str | None
    status: str
    attempt: int
    parent_id: str | None
    input: Any = Field(description="What the step body or child run received, if recorded")
    input_info: ValueInfo | None
    result: Any
    result_info: ValueInfo | None
    error: ErrorInfo | None
    due_at: str | None
    callback_id: str | None
    child_run_id: str | None
    started_at: str | None
    ended_at: str | None


class Event(BaseModel):
    id: int
    type: str
    timestamp: str | None
    offset_seconds: float
    operation_id: str | None
    name: str | None
    details: dict[str, Any]


class PendingOut(BaseModel):
    kind: str = Field(description="sleep, retry, step, callback, signal or child")
    operation: str
    due_at: str | None
    detail: str
    callback_id: str | None
    signal: str | None
    child_run_id: str | None


class RunDetail(BaseModel):
    run: Run
    pending: list[PendingOut]
    events: dict[str, Any] = Field(description="Published with ctx.set_event, latest per key")
    attributes: dict[str, Any] = Field(description="Its searchable attributes")
    operations: list[OperationOut]
    history: list[Event]


class HistoryPage(BaseModel):
    events: list[Event]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: last")


class LogEntry(BaseModel):
    id: int = Field(description="Grows with every line kept: pass the last as `after`")
    timestamp: str
    offset_seconds: float = Field(description="Seconds since the run was created")
    level: str
    message: str
    operation_id: str | None = Field(description="The step (or branch) it was logged in")
    attempt: int | None = Field(description="The step attempt whose body logged it")


class LogPage(BaseModel):
    lines: list[LogEntry] = Field(description=f"Oldest first; a run keeps its newest "
                                  f"{LOG_LINES_KEPT:,} lines, each cut to {LOG_LINE_CHARS:,} "
                                  "characters")
    next_after: int | None = Field(description="Pass as `after` for lines logged since; "
                                   "null: no lines yet")


class StreamOut(BaseModel):
    name: str
    last_offset: int = Field(description="The offset of its newest entry")
    closed: bool = Field(description="Closed by the workflow: nothing more will come")


class StreamList(BaseModel):
    streams: list[StreamOut]


class Outcome(BaseModel):
    run_id: str
    status: ExecutionStatus
    result: Any
    error: ErrorInfo | None


class StartRequest(BaseModel):
    workflow: str = Field(min_length=1, max_length=500)
    input: Any = Field(None, description="The workflow's input: its one argument's value, or "
                       "for several an array or an object keyed by parameter name. Omit for "
                       "none.")
    id: str | None = RunId
    attributes: dict[str, StrictStr | StrictInt | StrictFloat] | None = Field(
        None, description="Searchable attributes of a new run: text, numbers, or times as "
        "ISO 8601 text with a zone (2026-12-01T09:00:00Z)")
    existing: bool = Field(False, description="With `id`: answer with the run that has it "
                           "even if it was started with another input (otherwise a 409)")
    priority: int | None = Field(None, ge=-PRIORITY_MAX - 1, le=PRIORITY_MAX, description=(
        "For a workflow on a queue: higher is admitted first (default 0); equal ones in start "
        "order"))
    dedup_id: str | None = Field(None, min_length=1, max_length=500, description=(
        "For a workflow on a queue: while a run of the queue with this dedup id is live, "
        "starting another returns that run (200, created false)"))


class SignalRequest(BaseModel):
    name: str = Field(min_length=1, max_length=500)
    payload: Any = None


class CallbackSuccess(BaseModel):
    payload: Any = None


class CallbackFailure(BaseModel):
    message: str = Field("failed through the API", max_length=10_000)
    type: str = Field("CallbackError", min_length=1, max_length=200)


class Operated(BaseModel):
    run_id: str
    status: ExecutionStatus
    message: str


class StepSuccess(BaseModel):
    result: Any = Field(None, description="The step's new result (JSON)")


class StepFailure(BaseModel):
    message: str = Field("failed through the API", max_length=10_000)
    type: str = Field("Edited", min_length=1, max_length=200)


class EditedStep(BaseModel):
    operation: dict[str, Any] = Field(description="The step as it now stands")
    message: str


class RerunRequest(BaseModel):
    from_step: str = Field(min_length=1, max_length=500,
                           description="Name or operation id of the first step to run again")
    input: Any = Field(None, description="The whole new input; omit to reuse the source "
                       "run's (or to patch it)")
    patch: dict[str, Any] | None = Field(None, description=(
        "A JSON merge patch (RFC 7386) of the source run's input: the members given replace "
        "those recorded, a null removes one, the others are kept. Not with `input`"))
    id: str | None = RunId


class PublishedEvents(BaseModel):
    events: dict[str, Any] = Field(description="Published with ctx.set_event, latest per key")


class PendingCallbacks(BaseModel):
    callback_ids: list[str] = Field(description="Callbacks waiting to be resolved, oldest "
                                    "first: POST /api/callbacks/{id}/succeed or /fail")


class Accepted(BaseModel):
    ok: bool = True
    message: str


class TerminateRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=10_000,
                               description="Why: the error message the run ends with")
    children: ChildPolicy = Field(default=ChildPolicy.TERMINATE, description=(
        "Its running child runs: terminated too, cancelled (their handlers run), or abandoned "
        "(they run on by themselves)"))


class PurgeRequest(BaseModel):
    ended_before: float = Field(description="Delete runs that ended before this time "
                                            "(seconds since the epoch)")
    workflow: str | None = Field(default=None, max_length=500,
                                 description="Only runs of this workflow")
    limit: int = Field(default=10_000, ge=1, le=100_000, description=(
        "At most this many runs per request, deleted in batches of 500: call again while "
        "`more` is true"))


class Purged(BaseModel):
    deleted: int
    more: bool = Field(description="Whether more runs may match: call again")


class WorkflowInfo(BaseModel):
    name: str
    params: list[str]
    webhook: bool
    schedule: str | None


class ScheduleOut(BaseModel):
    workflow: str
    cron: str
    timezone: str
    missed: str
    next_fire: str = Field(description="The tick fired next; in the past when one is due now")
    last_tick: str | None
    last_run_id: str | None
    registered: bool = Field(description="False for one declared in code until a worker "
                             "serving it has started")
    paused: bool
    source: str = Field(description="code (@workflow(schedule=...)) or api (created here)")
    last_run_status: ExecutionStatus | None = Field(
        None, description="The last tick's run's status (None: never fired, or the run was "
        "deleted)")


class ScheduleCreate(BaseModel):
    workflow: str = Field(min_length=1, max_length=500, description=(
        "The workflow to schedule, by name: a worker serving it (with its code) fires it"))
    cron: str = Field(min_length=1, max_length=200, examples=["0 2 * * *"])
    timezone: str = Field("UTC", min_length=1, max_length=100)
    missed: Literal["skip", "run_once"] = "skip"


class BackfillRequest(BaseModel):
    from_: AwareDatetime = Field(alias="from", description="First tick time to fill")
    to: AwareDatetime = Field(description="Last tick time to fill, in the past")


class BackfilledRun(BaseModel):
    run_id: str
    created: bool = Field(description="False: the tick had its run already")


class HookAccepted(BaseModel):
    run_id: str
    status: ExecutionStatus
    created: bool


class FunctionRegistration(BaseModel):
    """A function for the server to invoke when its runs have work: exactly one of `url` and
    `lambda_function` (an in-process `--handler` and a `--node` handler are for the CLI only:
    the API loads no code).
    """

    model_config = {"extra": "forbid"}

    url: str | None = Field(None, max_length=2000, description="An HTTP endpoint taking the "
                            "invocation envelope (a durable.serve app, or a Lambda "
                            "Invoke-shaped URL .../2015-03-31/functions/NAME/invocations)")
    lambda_function: str | None = Field(
        None, max_length=200, description="An AWS Lambda function name or ARN, invoked "
        "through Lambda's Invoke API with the server's AWS credentials (needs boto3: "
        "durable-serverless[aws])")
    lambda_qualifier: str | None = Field(None, max_length=128,
                                         description="The version or alias to invoke")
    lambda_region: str | None = Field(None, max_length=50, description="The function's AWS "
                                      "region [default: the ARN's, else the server's]")
    execution_timeout: float | None = Field(None, gt=0, description="End runs TIMED_OUT "
                                            "after this many seconds")
    retry_deadline: float | None = Field(None, gt=0, description="Park a run once invoking "
                                         "the function has failed for this many seconds")
    concurrency: int | None = Field(None, ge=1, le=1_000_000, description="Invocations in "
                                    "flight at once per server")


class Function(FunctionRegistration):
    """A registered function, as `durable functions ls --json` lists it."""

    name: str
    handler: str | None = Field(None, description="In-process `module:fn` (CLI-registered)")
    node: str | None = Field(None, description="A JavaScript handler `/abs/file.js:export` the "
                             "server hosts with node (CLI-registered)")


class QueueOut(BaseModel):
    """A queue of the server's loaded workflows, as it stands."""

    name: str
    limit: int | None = Field(description="Runs started and not ended at once (None: no limit)")
    rate: str | None = Field(description="Runs admitted per period, e.g. `100/minute`")
    workflows: list[str] = Field(description="The loaded workflows on the queue")
    waiting: int = Field(description="Runs waiting for the queue to admit them")
    running: int = Field(description="Runs holding a slot")
    admitted: int = Field(description="Runs admitted within the last `window_seconds`")
    window_seconds: float
    admitted_per_minute: float
    oldest_waiting_since: str | None = Field(description="When the run waiting longest became "
                                             "ready to start (None: none waits)")
    oldest_waiting_seconds: float | None


class FunctionHealthOut(BaseModel):
    """How invoking the function went lately, from its runs' history (every server's)."""

    window_seconds: float
    invocations: int = Field(description="Invocations that ended within the window")
    failures: int = Field(description="Of those, the ones that failed to run (unreachable, "
                          "timed out, throttled, crashed without answering); each is retried")
    last_invoked_at: str | None
    last_ok: bool | None = Field(description="Whether the latest invocation ran (None: none "
                                 "within the window)")
    last_run_id: str | None
    last_error: ErrorInfo | None = Field(description="The latest failure's error")
    last_error_at: str | None
    last_error_run_id: str | None


class FunctionStatus(Function):
    """A registered function with how invoking it went lately."""

    health: FunctionHealthOut


class BulkRequest(BaseModel):
    """A bulk action and the runs it is for: the filters of GET /api/runs."""

    action: str = Field(max_length=40, description="cancel, terminate, pause, resume or rerun")
    status: str | None = Field(None, max_length=40, description="A status, or PARKED")
    workflow: str | None = Field(None, max_length=500)
    q: str | None = Field(None, max_length=200, description="Part of a run id or workflow")
    where: str | None = Field(None, max_length=2000, description="Attribute filter")
    since: str | None = Field(None, max_length=60, description="Created at or after")
    until: str | None = Field(None, max_length=60, description="Created before")
    parent: str | None = Field(None, max_length=500)
    roots: bool = False
    from_step: str | None = Field(None, max_length=500, description="For rerun: the step")
    reason: str | None = Field(None, max_length=10_000, description="For terminate: why")
    dry_run: bool = Field(False, description="Count what it would do; change nothing")


class BulkJobOut(BaseModel):
    job_id: str | None = Field(description="None for a dry run, which is not stored")
    action: str
    filter: dict[str, Any]
    from_step: str | None
    reason: str | None
    status: Literal["RUNNING", "DONE", "DRY_RUN"] = Field(description=(
        "RUNNING also for a job interrupted (a server restart): POST .../continue"))
    started_at: float
    updated_at: float
    matched: int = Field(description="Runs reached so far (all of them, for a dry run)")
    acted: int = Field(description="Runs the action was (would be) applied to")
    skipped: int = Field(description="Runs it no longer applied to: ended, already paused...")


class BulkJobList(BaseModel):
    jobs: list[BulkJobOut]


class KvEntryOut(BaseModel):
    key: str
    value: Any = Field(description="The value, as JSON")
    version: int = Field(description="How many times the key was written")
    updated_at: float = Field(description="When it was last written (epoch seconds)")


class KvPage(BaseModel):
    entries: list[KvEntryOut]
    next_after: str | None = Field(
        None, description="Pass as `after` for the next page; null: this is the last one")


class KvSet(BaseModel):
    value: Any = Field(description="The new value: any JSON")
