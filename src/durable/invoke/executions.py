"""The AWS contract's calls that need a transaction of their own, over a store and a clock: what
the server's AWS routes (server/aws.py) use besides `Client`.

Checkpoints and state pages (the data plane), starting an execution by function and name, and the
control plane's reads in AWS's wire shapes (an execution, its history, the executions of a
function) all read or write the contract's own tables (execution names, checkpoint tokens), which
`Client` does not know. The routes parse and answer HTTP; these run the transaction, with the time
from the clock they were given: the server passes its `Client`'s, so a virtual clock drives them
too. The engine's commands (callbacks, stopping, waiting for an end) go through `Client`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from durable.invoke import dataplane
from durable.invoke.contract import (
    ContractError,
    HistoryContext,
    NotFound,
    Wire,
    error_to_wire,
    execution_arn,
    function_arn,
    history_to_wire,
    statuses_from_wire,
)
from durable.model import RunInfo
from durable.model.streams import StreamChunk
from durable.store import Store, Tx


class Executions:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self.store, self.clock = store, clock

    # -- data plane ------------------------------------------------------------------------------
    async def checkpoint(self, run_id: str, token: str, updates: Any,
                         client_token: str | None, chunks: Sequence[StreamChunk] = ()) -> str:
        """CheckpointDurableExecution (`dataplane.checkpoint`): the answer as JSON text."""
        return await self.store.awrite(lambda tx: dataplane.checkpoint(
            tx, run_id, token, updates, client_token, self.clock(), chunks))

    async def state(self, run_id: str, token: str, marker: str | None,
                    max_items: int | None) -> Wire:
        """GetDurableExecutionState (`dataplane.get_state`)."""
        return await self.store.aread(
            lambda tx: dataplane.get_state(tx, run_id, token, marker, max_items))

    # -- control plane ---------------------------------------------------------------------------
    async def start(self, function: str, name: str, input: str | None,
                    timeout: float | None) -> RunInfo:
        """Invoke: the execution named `name` of `function`, started unless it exists with the
        same input; with another input, AWS's DurableExecutionAlreadyStartedException."""
        try:
            run, _ = await self.store.awrite(lambda tx: dataplane.start_execution(
                tx, function, name, input, self.clock(), timeout))
        except dataplane.ExecutionConflict as e:
            raise ContractError(str(e), "DurableExecutionAlreadyStartedException", 409) from None
        return run

    async def describe(self, run_id: str, include: bool) -> Wire:
        """GetDurableExecution; `include`: with the input and the result."""
        def read(tx: Tx) -> Wire:
            run = dataplane.run_of(tx, run_id)
            out = _summary(tx, run)
            out.update(Version="$LATEST", ExecutionDataIncluded=include)
            if include and run.input is not None:
                out["InputPayload"] = run.input
            if include and run.result is not None:
                out["Result"] = run.result
            if run.error is not None:
                out["Error"] = error_to_wire(run.error)
            if run.timeout_at is not None:
                out["DurableConfig"] = {"ExecutionTimeout": round(run.timeout_at
                                                                  - run.created_at)}
            return out
        return await self.store.aread(read)

    async def history(self, run_id: str, include: bool, newest_first: bool, start: int,
                      max_items: int) -> Wire:
        """GetDurableExecutionHistory: `max_items` events from index `start`."""
        def read(tx: Tx) -> Wire:
            run = dataplane.run_of(tx, run_id)

            def child(child_id: str) -> tuple[str, str, str | None]:
                found = tx.get_run(child_id)
                workflow = found.workflow if found else ""
                return workflow, execution_arn(workflow, tx.execution_name(child_id)
                                               or child_id, child_id), (
                    found.input if found else None)
            ctx = HistoryContext(run, dataplane.name_of(tx, run), tx.operations(run_id),
                                 include, child)
            events = history_to_wire(tx.history(run_id, limit=10**9), ctx)
            if newest_first:
                events.reverse()
            answer: Wire = {"Events": events[start:start + max_items]}
            if start + max_items < len(events):
                answer["NextMarker"] = str(start + max_items)
            return answer
        return await self.store.aread(read)

    async def list(self, function: str, statuses: Sequence[str], name: str | None,
                   after: float | None, before: float | None, newest_first: bool, start: int,
                   max_items: int) -> Wire:
        """ListDurableExecutionsByFunction: `max_items` executions from index `start`."""
        def read(tx: Tx) -> Wire:
            rows = tx.list_executions(function, statuses_from_wire(statuses), name, after,
                                      before, newest_first, max_items + 1, start)
            if not rows and start == 0 and function not in (f[0] for f in tx.functions()):
                raise NotFound(f"Function not found: {function_arn(function)}")
            answer: Wire = {"DurableExecutions": [_summary(tx, run, execution)
                                                  for run, execution in rows[:max_items]]}
            if len(rows) > max_items:
                answer["NextMarker"] = str(start + max_items)
            return answer
        return await self.store.aread(read)


def _summary(tx: Tx, run: RunInfo, name: str | None = None) -> Wire:
    """An execution summary (ListDurableExecutionsByFunction's `Execution`)."""
    name = name or dataplane.name_of(tx, run)
    out: Wire = {"DurableExecutionArn": execution_arn(run.workflow, name, run.run_id),
                 "DurableExecutionName": name, "FunctionArn": function_arn(run.workflow),
                 "Status": run.status.aws, "StartTimestamp": run.created_at}
    if run.ended_at is not None:
        out["EndTimestamp"] = run.ended_at
    return out
