"""A run's operations as a tree the run page can open a level at a time.

A map of 2,000 items is one row with its counts, not 2,000 rows: every operation with children
is collapsed, its children are listed on demand a page at a time, failed ones first, and the
failed ones are also surfaced under their parent at once, so a failure deep in a large run is on
the first screen. Pure: built from the operations the client read, no markup.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from durable.model import Operation, OperationStatus
from durable.views.timeline import op_label

S = OperationStatus
PAGE = 100
"""Children listed per request: a branch of 2,000 items opens 100 at a time."""
SURFACED = 5
"""Failed children named under a collapsed parent; the rest are counted."""

_FAILED = frozenset({S.FAILED, S.TIMED_OUT})
_RUNNING = frozenset({S.STARTED})
_PENDING = frozenset({S.PENDING, S.READY})


def bucket(status: OperationStatus) -> str:
    """Which of a parent's counts an operation adds to."""
    if status in _FAILED:
        return "failed"
    if status in _RUNNING:
        return "running"
    if status in _PENDING:
        return "pending"
    return "succeeded" if status is S.SUCCEEDED else "other"


def _rank(op: Operation) -> int:
    """Failed first, then what is still going on, then the rest in the order reached."""
    return {"failed": 0, "running": 1, "pending": 2}.get(bucket(op.status), 3)


@dataclass(frozen=True, slots=True)
class Counts:
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    pending: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.running + self.pending + self.other


@dataclass(frozen=True, slots=True)
class Node:
    """One operation as a row: its own state and, if it has children, their counts and the
    failed ones among them (`surfaced`, at most SURFACED, themselves nodes)."""

    op: Operation
    label: str
    counts: Counts | None
    surfaced: list[Node] = field(default_factory=list)

    @property
    def more_failed(self) -> int:
        return (self.counts.failed if self.counts else 0) - len(self.surfaced)


@dataclass(frozen=True, slots=True)
class Listing:
    """A page of one parent's children (the run's top level when `parent` is None)."""

    parent: str | None
    nodes: list[Node]
    offset: int
    total: int

    @property
    def next_offset(self) -> int | None:
        end = self.offset + len(self.nodes)
        return end if end < self.total else None


class Tree:
    def __init__(self, ops: list[Operation]) -> None:
        self.by_id = {op.id: op for op in ops}
        self.children: dict[str | None, list[Operation]] = {}
        for op in ops:
            parent = op.parent_id if op.parent_id in self.by_id else None
            self.children.setdefault(parent, []).append(op)

    def __len__(self) -> int:
        return len(self.by_id)

    def node(self, op: Operation, depth: int = 0) -> Node:
        kids = self.children.get(op.id)
        if not kids:
            return Node(op, op_label(op), None)
        counts = Counter(bucket(k.status) for k in kids)
        failed = [k for k in kids if k.status in _FAILED][:SURFACED] if depth < 4 else []
        return Node(op, op_label(op), Counts(**counts),
                    [self.node(k, depth + 1) for k in failed])

    def listing(self, parent: str | None, offset: int, limit: int = PAGE) -> Listing:
        """`parent`'s children from `offset`: the top level in the order the workflow reached
        it (it tells the run's story), a parent's children failed first."""
        kids = self.children.get(parent, [])
        if parent is not None:
            kids = sorted(kids, key=_rank)  # stable: the order reached within each rank
        return Listing(parent, [self.node(k) for k in kids[offset:offset + limit]],
                       offset, len(kids))

    def lineage(self, op_id: str) -> list[Operation]:
        """The operation and its ancestors: the rows an event about it may change."""
        out: list[Operation] = []
        op = self.by_id.get(op_id)
        while op is not None and len(out) < 50:
            out.append(op)
            op = self.by_id.get(op.parent_id or "")
        return out

    def parent_of(self, op: Operation) -> str | None:
        return op.parent_id if op.parent_id in self.by_id else None
