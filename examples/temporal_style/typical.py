"""A Temporal user's typical program, written as Temporal's documentation writes it, with only
its imports changed: connection settings from `envconfig`, a worker in `async with`, activities
by method (an activity class holding its client) and by name, a signal, queries, a child
workflow, a patched change, continue-as-new, a cron workflow, an update with a validator, and a
workflow cancelled while its sync activity heartbeats.

    python examples/temporal_style/typical.py

It prints what it prints under Temporal (tests/test_temporal_typical.py runs it and compares):

    Order order-1: awaiting approval
    Order order-1: charged 30 from alice (balance 70), shipped as TRK-order-1, receipt sent
    Order order-1: done
    Batches processed: 60
    Report cron-report: RUNNING
    Report cron-report: TerminatedError, TERMINATED
    Export export-1: rejected, limit 0 is not positive
    Export export-1: exporting 1000000 rows
    Export export-1: cancelled while exporting, CANCELED
"""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from durable.temporal import activity, workflow
from durable.temporal.client import Client, WorkflowFailureError, WorkflowUpdateFailedError
from durable.temporal.common import WorkflowIDConflictPolicy
from durable.temporal.envconfig import ClientConfig
from durable.temporal.exceptions import CancelledError
from durable.temporal.worker import Worker

TASK_QUEUE = "typical-task-queue"


@dataclass
class Payment:
    account: str
    amount: int


class Bank:
    """Stands in for a bank's API client: what an activity class holds, as Temporal's samples
    hold a database or HTTP client."""

    def __init__(self) -> None:
        self.balances = {"alice": 100}


class BankActivities:
    def __init__(self, bank: Bank) -> None:
        self.bank = bank

    @activity.defn
    async def charge(self, payment: Payment) -> int:
        self.bank.balances[payment.account] -= payment.amount
        return self.bank.balances[payment.account]


@activity.defn(name="send_receipt")
async def send_receipt(order_id: str) -> str:
    return "receipt sent"


@activity.defn
async def create_label(order_id: str) -> str:
    return f"TRK-{order_id}"


@activity.defn
async def process_batch(batch: int) -> int:
    return 10


@activity.defn
async def compile_report() -> str:
    return "report"


@activity.defn
def export_rows(total: int) -> int:
    """A long sync activity: heartbeats its progress, resumes from it on a retry, and hears of
    its workflow's cancellation from `activity.heartbeat()`."""
    details = activity.info().heartbeat_details
    row = details[0] if details else 0
    try:
        while row < total:
            activity.heartbeat(row)
            time.sleep(0.01)
            row += 1
    except CancelledError:
        activity.logger.info("export cancelled at row %d", row)
        raise
    return row


@workflow.defn
class ShipOrder:
    @workflow.run
    async def run(self, order_id: str) -> str:
        return await workflow.execute_activity(
            create_label, order_id, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class OrderWorkflow:
    def __init__(self) -> None:
        self.status = "awaiting approval"
        self.approved = False

    @workflow.run
    async def run(self, order_id: str, payment: Payment) -> str:
        await workflow.wait_condition(lambda: self.approved)
        self.status = "charging"
        balance = await workflow.execute_activity_method(
            BankActivities.charge, payment, start_to_close_timeout=timedelta(seconds=10))
        self.status = "shipping"
        tracking = await workflow.execute_child_workflow(ShipOrder.run, order_id)
        summary = (f"charged {payment.amount} from {payment.account} (balance {balance}), "
                   f"shipped as {tracking}")
        if workflow.patched("send-receipt"):
            receipt = await workflow.execute_activity(
                "send_receipt", order_id, start_to_close_timeout=timedelta(seconds=10))
            summary += f", {receipt}"
        self.status = "done"
        return summary

    @workflow.signal
    def approve(self) -> None:
        self.approved = True

    @workflow.query
    def current_status(self) -> str:
        return self.status


@workflow.defn
class BatchWorkflow:
    @workflow.run
    async def run(self, processed: int) -> int:
        for batch in range(2):  # a bounded slice of the work per run, then a fresh history
            processed += await workflow.execute_activity(
                process_batch, batch, start_to_close_timeout=timedelta(seconds=10))
        if processed < 60:
            workflow.continue_as_new(processed)
        return processed


@workflow.defn
class ReportWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            compile_report, start_to_close_timeout=timedelta(seconds=10))


@workflow.defn
class ExportWorkflow:
    def __init__(self) -> None:
        self.limit = 0
        self.status = "waiting for a limit"

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.limit > 0)
        self.status = "exporting"
        try:
            return await workflow.execute_activity(
                export_rows, self.limit, start_to_close_timeout=timedelta(hours=1),
                heartbeat_timeout=timedelta(seconds=5))
        except asyncio.CancelledError:
            self.status = "cancelled while exporting"
            raise

    @workflow.update
    def set_limit(self, limit: int) -> str:
        self.limit = limit
        return f"exporting {limit} rows"

    @set_limit.validator
    def validate_limit(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError(f"limit {limit} is not positive")

    @workflow.query
    def current_status(self) -> str:
        return self.status


async def main() -> None:
    config = ClientConfig.load_client_connect_config()
    config.setdefault("target_host", "localhost:7233")
    client = await Client.connect(**config)

    bank_activities = BankActivities(Bank())
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[OrderWorkflow, ShipOrder, BatchWorkflow, ReportWorkflow, ExportWorkflow],
        activities=[bank_activities.charge, send_receipt, create_label, process_batch,
                    compile_report, export_rows],
        activity_executor=ThreadPoolExecutor(5),
    ):
        order = await client.start_workflow(
            OrderWorkflow.run, args=["order-1", Payment("alice", 30)], id="order-1",
            task_queue=TASK_QUEUE)
        print(f"Order order-1: {await order.query(OrderWorkflow.current_status)}")
        await order.signal(OrderWorkflow.approve)
        print(f"Order order-1: {await order.result()}")
        print(f"Order order-1: {await order.query(OrderWorkflow.current_status)}")

        processed = await client.execute_workflow(
            BatchWorkflow.run, 0, id="batches", task_queue=TASK_QUEUE)
        print(f"Batches processed: {processed}")

        report = await client.start_workflow(
            ReportWorkflow.run, id="cron-report", task_queue=TASK_QUEUE,
            cron_schedule="0 9 * * *",
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
        print(f"Report cron-report: {(await report.describe()).status.name}")
        await report.terminate(reason="no more reports")
        try:
            await report.result()
        except WorkflowFailureError as err:
            status = (await report.describe()).status.name
            print(f"Report cron-report: {type(err.cause).__name__}, {status}")

        export = await client.start_workflow(
            ExportWorkflow.run, id="export-1", task_queue=TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING)
        try:
            await export.execute_update(ExportWorkflow.set_limit, 0)
        except WorkflowUpdateFailedError as err:
            print(f"Export export-1: rejected, {err.cause}")
        started = await export.execute_update(ExportWorkflow.set_limit, 1_000_000)
        print(f"Export export-1: {started}")
        await asyncio.sleep(0.5)  # the export is under way
        await export.cancel()
        try:
            await export.result()
        except WorkflowFailureError:
            status = (await export.describe()).status.name
            print(f"Export export-1: {await export.query(ExportWorkflow.current_status)}, "
                  f"{status}")


if __name__ == "__main__":
    asyncio.run(main())
