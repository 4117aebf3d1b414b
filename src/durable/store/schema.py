"""Versioned schema migrations, shared by both dialects.

`{serial}` stands for an auto-incrementing integer primary key, the one spelling the dialects
disagree on. Add a migration by appending to MIGRATIONS; never edit one that has shipped.
"""

from __future__ import annotations

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
    generation INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
CREATE INDEX runs_ready ON runs (ready_at) WHERE ready_at IS NOT NULL;
CREATE INDEX runs_lease ON runs (lease_expires) WHERE lease_expires IS NOT NULL;
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
"""),
]


def statements(sql: str, serial: str) -> list[str]:
    return [s.strip() for s in sql.replace("{serial}", serial).split(";") if s.strip()]
