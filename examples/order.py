"""Order lifecycle: reserve, charge, wait for a human to pack, ship, follow up days later.

A shop keeps its stock and the record of everything done to each order in a real SQLite file
(.durable/shop.db by default). The workflow:

1. reserves the stock and charges the customer (steps, idempotent by `ctx.idempotency_key`);
2. waits for the warehouse's "packed" signal, for up to `packing_timeout` seconds (two days by
   default). Meanwhile the run holds no process at all, and a signal sent early is buffered;
3. ships, then sleeps durably until the delivery follow-up (three days by default) and sends it.

It publishes its stage with `ctx.set_event("stage", ...)` so a shop front-end can show it
(`Client.get_event(run_id, "stage")`).

If packing times out, or the run is cancelled before the parcel ships, the work done so far is
undone in reverse order (refund the charge, release the stock): each completed step pushes its
compensation, and `except Cancelled` runs them as durable steps before re-raising, so the run ends
STOPPED with the money back. A cancel after shipping only skips the follow-up: the goods are gone,
and getting them back is a returns process, not a refund.

Run it:

    python examples/order.py          # short timings; a helper thread plays the packer
    durable run examples/order.py:order --id order-17 --input '{"order_id": "A-17"}' &
    durable signal order-17 packed --payload '{"packer": "sam"}'    # or: durable cancel order-17
"""

import hashlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import durable
from durable import Cancelled, Context, RetryPolicy, WaitTimeout, step, workflow

DEFAULT_SHOP = ".durable/shop.db"
OPENING_STOCK = {"mug": 25, "teapot": 5, "kettle": 0}
DAY = 24 * 3600.0


class OutOfStock(Exception):
    """Not enough stock to reserve: the order cannot go ahead, and retrying will not change that."""


class Shop:
    """Stock levels plus a log of every effect on an order, one row per idempotency key.

    `record` applies an effect at most once per key, atomically with its stock change, so a step
    retried after a crash or a lost reply finds its effect already there and does nothing more.
    """

    def __init__(self, path: str = DEFAULT_SHOP) -> None:
        self.path = path
        with self._connect() as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY,"
                       " available INTEGER NOT NULL CHECK (available >= 0))")
            db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY,"
                       " order_id TEXT NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL)")
            db.executemany("INSERT OR IGNORE INTO stock VALUES (?, ?)", OPENING_STOCK.items())

    def _connect(self) -> closing[sqlite3.Connection]:
        """A connection closed on exit; add `with db:` around writes to commit them."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        return closing(sqlite3.connect(self.path, timeout=30))

    def record(self, key: str, order_id: str, kind: str, detail: str, *, sku: str = "",
               stock_change: int = 0) -> str:
        """Apply one effect once per key; return its detail as first recorded."""
        with self._connect() as db, db:  # the inner `with db` is one transaction
            done = db.execute("SELECT detail FROM effects WHERE key = ?", (key,)).fetchone()
            if done is not None:
                return str(done[0])
            if stock_change:
                try:
                    changed = db.execute("UPDATE stock SET available = available + ?"
                                         " WHERE sku = ?", (stock_change, sku)).rowcount
                except sqlite3.IntegrityError:
                    changed = 0
                if not changed:
                    raise OutOfStock(f"cannot reserve {-stock_change} x {sku!r} for {order_id}")
            db.execute("INSERT INTO effects VALUES (?, ?, ?, ?)", (key, order_id, kind, detail))
        return detail

    def available(self, sku: str) -> int:
        with self._connect() as db:
            return int(db.execute("SELECT available FROM stock WHERE sku = ?", (sku,))
                       .fetchone()[0])

    def effects(self, order_id: str) -> list[tuple[str, str]]:
        """(kind, detail) of every effect on the order, in the order they happened."""
        with self._connect() as db:
            return db.execute("SELECT kind, detail FROM effects WHERE order_id = ? ORDER BY rowid",
                              (order_id,)).fetchall()


@dataclass(frozen=True)
class OrderRequest:
    order_id: str
    sku: str = "mug"
    quantity: int = 1
    amount: int = 12_00  # cents
    packing_timeout: float = 2 * DAY
    follow_up_after: float = 3 * DAY
    shop: str = DEFAULT_SHOP


@dataclass(frozen=True)
class PackingSlip:
    """The payload of the "packed" signal, sent by whoever packed the parcel."""

    packer: str
    parcels: int = 1


@dataclass(frozen=True)
class OrderOutcome:
    order_id: str
    status: str  # "delivered", or "refunded" when nobody packed it in time
    tracking: str | None = None
    reason: str | None = None


SHOP_RETRY = RetryPolicy(max_attempts=5, initial_interval=0.5, non_retryable=(OutOfStock,))


@step(retry=SHOP_RETRY)
def reserve_stock(ctx: Context, request: OrderRequest) -> str:
    return Shop(request.shop).record(
        ctx.idempotency_key, request.order_id, "reserved", f"{request.quantity} x {request.sku}",
        sku=request.sku, stock_change=-request.quantity)


@step(retry=SHOP_RETRY)
def release_stock(ctx: Context, request: OrderRequest) -> str:
    return Shop(request.shop).record(
        ctx.idempotency_key, request.order_id, "released", f"{request.quantity} x {request.sku}",
        sku=request.sku, stock_change=request.quantity)


@step(retry=SHOP_RETRY)
def charge(ctx: Context, request: OrderRequest) -> str:
    """Returns the payment id; the key makes a retried charge a no-op at the payment provider."""
    return Shop(request.shop).record(ctx.idempotency_key, request.order_id, "charged",
                                     f"payment {_reference('PAY', ctx.idempotency_key)}"
                                     f" of {request.amount} cents")


@step(retry=SHOP_RETRY)
def refund(ctx: Context, request: OrderRequest) -> str:
    return Shop(request.shop).record(ctx.idempotency_key, request.order_id, "refunded",
                                     f"{request.amount} cents")


@step(retry=SHOP_RETRY)
def ship(ctx: Context, request: OrderRequest, slip: PackingSlip) -> str:
    """Books the carrier and returns the tracking number (stable across retries: from the key)."""
    tracking = _reference("TRK", ctx.idempotency_key)
    Shop(request.shop).record(ctx.idempotency_key, request.order_id, "shipped",
                              f"{tracking}, {slip.parcels} parcel(s) packed by {slip.packer}")
    return tracking


@step(retry=SHOP_RETRY)
def send_follow_up(ctx: Context, request: OrderRequest, tracking: str) -> str:
    return Shop(request.shop).record(ctx.idempotency_key, request.order_id, "follow_up",
                                     f"How did parcel {tracking} arrive? Tell us!")


def _reference(prefix: str, key: str) -> str:
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:10].upper()


Compensation = Callable[[], Awaitable[object]]


async def _undo(compensations: list[Compensation]) -> None:
    """Run the compensations of what was done, newest first, each a durable step."""
    for compensate in reversed(compensations):
        await compensate()


@workflow
async def order(ctx: Context, request: OrderRequest) -> OrderOutcome:
    """Take an order from reservation to delivery follow-up; refund it if it cannot ship."""
    done: list[Compensation] = []
    try:
        ctx.set_event("stage", "reserving")
        await reserve_stock(ctx, request)
        done.append(lambda: release_stock(ctx, request))
        await charge(ctx, request)
        done.append(lambda: refund(ctx, request))
        ctx.set_event("stage", "awaiting_packing")
        try:
            slip = await ctx.wait_for_signal(
                "packed", timeout=timedelta(seconds=request.packing_timeout),
                type_hint=PackingSlip)
        except WaitTimeout:
            await _undo(done)
            ctx.set_event("stage", "refunded")
            return OrderOutcome(request.order_id, "refunded", reason=(
                f"not packed within {timedelta(seconds=request.packing_timeout)}"))
        ctx.set_event("stage", "shipping")
        tracking = await ship(ctx, request, slip)
    except Cancelled:
        ctx.set_event("stage", "cancelling")
        await _undo(done)
        ctx.set_event("stage", "cancelled")
        raise
    ctx.set_event("stage", "shipped")
    await ctx.sleep(timedelta(seconds=request.follow_up_after), name="until delivery follow-up")
    await send_follow_up(ctx, request, tracking)
    ctx.set_event("stage", "delivered")
    return OrderOutcome(request.order_id, "delivered", tracking)


def when_stage(client: durable.Client, run_id: str, stage: str, action: Callable[[], object],
               timeout: float = 30.0) -> threading.Thread:
    """Call `action` from a background thread once the run publishes `stage`.

    Stands in for the people around the workflow (a packing station, a support agent) who act
    on what the shop front-end shows; tests use it to signal or cancel at the right moment.
    """
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.get_event(run_id, "stage") == stage:
                    action()
                    return
            except durable.RunNotFound:
                pass  # not started yet
            time.sleep(0.02)
        raise TimeoutError(f"run {run_id!r} did not reach stage {stage!r} in {timeout}s")

    thread = threading.Thread(target=watch, name=f"when-{stage}", daemon=True)
    thread.start()
    return thread


if __name__ == "__main__":
    run_id = f"order-{uuid.uuid4().hex[:8]}"
    request = OrderRequest(run_id.upper(), packing_timeout=60, follow_up_after=1.0)
    client = durable.Client()
    when_stage(client, run_id, "awaiting_packing",
               lambda: client.signal(run_id, "packed", PackingSlip("sam")))
    outcome = durable.run(order, request, id=run_id)
    print(outcome)
    for kind, detail in Shop().effects(request.order_id):
        print(f"  {kind:10} {detail}")
