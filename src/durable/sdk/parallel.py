"""CONTEXT operations for parallel work: `ctx.gather` and `ctx.map`.

Each branch runs as an asyncio task in a child scope of its own, so the ids of its operations
depend on the branch's index, never on the order in which branches happened to finish. A branch
that waits on the engine does not hold up the others; the invocation suspends only when every live
branch waits. When the batch is done, the indices of the branches that counted are recorded, so a
replay re-drives exactly those (from their recorded operations) and decides exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from durable.errors import DurableError
from durable.model import (
    ABANDONED,
    ErrorObject,
    Operation,
    OperationAction,
    OperationStatus,
    OperationType,
    OperationUpdate,
    SubType,
    operation_id,
)
from durable.sdk.executor import CURRENT_SCOPE, Executor, Scope, Suspend

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Completion:
    """When a batch is done. The default, all successful, fails fast on the first failure.

    `min_successful`: done once that many succeeded. `tolerated_failures` /
    `tolerated_failure_ratio`: keep going while failures stay within them. `all_completed`: run
    every item whatever fails, and report.
    """

    min_successful: int | None = None
    tolerated_failures: int | None = None
    tolerated_failure_ratio: float | None = None
    all_completed: bool = False

    @classmethod
    def all_successful(cls) -> Completion:
        return cls()

    @classmethod
    def every(cls) -> Completion:
        return cls(all_completed=True)

    @classmethod
    def at_least(cls, n: int) -> Completion:
        return cls(min_successful=n, all_completed=True)

    @classmethod
    def tolerate(cls, failures: int | None = None, ratio: float | None = None) -> Completion:
        return cls(tolerated_failures=failures, tolerated_failure_ratio=ratio)

    @property
    def fails_fast(self) -> bool:
        return self == _ALL_SUCCESSFUL

    def decide(self, total: int, succeeded: int, failed: int) -> str | None:
        """Why the batch is done, or None while it is not."""
        if self.min_successful is not None and succeeded >= self.min_successful:
            return "MIN_SUCCESSFUL_REACHED"
        if self._too_many_failures(total, failed):
            return "FAILURE_TOLERANCE_EXCEEDED"
        if succeeded + failed == total:
            return "ALL_COMPLETED"
        return None

    def _too_many_failures(self, total: int, failed: int) -> bool:
        if self.tolerated_failures is not None and failed > self.tolerated_failures:
            return True
        if self.tolerated_failure_ratio is not None and total and (
                failed / total > self.tolerated_failure_ratio):
            return True
        explicit = self.tolerated_failures is not None or self.tolerated_failure_ratio is not None
        return not explicit and not self.all_completed and failed > 0


_ALL_SUCCESSFUL = Completion()


@dataclass(frozen=True, slots=True)
class BatchItem(Generic[T]):
    index: int
    status: str  # SUCCEEDED, FAILED, or NOT_COMPLETED (abandoned once the batch was done)
    result: T | None = None
    error: ErrorObject | None = None


@dataclass(frozen=True, slots=True)
class BatchResult(Generic[T]):
    """Per-item outcomes in item order. Iterating yields the results (None where an item did
    not succeed)."""

    items: list[BatchItem[T]]
    completion_reason: str

    def __iter__(self) -> Iterator[T | None]:
        return (item.result for item in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> T | None:
        return self.items[index].result

    @property
    def results(self) -> list[T]:
        """The results of the items that succeeded, in item order."""
        return [i.result for i in self.items if i.status == "SUCCEEDED"]  # type: ignore[misc]

    @property
    def errors(self) -> list[ErrorObject]:
        return [i.error for i in self.items if i.error is not None]

    @property
    def succeeded(self) -> int:
        return sum(i.status == "SUCCEEDED" for i in self.items)

    @property
    def failed(self) -> int:
        return sum(i.status == "FAILED" for i in self.items)


class BatchFailed(DurableError):
    """More items failed than the batch's completion policy tolerates."""

    def __init__(self, result: BatchResult[Any]) -> None:
        first = result.errors[0] if result.errors else None
        detail = f"; first: {first.type}: {first.message}" if first else ""
        super().__init__(f"{result.failed} of {len(result)} items failed{detail}")
        self.result = result


@dataclass(slots=True)
class _Batch:
    ex: Executor
    op_id: str
    branch_type: SubType
    thunks: Sequence[Callable[[], Awaitable[Any]]]
    items: list[BatchItem[Any]] = field(default_factory=list)
    first_error: BaseException | None = None

    async def branch(self, index: int) -> Any:
        branch_id = operation_id(self.op_id, index + 1)
        CURRENT_SCOPE.set(Scope(self.ex, branch_id))  # this task's own context copy
        if branch_id not in self.ex.ops:
            self._record(branch_id, index, OperationAction.START, OperationStatus.STARTED)
        return await self.thunks[index]()

    def _record(self, branch_id: str, index: int, action: OperationAction,
                status: OperationStatus, error: ErrorObject | None = None) -> None:
        name = str(index)
        self.ex.buffer(
            OperationUpdate(branch_id, OperationType.CONTEXT, action, name=name,
                            parent_id=self.op_id, sub_type=self.branch_type, error=error),
            Operation(branch_id, OperationType.CONTEXT, status, name, self.op_id,
                      self.branch_type, error=error))

    def settle(self, index: int, task: asyncio.Task[Any]) -> None:
        """Record how branch `index` ended."""
        branch_id = operation_id(self.op_id, index + 1)
        error = task.exception()
        recorded = self.ex.ops.get(branch_id)
        final = recorded is not None and recorded.status.is_final
        if error is None:
            self.items[index] = BatchItem(index, "SUCCEEDED", task.result())
            if not final:
                self._record(branch_id, index, OperationAction.SUCCEED, OperationStatus.SUCCEEDED)
            return
        err = ErrorObject.from_exception(error)
        self.items[index] = BatchItem(index, "FAILED", error=err)
        self.first_error = self.first_error or error
        if not final:
            self._record(branch_id, index, OperationAction.FAIL, OperationStatus.FAILED, err)

    def abandon(self, index: int, reason: str) -> None:
        """Record that branch `index` ends unfinished because the batch was decided (`reason`)
        without it, so its CONTEXT does not stay STARTED after the run. It ends FAILED with an
        ABANDONED error: FAIL is the only unsuccessful end AWS's contract allows a CONTEXT.
        A branch with no record never started; one recorded final ended on its own earlier."""
        branch_id = operation_id(self.op_id, index + 1)
        recorded = self.ex.ops.get(branch_id)
        if recorded is None or recorded.status.is_final:
            return
        error = ErrorObject(ABANDONED, f"the batch was done ({reason}) before this branch ended")
        self._record(branch_id, index, OperationAction.FAIL, OperationStatus.FAILED, error)


async def run_batch(ex: Executor, scope: Scope, kind: SubType, branch_kind: SubType,
                    name: str | None, thunks: Sequence[Callable[[], Awaitable[Any]]],
                    completion: Completion, max_concurrency: int | None) -> BatchResult[Any]:
    with scope.exclusive(f"{kind.lower()} {name or ''}".strip()):
        op_id, op = ex.begin(scope, OperationType.CONTEXT, name, kind)
        if op is None:
            op = Operation(op_id, OperationType.CONTEXT, OperationStatus.STARTED, name,
                           scope.parent_id, kind)
            ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, OperationAction.START,
                                      name=name, parent_id=scope.parent_id, sub_type=kind), op)
        total = len(thunks)
        batch = _Batch(ex, op_id, branch_kind, thunks,
                       [BatchItem(i, "NOT_COMPLETED") for i in range(total)])
        recorded = json.loads(op.result) if op.status.is_final and op.result else None
        order = recorded["completed"] if recorded else list(range(total))
        reason = await _drive(ex, batch, order, completion if recorded is None else None,
                              max_concurrency)
        result = BatchResult(batch.items, recorded["reason"] if recorded else reason)
        failed = result.completion_reason == "FAILURE_TOLERANCE_EXCEEDED"
        if not op.status.is_final:
            done = [i.index for i in batch.items if i.status != "NOT_COMPLETED"]
            payload = json.dumps({"completed": done, "reason": result.completion_reason})
            action = OperationAction.FAIL if failed else OperationAction.SUCCEED
            ex.buffer(OperationUpdate(op_id, OperationType.CONTEXT, action, name=name,
                                      parent_id=scope.parent_id, sub_type=kind, payload=payload),
                      Operation(op_id, OperationType.CONTEXT,
                                OperationStatus.FAILED if failed else OperationStatus.SUCCEEDED,
                                name, scope.parent_id, kind, result=payload))
            # Durable before the workflow goes on: the body of a step after the batch runs
            # before that step's checkpoint, and a replay deciding afresh would drive the
            # abandoned branches again and could count other ones.
            await ex.flush()
        if failed:
            if completion.fails_fast and batch.first_error is not None:
                raise batch.first_error
            raise BatchFailed(result)
        return result


async def _drive(ex: Executor, batch: _Batch, order: list[int],
                 completion: Completion | None, max_concurrency: int | None) -> str:
    """Run the branches in `order`, at most `max_concurrency` at once, until `completion` says
    the batch is done (None: run exactly these, as recorded). Returns the completion reason."""
    pending = deque(order)
    running: dict[asyncio.Task[Any], int] = {}
    limit = max_concurrency or len(order) or 1
    succeeded = failed = 0

    def launch() -> None:
        index = pending.popleft()
        running[asyncio.create_task(batch.branch(index))] = index

    while pending and len(running) < limit:
        launch()
    ex.live_changed(len(running) - 1)  # the caller now waits on its branches instead
    decided: str | None = None
    ended = 0  # branches that ended once the batch was decided: counted after the abandoned stop
    held = False  # a branch held because the run was paused: the rest finish what they run
    try:
        while running and decided is None:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if ex.suspending:
                raise Suspend
            for task in done:
                error = task.exception()
                if isinstance(error, Suspend) and ex.paused:
                    running.pop(task)
                    held = True
                    ex.live_changed(-1)
                    continue
                if error is not None and not isinstance(error, Exception):
                    raise error  # Cancelled, NonDeterminismError: the whole run's business
                batch.settle(running.pop(task), task)
                succeeded += error is None
                failed += error is not None
                if completion is not None and decided is None:
                    decided = completion.decide(len(batch.items), succeeded, failed)
                if pending and not decided and not held:
                    launch()  # the finished branch's slot passes on: live count unchanged
                elif decided and running:
                    # Not yet: the abandoned branches may still be waiting on the engine, and
                    # would look like all that is live, suspending the run for nothing.
                    ended += 1
                else:
                    ex.live_changed(-1)
    finally:
        for task in running:  # abandoned once the batch was decided, or unwinding
            task.cancel()
        for task in running:
            with contextlib.suppress(BaseException):
                await task
        ex.live_changed(1 - len(running) - ended)
    if held:
        raise Suspend
    if decided is not None:  # what still runs is abandoned; recorded in the decision's own
        # checkpoint, so a replay follows the recorded decision and never abandons anew
        for index in sorted(running.values()):
            batch.abandon(index, decided)
    return decided or "ALL_COMPLETED"
