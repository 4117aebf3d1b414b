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

import pytest

from durable.temporal import activity, workflow

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


def test_sigkill_between_accepting_and_completing_an_update_completes_it_once(
        any_db: str, tmp_path: Path) -> None:
    from durable.temporal.client import Client
    from tests.kit import Proc, Procs, wait_until

    effects, gate, log = tmp_path / "effects.log", tmp_path / "gate", tmp_path / "workers.log"
    procs = Procs(tmp_path, grace=0)
    env = {**os.environ, "TEMPORAL_ADDRESS": any_db, "EFFECTS": str(effects),
           "GATE": str(gate), "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")}
    env.pop("DURABLE_DB", None)

    def spawn() -> Proc:
        return procs.start(sys.executable, __file__, log=log, env=env)

    def lines() -> list[list[str]]:
        return [line.split() for line in effects.read_text().splitlines()] if (
            effects.exists()) else []

    async def call_update() -> str:  # the caller, waiting across the crash
        caller = Client(any_db)
        try:
            handle = caller.get_workflow_handle_for(PaymentCheckout.run, "checkout")
            result = await asyncio.wait_for(
                handle.execute_update(PaymentCheckout.pay, "A1", id="pay-A1"), HANG_GUARD)
            return str(result)
        finally:
            caller.durable.close()

    client = Client(any_db)
    handle = asyncio.run(client.start_workflow(PaymentCheckout.run, id="checkout",
                                               task_queue="crash"))
    try:
        with ThreadPoolExecutor(1) as pool:
            first = spawn()
            waiting = pool.submit(asyncio.run, call_update())

            def charge_started() -> bool:
                assert first.alive, f"the worker exited:\n{first.output()}"
                return bool(lines())
            wait_until(charge_started, "the update's activity to start")
            stages = asyncio.run(client._update_stages("checkout", "pay-A1"))
            assert [stage["stage"] for _, stage in stages] == ["accepted"]
            first.kill()
            assert not waiting.done()
            gate.touch()
            second = spawn()
            assert waiting.result(timeout=HANG_GUARD) == "receipt-A1"
        # the same update id again is the update already completed: nothing runs again
        again = asyncio.run(handle.execute_update(PaymentCheckout.pay, "A1", id="pay-A1"))
        assert again == "receipt-A1"
        asyncio.run(handle.signal(PaymentCheckout.close))
        assert asyncio.run(asyncio.wait_for(handle.result(), 120)) == ["receipt-A1"]
        assert lines() == [["started", str(first.pid)], ["started", str(second.pid)],
                           ["charged-A1", str(second.pid)]]
        stages = asyncio.run(client._update_stages("checkout", "pay-A1"))
        assert [stage["stage"] for _, stage in stages] == ["accepted", "result"]
    finally:
        procs.close()
        client.durable.close()


if __name__ == "__main__":
    asyncio.run(serve())
