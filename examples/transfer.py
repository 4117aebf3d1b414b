r"""Money transfer: a saga over a small bank whose books are a real SQLite file you can inspect.

The transfer is two steps, withdraw from the source then deposit to the target. If the deposit is
refused for good (the target account is frozen or does not exist), the money has already left the
source, so a compensating step refunds it: the saga pattern, written as a plain try/except around a
durable step.

Every bank call passes `ctx.idempotency_key` (run id + operation id, the same on every retry and
replay of that step), and the bank records the keys it has applied. So a step retried after its
effect landed, e.g. because the bank's reply was lost on the way back, applies once: the bank sees
the key again and answers with the original outcome instead of moving the money twice.

Only a refusal is compensated. A deposit that failed because the bank stayed unreachable through
every retry may or may not have been applied, and refunding it blindly could mint money; that run
fails with the error visible for someone to reconcile.

Run it (the bank is created with demo accounts on first use, at .durable/bank.db by default):

    python examples/transfer.py
    durable run examples/transfer.py:transfer \
        --input '{"source": "alice", "target": "bob", "amount": 2500}'
    durable run examples/transfer.py:transfer \
        --input '{"source": "bob", "target": "mallory", "amount": 100}'   # refused, refunded

Amounts are integer cents. Accounts: alice, bob and carol are open; mallory is frozen.
"""

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import durable
from durable import Context, RetryPolicy, StepFailed, step, workflow

DEFAULT_BANK = ".durable/bank.db"
OPENING_BALANCES = {"alice": 1_000_00, "bob": 500_00, "carol": 0, "mallory": 10_000_00}
FROZEN = frozenset({"mallory"})


class AccountUnavailable(Exception):
    """The account does not exist or is frozen: retrying will not help."""


class InsufficientFunds(Exception):
    """The source account cannot cover the withdrawal: retrying will not help."""


class BankUnreachable(ConnectionError):
    """The bank's reply never arrived; the posting may have landed. Retry with the same key."""


@dataclass(frozen=True)
class Posting:
    key: str
    account: str
    delta: int
    balance: int
    memo: str


class Bank:
    """A toy core-banking system in one SQLite file: balances and a ledger of applied postings.

    `post` is idempotent by key, the contract real payment APIs offer. `lose_replies(n)` is fault
    injection: the next n postings are applied and committed, then their reply is "lost", which is
    exactly the case idempotency keys exist for.
    """

    def __init__(self, path: str | Path = DEFAULT_BANK) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY,"
                       " balance INTEGER NOT NULL, frozen INTEGER NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY,"
                       " account TEXT NOT NULL, delta INTEGER NOT NULL,"
                       " balance INTEGER NOT NULL, memo TEXT NOT NULL, at REAL NOT NULL)")
            db.execute("CREATE TABLE IF NOT EXISTS faults (lost_replies INTEGER NOT NULL)")
            if db.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0:
                db.executemany("INSERT INTO accounts VALUES (?, ?, ?)",
                               [(a, b, a in FROZEN) for a, b in OPENING_BALANCES.items()])
                db.execute("INSERT INTO faults VALUES (0)")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One serialized read-modify-write: the balance check and the update cannot interleave."""
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    def post(self, key: str, account: str, delta: int, memo: str) -> int:
        """Apply `delta` cents to `account` once per `key`; return the balance after it."""
        with self._transaction() as db:
            applied = db.execute("SELECT balance FROM ledger WHERE key = ?", (key,)).fetchone()
            if applied is not None:
                balance = int(applied[0])
            else:
                balance = self._apply(db, key, account, delta, memo)
            lose_reply = db.execute("UPDATE faults SET lost_replies = lost_replies - 1"
                                    " WHERE lost_replies > 0").rowcount == 1
        if lose_reply:
            raise BankUnreachable(f"posting {key} was applied but its reply was lost")
        return balance

    @staticmethod
    def _apply(db: sqlite3.Connection, key: str, account: str, delta: int, memo: str) -> int:
        row = db.execute("SELECT balance, frozen FROM accounts WHERE id = ?",
                         (account,)).fetchone()
        if row is None or row[1]:
            raise AccountUnavailable(
                f"account {account!r} {'is frozen' if row else 'does not exist'}")
        balance = int(row[0]) + delta
        if balance < 0:
            raise InsufficientFunds(f"account {account!r} holds {money(row[0])}, "
                                    f"cannot withdraw {money(-delta)}")
        db.execute("UPDATE accounts SET balance = ? WHERE id = ?", (balance, account))
        db.execute("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?)",
                   (key, account, delta, balance, memo, time.time()))
        return balance

    def lose_replies(self, count: int) -> None:
        with self._transaction() as db:
            db.execute("UPDATE faults SET lost_replies = ?", (count,))

    def balance(self, account: str) -> int:
        with self._transaction() as db:
            row = db.execute("SELECT balance FROM accounts WHERE id = ?", (account,)).fetchone()
        if row is None:
            raise AccountUnavailable(f"account {account!r} does not exist")
        return int(row[0])

    def ledger(self) -> list[Posting]:
        with self._transaction() as db:
            rows = db.execute("SELECT key, account, delta, balance, memo FROM ledger"
                              " ORDER BY at, rowid").fetchall()
        return [Posting(*row) for row in rows]


def money(cents: int) -> str:
    return f"{cents / 100:,.2f}"


@dataclass(frozen=True)
class TransferRequest:
    source: str
    target: str
    amount: int  # cents
    bank: str = DEFAULT_BANK


@dataclass(frozen=True)
class TransferReceipt:
    status: str  # "completed", or "refunded" when the deposit was refused and compensated
    source_balance: int
    target_balance: int | None = None
    reason: str | None = None


BANK_RETRY = RetryPolicy(max_attempts=6, initial_interval=0.2, backoff=2.0, max_interval=10.0,
                         non_retryable=(AccountUnavailable, InsufficientFunds))
"""Network trouble is retried with backoff (durably: a crash mid-backoff still retries); a
refusal is final at once, so the saga can compensate without waiting out the retries."""


@step(retry=BANK_RETRY)
def withdraw(ctx: Context, request: TransferRequest) -> int:
    return Bank(request.bank).post(ctx.idempotency_key, request.source, -request.amount,
                                   f"transfer to {request.target}")


@step(retry=BANK_RETRY)
def deposit(ctx: Context, request: TransferRequest) -> int:
    return Bank(request.bank).post(ctx.idempotency_key, request.target, request.amount,
                                   f"transfer from {request.source}")


@step(retry=BANK_RETRY)
def refund(ctx: Context, request: TransferRequest) -> int:
    return Bank(request.bank).post(ctx.idempotency_key, request.source, request.amount,
                                   f"refund: transfer to {request.target} refused")


@workflow
async def transfer(ctx: Context, request: TransferRequest) -> TransferReceipt:
    """Move `amount` cents from source to target; refund the source if the target refuses it."""
    if request.amount <= 0 or request.source == request.target:
        raise ValueError("a transfer needs a positive amount between two different accounts")
    source_balance = await withdraw(ctx, request)
    try:
        target_balance = await deposit(ctx, request)
    except StepFailed as e:
        if e.error_type != AccountUnavailable.__name__:
            raise  # the deposit may have landed: reconcile by hand, never refund blindly
        ctx.logger.warning("deposit refused (%s); refunding %s", e.error_message,
                           money(request.amount))
        source_balance = await refund(ctx, request)
        return TransferReceipt("refunded", source_balance, reason=e.error_message)
    return TransferReceipt("completed", source_balance, target_balance)


if __name__ == "__main__":
    for target in ("bob", "mallory"):
        receipt = durable.run(transfer, TransferRequest("alice", target, 25_00))
        print(f"alice -> {target} {money(25_00)}: {receipt}")
    bank = Bank()
    print("balances:", {name: money(bank.balance(name)) for name in OPENING_BALANCES})
    print("last postings:")
    for posting in bank.ledger()[-4:]:
        print(f"  {posting.account:8} {money(posting.delta):>10}  {posting.memo}  [{posting.key}]")
