"""A stand-in for a bank's client SDK: what examples/automation/transfer.py calls. Its books are a
real SQLite file (BANK_DB, default .durable/automation-bank.db) you can inspect.

It plays the part of code outside your project, an installed package or a remote API, which is
why transfer.py names it in `external=["bank_api"]`: a module installed in site-packages would be
outside the project without being named.

Like a real payments API it is idempotent by transaction id: a withdrawal or deposit sent twice
with the same id moves the money once. Every call is also logged (`calls`), so a test can tell a
call that was retried from an effect that happened twice.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path

OPENING_BALANCES = {"alice": 10_000, "bob": 5_000}


def _books() -> sqlite3.Connection:
    path = Path(os.environ.get("BANK_DB", ".durable/automation-bank.db"))
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.executescript("""
        CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, balance INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS movements (
            transaction_id TEXT NOT NULL, kind TEXT NOT NULL, account TEXT NOT NULL,
            amount INTEGER NOT NULL, PRIMARY KEY (transaction_id, kind));
        CREATE TABLE IF NOT EXISTS calls (call TEXT NOT NULL, pid INTEGER NOT NULL);
    """)
    conn.executemany("INSERT OR IGNORE INTO accounts VALUES (?, ?)", OPENING_BALANCES.items())
    return conn


def _log(conn: sqlite3.Connection, call: str) -> None:
    conn.execute("INSERT INTO calls VALUES (?, ?)", (call, os.getpid()))


def get_transaction_id() -> str:
    with _books() as conn:
        _log(conn, "get_transaction_id")
    return uuid.uuid4().hex


def _move(kind: str, transaction_id: str, account: str, amount: int) -> None:
    """Apply a movement once per (transaction, kind), in one transaction with the balance."""
    sign = -1 if kind == "withdraw" else 1
    conn = _books()
    try:
        conn.execute("BEGIN IMMEDIATE")
        _log(conn, kind)
        applied = conn.execute("INSERT OR IGNORE INTO movements VALUES (?, ?, ?, ?)",
                               (transaction_id, kind, account, amount)).rowcount
        if applied:
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?",
                         (sign * amount, account))
        conn.execute("COMMIT")
    finally:
        conn.close()


def withdraw_from_account_route(transaction_id: str, account: str, amount: int) -> None:
    _move("withdraw", transaction_id, account, amount)


def deposit_to_account_route(transaction_id: str, account: str, amount: int) -> None:
    _move("deposit", transaction_id, account, amount)


def balances() -> dict[str, int]:
    with _books() as conn:
        return dict(conn.execute("SELECT name, balance FROM accounts ORDER BY name"))
