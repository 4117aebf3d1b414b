"""Versioned schema migrations, shared by both dialects.

`{serial}` stands for an auto-incrementing integer primary key, the one spelling the dialects
disagree on. Add a migration by appending to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

from durable.errors import StoreUnusable
from durable.store.base import Finding

MIGRATIONS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    result TEXT,
    error TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    ready_at DOUBLE PRECISION,
    lease_owner TEXT,
    lease_expires DOUBLE PRECISION,
    token INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    parked TEXT,
    compute_seconds DOUBLE PRECISION NOT NULL DEFAULT 0,
    parent_run_id TEXT,
    parent_op_id TEXT,
    generation INTEGER NOT NULL DEFAULT 0,
    queue_name TEXT,
    admitted_at DOUBLE PRECISION,
    timeout_at DOUBLE PRECISION,
    invocation_failures INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_waiting ON runs (workflow, created_at)
    WHERE status = 'RUNNING' AND queue_name IS NULL;
CREATE INDEX runs_queue_held ON runs (queue_name) WHERE status = 'RUNNING';
CREATE INDEX runs_queue_admitted ON runs (queue_name, admitted_at) WHERE queue_name IS NOT NULL;
CREATE INDEX runs_ready ON runs (ready_at)
    WHERE status = 'RUNNING' AND lease_owner IS NULL AND ready_at IS NOT NULL;
CREATE INDEX runs_lease ON runs (lease_expires)
    WHERE status = 'RUNNING' AND lease_expires IS NOT NULL;
CREATE INDEX runs_created ON runs (created_at);
CREATE TABLE operations (
    seq {serial},
    run_id TEXT NOT NULL,
    op_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    name TEXT,
    parent_id TEXT,
    sub_type TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    due_at DOUBLE PRECISION,
    callback_id TEXT,
    child_run_id TEXT,
    started_at DOUBLE PRECISION,
    ended_at DOUBLE PRECISION,
    UNIQUE (run_id, op_id)
);
CREATE UNIQUE INDEX operations_callback ON operations (callback_id)
    WHERE callback_id IS NOT NULL;
CREATE TABLE history (
    id {serial},
    run_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    op_id TEXT,
    name TEXT,
    details TEXT
);
CREATE INDEX history_run ON history (run_id, id);
CREATE TABLE signals (
    id {serial},
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    payload TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX signals_run ON signals (run_id, name, id);
CREATE TABLE published (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE TABLE schedules (
    workflow TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    since DOUBLE PRECISION NOT NULL,
    last_tick DOUBLE PRECISION,
    last_run_id TEXT,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE functions (
    name TEXT PRIMARY KEY,
    url TEXT,
    handler TEXT,
    execution_timeout DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE executions (
    run_id TEXT PRIMARY KEY,
    function_name TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (function_name, name)
);
CREATE TABLE checkpoint_tokens (
    run_id TEXT PRIMARY KEY,
    fence INTEGER NOT NULL,
    nonce TEXT NOT NULL,
    watermark INTEGER NOT NULL,
    client_token TEXT,
    prior_nonce TEXT,
    response TEXT
);
CREATE TABLE callback_heartbeats (
    callback_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    every_seconds DOUBLE PRECISION NOT NULL,
    deadline DOUBLE PRECISION
);
"""),
    # Invocations that fail to run are retried without limit: the run shows the last error and
    # since when; a function may set a deadline (then the run is parked) and a concurrency limit.
    (2, """
ALTER TABLE runs ADD COLUMN invocation_error TEXT;
ALTER TABLE runs ADD COLUMN invocation_failing_since DOUBLE PRECISION;
ALTER TABLE functions ADD COLUMN retry_deadline DOUBLE PRECISION;
ALTER TABLE functions ADD COLUMN concurrency INTEGER
"""),
    # A function may be an AWS Lambda function, invoked through Lambda's Invoke API.
    (3, """
ALTER TABLE functions ADD COLUMN lambda_function TEXT;
ALTER TABLE functions ADD COLUMN lambda_qualifier TEXT;
ALTER TABLE functions ADD COLUMN lambda_region TEXT
"""),
    # Every checkpoint looks for the run's waiting operations (a wait that fell due): without
    # this it read all of the run's operations, so each step cost more than the one before.
    (4, """
CREATE INDEX operations_waiting ON operations (run_id, seq)
    WHERE status IN ('STARTED', 'PENDING')
"""),
    # What workflows log through ctx.logger, kept with the run (store/logs.py).
    (5, """
CREATE TABLE run_logs (
    id {serial},
    run_id TEXT NOT NULL,
    line_key TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    op_id TEXT,
    attempt INTEGER,
    UNIQUE (run_id, line_key)
);
CREATE INDEX run_logs_run ON run_logs (run_id, id)
"""),
    # Deleting runs (store/retention.py): purges walk ended runs oldest first, and a deleted
    # run's heartbeats are found by run id like its rows in every other table it owns.
    (6, """
CREATE INDEX runs_ended ON runs (ended_at);
CREATE INDEX callback_heartbeats_run ON callback_heartbeats (run_id)
"""),
    # The inputs of steps and child runs, recorded for people to see (Operation.input).
    (7, """
ALTER TABLE operations ADD COLUMN input TEXT
"""),
    # Searchable attributes (model/attributes.py): one typed value per key, each type in its own
    # column so that `key = ? AND value op ?` walks one index; `durable ls --where` filters by
    # them. Listing by created_at alone, roots only, or under a parent, each walks an index.
    (8, """
CREATE TABLE run_attributes (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    text_value TEXT,
    number_value DOUBLE PRECISION,
    time_value DOUBLE PRECISION,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX run_attributes_text ON run_attributes (key, text_value, run_id);
CREATE INDEX run_attributes_number ON run_attributes (key, number_value, run_id);
CREATE INDEX run_attributes_time ON run_attributes (key, time_value, run_id);
CREATE INDEX runs_roots ON runs (created_at) WHERE parent_run_id IS NULL
"""),
    # The functions page counts a function's recent invocations (store/observe.py): without
    # this it read every event ever recorded to find the last day's.
    (9, """
CREATE INDEX history_invocations ON history (ts) WHERE type = 'InvocationCompleted'
"""),
    # Queues at run time: a run started on a queue shows ENQUEUED (with its position) until
    # admitted, in priority order; a dedup id is unique among a queue's live runs, which the
    # unique index makes race-safe across starters. Schedules may be paused, and created
    # through the API (`source` 'api', firing with `missed`) rather than declared in code.
    (10, """
ALTER TABLE runs ADD COLUMN enqueued_on TEXT;
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN dedup_id TEXT;
CREATE UNIQUE INDEX runs_dedup ON runs (enqueued_on, dedup_id)
    WHERE dedup_id IS NOT NULL AND ended_at IS NULL;
CREATE INDEX runs_enqueued ON runs (enqueued_on, priority, created_at)
    WHERE status = 'RUNNING' AND queue_name IS NULL AND enqueued_on IS NOT NULL;
ALTER TABLE schedules ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN tick_input INTEGER NOT NULL DEFAULT 0;
ALTER TABLE schedules ADD COLUMN source TEXT NOT NULL DEFAULT 'code';
ALTER TABLE schedules ADD COLUMN missed TEXT NOT NULL DEFAULT 'skip'
"""),
    # Bulk actions (model/bulk.py): each job's filter and how far it got, so that one interrupted
    # is resumed from its cursor rather than started over.
    (11, """
CREATE TABLE bulk_jobs (
    job_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    filter TEXT NOT NULL,
    from_step TEXT,
    reason TEXT,
    status TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    acted INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    cursor_created DOUBLE PRECISION,
    cursor_run TEXT
)
"""),
    # What workers know of each workflow's code, for processes that do not load it: its queue,
    # so that a run started anywhere (a child, a tick, the CLI) shows ENQUEUED until admitted,
    # and its own retention, which overrides the global one wherever retention sweeps. A paused
    # run keeps its slot while its invocation in flight lasts (runs_queue_paused counts it), and
    # a workflow's ended runs are purged by its own age through runs_workflow_ended.
    (12, """
CREATE TABLE workflow_settings (
    workflow TEXT PRIMARY KEY,
    queue TEXT,
    retention DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX runs_queue_paused ON runs (queue_name) WHERE status = 'PAUSED';
CREATE INDEX runs_workflow_ended ON runs (workflow, ended_at) WHERE ended_at IS NOT NULL
"""),
    # Workers' presence (PostgreSQL): each worker holds a session-level advisory lock on
    # (PRESENCE_LOCKS, lock_key) while its dedicated session lives; a row whose lock nobody
    # holds names a worker whose session is gone, whose runs are taken over at once rather
    # than when their leases run out. SQLite workers write no rows (one host: pids tell).
    (13, """
CREATE TABLE workers (
    owner TEXT PRIMARY KEY,
    lock_key INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL
)
"""),
    # Durable streams (model/streams.py): `streams` holds each stream's last offset, the row
    # whose update serializes concurrent writers of one stream so that offsets follow commit
    # order; `stream_attempts` each step attempt that wrote to a stream and whether it is known
    # dead, read at claim time through the partial index (the live ones of the runs claimed).
    (14, """
CREATE TABLE streams (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    closed_at DOUBLE PRECISION,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE stream_entries (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    value TEXT,
    op_id TEXT,
    attempt INTEGER,
    token INTEGER,
    at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (run_id, name, seq)
);
CREATE TABLE stream_attempts (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    op_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    token INTEGER NOT NULL,
    abandoned INTEGER NOT NULL DEFAULT 0,
    live INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (run_id, name, op_id, attempt, token)
);
CREATE INDEX stream_attempts_live ON stream_attempts (run_id) WHERE live = 1
"""),
    # The key-value store shared by all runs (model/kv.py). A deleted key keeps its row, value
    # NULL, so its version never counts from 0 again: a `mutate` that read version n before a
    # delete and a new set can never mistake the new value for the one it read.
    (15, """
CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT,
    version INTEGER NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
)
"""),
    # Events (model/events.py): one row per (topic, id), so a publisher retrying makes no
    # second event; what each trigger made of each dispatch of it (`generation` counts
    # redispatches), inserted in the transaction that starts the run, so a dispatch is done
    # once however many workers try; the subscriptions of running workflows, each with the
    # events that matched it since it was recorded and that no next_event has taken yet.
    (16, """
CREATE TABLE events (
    seq {serial},
    topic TEXT NOT NULL,
    event_id TEXT NOT NULL,
    data TEXT NOT NULL,
    published_at DOUBLE PRECISION NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    UNIQUE (topic, event_id)
);
CREATE INDEX events_published ON events (published_at);
CREATE INDEX events_topic ON events (topic, seq);
CREATE TABLE event_triggers (
    workflow TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    filter TEXT,
    since DOUBLE PRECISION NOT NULL
);
CREATE TABLE event_deliveries (
    seq BIGINT NOT NULL,
    workflow TEXT NOT NULL,
    generation INTEGER NOT NULL,
    run_id TEXT,
    delivered_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (seq, workflow, generation)
);
CREATE TABLE subscriptions (
    run_id TEXT NOT NULL,
    sub_key TEXT NOT NULL,
    topic TEXT NOT NULL,
    filter TEXT,
    created_at DOUBLE PRECISION NOT NULL,
    waiter TEXT,
    PRIMARY KEY (run_id, sub_key)
);
CREATE INDEX subscriptions_topic ON subscriptions (topic);
CREATE TABLE subscription_inbox (
    run_id TEXT NOT NULL,
    sub_key TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (run_id, sub_key, seq)
)
"""),
    # Webhook answers (model/events.py): the request a webhook posted an event with (method,
    # path, query, headers; the body is the data), and how long such a request waits for the
    # answer of the trigger declaring `respond` (null: the trigger answers none).
    (18, """
ALTER TABLE events ADD COLUMN request TEXT;
ALTER TABLE event_triggers ADD COLUMN respond DOUBLE PRECISION
"""),
]


LATEST = MIGRATIONS[-1][0]
"""The newest schema version this code knows."""


def statements(sql: str, serial: str) -> list[str]:
    return [s.strip() for s in sql.replace("{serial}", serial).split(";") if s.strip()]


def applied(execute: Callable[[str, Sequence[Any]], Any], exists_query: str) -> set[int]:
    """The versions durable_migrations lists (none before the first migration), read without
    writing: opening a database that is up to date takes no write lock, so it cannot queue
    behind a writer that holds one. `exists_query` returns a row if that table exists."""
    if execute(exists_query, ()).fetchone() is None:
        return set()
    return _versions(execute)


def _versions(execute: Callable[[str, Sequence[Any]], Any]) -> set[int]:
    return {r[0] for r in execute("SELECT version FROM durable_migrations", ()).fetchall()}


def pending(done: Collection[int], where: str) -> list[tuple[int, str]]:
    """The migrations a database with versions `done` still lacks.

    A database at a version this code does not know was migrated by a newer Durable: older code
    would misread what it does not know of, and its writes could break the database for the
    newer code, so it is refused."""
    newest = max(done, default=0)
    if newest > LATEST:
        raise StoreUnusable(f"the database {where} is at schema version {newest}, newer than "
                            f"version {LATEST}, the newest this Durable knows: a newer Durable "
                            "has migrated it; upgrade Durable to use it")
    return [(version, sql) for version, sql in MIGRATIONS if version not in done]


def version_finding(done: Collection[int]) -> Finding:
    """What `durable doctor` says of a database's schema version."""
    newest = max(done, default=0)
    if not done:
        return Finding("schema", "no Durable tables yet: the first process to open it makes them")
    if newest > LATEST:
        return Finding("schema", f"version {newest}, newer than version {LATEST}, the newest "
                       "this Durable knows: upgrade Durable to use it", ok=False)
    if newest < LATEST:
        return Finding("schema", f"version {newest}; this Durable migrates it to {LATEST} when "
                       "it opens it (or now: `durable migrate`)")
    return Finding("schema", f"version {newest}, the newest this Durable knows")


def apply_migrations(execute: Callable[[str, Sequence[Any]], Any], serial: str, now: float,
                     where: str) -> list[int]:
    """Apply the migrations durable_migrations does not list yet; returns their versions.

    Runs inside the caller's transaction, which must already keep other migrators out (SQLite:
    BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so processes starting at once are safe.
    `execute` takes `?` placeholders.
    """
    execute("CREATE TABLE IF NOT EXISTS durable_migrations "
            "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)", ())
    versions = []
    for version, sql in pending(_versions(execute), where):
        for stmt in statements(sql, serial):
            execute(stmt, ())
        execute("INSERT INTO durable_migrations VALUES (?, ?)", (version, now))
        versions.append(version)
    return versions
