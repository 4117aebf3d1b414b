"""An accepted update survives SIGKILL of the worker running its handler.

A worker process (this file run as a script, serving as a Temporal sample does) accepts an
update whose async handler awaits an activity; the test kills the process while that activity
is in flight, between the update's acceptance and its completion. A caller in the test process
waits on the update throughout. A second worker replays the run, runs the handler again from
its history, and completes the update: the caller gets the result, the update is completed
once, and the activity's effect (the charge) happened once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from durable.temporal import activity, workflow

if TYPE_CHECKING:  # the worker runs this file as a script, where `tests` is not importable
    from tests.kit import Proc

pytestmark = pytest.mark.crash

HANG_GUARD = 120.0  # a hang fails the test instead of the suite; never reached when it works


@activity.defn
async def charge(order: str) -> str:
    """Appends "started <pid>" to $EFFECTS, waits for the $GATE file (so the test can kill the
    worker here), then appends "charged <order> <pid>": the effect, which must happen once."""
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"started {os.getpid()}\n")
    while not Path(os.environ["GATE"]).exists():
        await asyncio.sleep(0.01)
    with open(os.environ["EFFECTS"], "a") as out:
        out.write(f"charged-{order} {os.getpid()}\n")
    return f"receipt-{order}"


@workflow.defn
class PaymentCheckout:
    def __init__(self) -> None:
        self.receipts: list[str] = []
        self.closed = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(
            lambda: self.closed and workflow.all_handlers_finished())
        return self.receipts

    @workflow.update
    async def pay(self, order: str) -> str:
        receipt = await workflow.execute_activity(
            charge, order, start_to_close_timeout=timedelta(seconds=60))
        self.receipts.append(receipt)
        return receipt

    @pay.validator
    def validate_pay(self, order: str) -> None:
        if self.closed:
            raise ValueError("checkout is closed")

    @workflow.signal
    async def refund(self, order: str) -> None:
        """An async signal handler awaiting an activity, beside an update handler."""
        receipt = await workflow.execute_activity(
            charge, order, start_to_close_timeout=timedelta(seconds=60))
        self.receipts.append(f"refunded-{receipt}")

    @workflow.signal
    def close(self) -> None:
        self.closed = True


async def serve() -> None:
    """The worker process, as a Temporal sample writes one."""
    from durable.temporal.client import Client
    from durable.temporal.envconfig import ClientConfig
    from durable.temporal.worker import Worker

    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)
    async with Worker(client, task_queue="crash", workflows=[PaymentCheckout], activities=[charge]):
        await asyncio.Event().wait()


class _Workers:
    """Worker processes serving this file on `db`, and the effects their activities wrote."""

    def __init__(self, db: str, tmp_path: Path) -> None:
        from tests.kit import Procs

        self.db = db
        self.effects, self.gate = tmp_path / "effects.log", tmp_path / "gate"
        self.log = tmp_path / "workers.log"
        self.procs = Procs(tmp_path, grace=0)
        self.env = {**os.environ, "TEMPORAL_ADDRESS": db, "EFFECTS": str(self.effects),
                    "GATE": str(self.gate), "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")}
        self.env.pop("DURABLE_DB", None)

    def spawn(self) -> Proc:
        return self.procs.start(sys.executable, __file__, log=self.log, env=self.env)

    def lines(self) -> list[list[str]]:
        return [line.split() for line in self.effects.read_text().splitlines()] if (
            self.effects.exists()) else []

    async def pay(self, order: str) -> str:
        """The caller of an update, in a client of its own, waiting across crashes."""
        from durable.temporal.client import Client

        caller = Client(self.db)
        try:
            handle = caller.get_workflow_handle_for(PaymentCheckout.run, "checkout")
            result = await asyncio.wait_for(
                handle.execute_update(PaymentCheckout.pay, order, id=f"pay-{order}"),
                HANG_GUARD)
            return str(result)
        finally:
            caller.durable.close()


def test_sigkill_between_accepting_and_completing_an_update_completes_it_once(
        any_db: str, tmp_path: Path) -> None:
    from durable.temporal.client import Client
    from tests.kit import wait_until

    workers = _Workers(any_db, tmp_path)
    client = Client(any_db)
    handle = asyncio.run(client.start_workflow(PaymentCheckout.run, id="checkout",
                                               task_queue="crash"))
    try:
        with ThreadPoolExecutor(1) as pool:
            first = workers.spawn()
            waiting = pool.submit(asyncio.run, workers.pay("A1"))

            def charge_started() -> bool:
                assert first.alive, f"the worker exited:\n{first.output()}"
                return bool(workers.lines())
            wait_until(charge_started, "the update's activity to start")
            stages = asyncio.run(client._update_stages("checkout", "pay-A1"))
            assert [stage["stage"] for _, stage in stages] == ["accepted"]
            first.kill()
            assert not waiting.done()
            workers.gate.touch()
            second = workers.spawn()
            assert waiting.result(timeout=HANG_GUARD) == "receipt-A1"
        # the same update id again is the update already completed: nothing runs again
        again = asyncio.run(handle.execute_update(PaymentCheckout.pay, "A1", id="pay-A1"))
        assert again == "receipt-A1"
        asyncio.run(handle.signal(PaymentCheckout.close))
        assert asyncio.run(asyncio.wait_for(handle.result(), 120)) == ["receipt-A1"]
        assert workers.lines() == [["started", str(first.pid)], ["started", str(second.pid)],
                                   ["charged-A1", str(second.pid)]]
        stages = asyncio.run(client._update_stages("checkout", "pay-A1"))
        assert [stage["stage"] for _, stage in stages] == ["accepted", "result"]
    finally:
        workers.procs.close()
        client.durable.close()


def test_sigkill_while_a_signal_handler_and_an_update_handler_await_activities_runs_each_once(
        any_db: str, tmp_path: Path) -> None:
    """Both kinds of handler in flight on the one signal channel when the worker dies: after
    the restart, each activity's effect happens once, the update completes once, and the run
    waits for both handlers (`all_handlers_finished`) before returning."""
    from durable.temporal.client import Client
    from tests.kit import wait_until

    workers = _Workers(any_db, tmp_path)
    client = Client(any_db)
    handle = asyncio.run(client.start_workflow(PaymentCheckout.run, id="checkout",
                                               task_queue="crash"))
    try:
        with ThreadPoolExecutor(1) as pool:
            first = workers.spawn()
            asyncio.run(handle.signal(PaymentCheckout.refund, "R1"))
            waiting = pool.submit(asyncio.run, workers.pay("A1"))

            def both_started() -> bool:
                assert first.alive, f"the worker exited:\n{first.output()}"
                return len(workers.lines()) == 2
            wait_until(both_started, "the signal's and the update's activities to start")
            first.kill()
            asyncio.run(handle.signal(PaymentCheckout.close))  # while no worker runs
            assert not waiting.done()
            workers.gate.touch()
            second = workers.spawn()
            assert waiting.result(timeout=HANG_GUARD) == "receipt-A1"
        assert sorted(asyncio.run(asyncio.wait_for(handle.result(), HANG_GUARD))) == [
            "receipt-A1", "refunded-receipt-R1"]
        effects = workers.lines()
        assert effects[:2] == [["started", str(first.pid)]] * 2
        assert sorted(effects[2:]) == [["charged-A1", str(second.pid)],
                                       ["charged-R1", str(second.pid)],
                                       ["started", str(second.pid)],
                                       ["started", str(second.pid)]]
        stages = asyncio.run(client._update_stages("checkout", "pay-A1"))
        assert [stage["stage"] for _, stage in stages] == ["accepted", "result"]
    finally:
        workers.procs.close()
        client.durable.close()


if __name__ == "__main__":
    asyncio.run(serve())
