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
from typing import Any, Generic, Literal, TypeVar

from durable.errors import DurableError, UsageError
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
class BatchProgress:
    """How far a batch has come: what a `Completion.should_complete` predicate decides on.
    `items` are every branch's outcome so far, in item order (NOT_COMPLETED: still running,
    or not started)."""

    succeeded: int
    failed: int
    total: int
    items: tuple[BatchItem[Any], ...]

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed


Decision = bool | Literal["SUCCEEDED", "FAILED"] | None
"""A predicate's answer: falsy to go on; True or "SUCCEEDED" to end the batch successfully now;
"FAILED" to end it failed now (`BatchFailed`), even if no item failed (a quorum out of reach)."""


@dataclass(frozen=True, slots=True)
class Completion:
    """When a batch is done. The default, all successful, fails fast on the first failure.

    `min_successful`: done once that many succeeded. `tolerated_failures` /
    `tolerated_failure_ratio`: keep going while failures stay within them (AWS's
    tolerated_failure_count / tolerated_failure_percentage, the latter as a ratio, 0.1 for 10%).
    `all_completed`: run every item whatever fails, and report.

    `should_complete(progress) -> Decision`: a custom rule (AWS's should_complete), asked
    before any branch starts and after each branch ends; once it decides, the branches still
    running are abandoned. It must be deterministic and monotonic (once it would end the
    batch, more progress must not make it go on): the decision is recorded and a replay follows
    the record, but a batch a crash interrupted before it decided is driven again and may see
    its branches end in another order. It cannot be combined with the thresholds.
    """

    min_successful: int | None = None
    tolerated_failures: int | None = None
    tolerated_failure_ratio: float | None = None
    all_completed: bool = False
    should_complete: Callable[[BatchProgress], Decision] | None = None

    def __post_init__(self) -> None:
        thresholds = (self.min_successful, self.tolerated_failures, self.tolerated_failure_ratio)
        if self.should_complete is not None and any(t is not None for t in thresholds):
            raise UsageError("Completion(should_complete=...) decides alone: it cannot be "
                             "combined with min_successful, tolerated_failures or "
                             "tolerated_failure_ratio (fold those into the predicate)")
        if self.min_successful is not None and self.min_successful < 1:
            raise UsageError(f"Completion: min_successful must be at least 1, got "
                             f"{self.min_successful}")
        if self.tolerated_failures is not None and self.tolerated_failures < 0:
            raise UsageError(f"Completion: tolerated_failures must not be negative, got "
                             f"{self.tolerated_failures}")
        ratio = self.tolerated_failure_ratio
        if ratio is not None and not 0 <= ratio <= 1:
            raise UsageError(f"Completion: tolerated_failure_ratio is a ratio from 0 to 1 "
                             f"(0.1 for 10%), got {ratio}")

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

    @classmethod
    def until(cls, predicate: Callable[[BatchProgress], Decision]) -> Completion:
        """Done when `predicate` says so (see `should_complete`), or when every item ended."""
        return cls(should_complete=predicate)

    @property
    def fails_fast(self) -> bool:
        return self == _ALL_SUCCESSFUL

    def decide(self, progress: BatchProgress) -> str | None:
        """Why the batch is done, or None while it is not."""
        succeeded, failed, total = progress.succeeded, progress.failed, progress.total
        if self.should_complete is not None:
            decision = self.should_complete(progress)
            if decision == "FAILED":
                return CUSTOM_FAILED
            if decision is True or decision == "SUCCEEDED":
                return "CUSTOM_COMPLETION_SUCCEEDED"
            if decision:
                raise UsageError(f"Completion.should_complete returned {decision!r}: return "
                                 "False/None to go on, True or 'SUCCEEDED' to end the batch, "
                                 "or 'FAILED' to fail it")
        if self.min_successful is not None and succeeded >= self.min_successful:
            return "MIN_SUCCESSFUL_REACHED"
        if self._too_many_failures(total, failed):
            return TOLERANCE_EXCEEDED
        if succeeded + failed == total:
            return "ALL_COMPLETED"
        return None

    def _too_many_failures(self, total: int, failed: int) -> bool:
        if self.tolerated_failures is not None and failed > self.tolerated_failures:
            return True
        if self.tolerated_failure_ratio is not None and total and (
                failed / total > self.tolerated_failure_ratio):
            return True
        # A custom rule decides about failures itself, as AWS's does.
        decides = (self.tolerated_failures is not None or self.tolerated_failure_ratio is not None
                   or self.should_complete is not None)
        return not decides and not self.all_completed and failed > 0


TOLERANCE_EXCEEDED = "FAILURE_TOLERANCE_EXCEEDED"
CUSTOM_FAILED = "CUSTOM_COMPLETION_FAILED"
_FAILED_REASONS = (TOLERANCE_EXCEEDED, CUSTOM_FAILED)  # AWS's reasons for a batch that failed
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
        why = (" and its should_complete rule failed it (CUSTOM_COMPLETION_FAILED)"
               if result.completion_reason == CUSTOM_FAILED else "")
        super().__init__(f"{result.failed} of {len(result)} items failed{why}{detail}")
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
        failed = result.completion_reason in _FAILED_REASONS
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

    def progress() -> BatchProgress:
        return BatchProgress(succeeded, failed, len(batch.items), tuple(batch.items))

    # A custom rule is asked before anything runs, as AWS's is: it may need no branch at all.
    custom = completion is not None and completion.should_complete is not None
    decided = completion.decide(progress()) if completion is not None and custom else None
    while pending and len(running) < limit and decided is None:
        launch()
    ex.live_changed(len(running) - 1)  # the caller now waits on its branches instead
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
                    decided = completion.decide(progress())
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
