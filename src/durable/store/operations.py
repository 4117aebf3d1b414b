"""The `operations` and `signals` tables: a run's operations, callbacks and buffered signals."""

from __future__ import annotations

from collections.abc import Sequence

from durable.model import Operation
from durable.store.rows import (
    OP_COLUMNS,
    OP_COLUMNS_WITH_INPUT,
    WAITING_SQL,
    Table,
    dump_error,
    marks,
    operation_row,
)


class Operations(Table):
    """Operations, callbacks and signals."""

    def operations(self, run_id: str, inputs: bool = False) -> list[Operation]:
        """The run's operations in the order they were recorded; with `inputs`, each with the
        input recorded for it (for people: a replay never needs them)."""
        return self.operations_of([run_id], inputs)[run_id]

    def operations_of(self, run_ids: Sequence[str],
                      inputs: bool = False) -> dict[str, list[Operation]]:
        """The operations of each run, in the order they were recorded, in one statement: what
        a claim hands its invocations (without `inputs`).

        Put in order here, not by the query: ORDER BY seq would let PostgreSQL walk the primary
        key's index through every operation of every run, filtering, rather than look up these
        runs' operations in the (run_id, op_id) index and sort the few it found.
        """
        found: dict[str, list[Operation]] = {run_id: [] for run_id in run_ids}
        if run_ids:
            columns = OP_COLUMNS_WITH_INPUT if inputs else OP_COLUMNS
            rows = self._rows(f"SELECT seq, run_id, {columns} FROM operations"
                              f" WHERE run_id IN ({marks(run_ids)})", run_ids)
            for row in sorted(rows, key=lambda row: int(row[0])):
                found[row[1]].append(operation_row(row[2:]))
        return found

    def get_operation(self, run_id: str, op_id: str, inputs: bool = False) -> Operation | None:
        columns = OP_COLUMNS_WITH_INPUT if inputs else OP_COLUMNS
        row = self._one(f"SELECT {columns} FROM operations WHERE run_id = ? AND op_id = ?",
                        (run_id, op_id))
        return None if row is None else operation_row(row)

    def operations_of_kind(self, run_id: str, sub_type: str) -> list[Operation]:
        """The run's operations of one sub-type, in the order they were recorded: what a
        reader looking for one kind (a webhook answer) reads instead of the whole history."""
        return [operation_row(r) for r in self._rows(
            f"SELECT {OP_COLUMNS} FROM operations WHERE run_id = ? AND sub_type = ?"
            " ORDER BY seq", (run_id, sub_type))]

    def waiting_operations(self, run_id: str) -> list[Operation]:
        # The statuses are written out, not bound: only then may the planner use the
        # partial index operations_waiting, whose condition they must match.
        return [operation_row(r) for r in self._rows(
            f"SELECT {OP_COLUMNS} FROM operations WHERE run_id = ? AND status IN {WAITING_SQL}"
            " ORDER BY seq", (run_id,))]

    def put_operation(self, run_id: str, op: Operation, input: str | None = None) -> None:
        """Insert or update the operation's row. `input` is kept only if the row has none yet:
        the first update to carry the input records it, none after can change it, and the
        engine's updates of operations read without their input keep it."""
        # The enums' `_value_`, not `.value`: that property costs each step two calls.
        self._exec(
            "INSERT INTO operations (run_id, op_id, type, status, name, parent_id, sub_type,"
            " attempt, result, error, due_at, callback_id, child_run_id, started_at, ended_at,"
            " input) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, op_id) DO UPDATE SET status = excluded.status,"
            " attempt = excluded.attempt, result = excluded.result, error = excluded.error,"
            " due_at = excluded.due_at, callback_id = excluded.callback_id,"
            " child_run_id = excluded.child_run_id,"
            " started_at = excluded.started_at, ended_at = excluded.ended_at,"
            " input = COALESCE(operations.input, excluded.input)",
            (run_id, op.id, op.type._value_, op.status._value_, op.name, op.parent_id, op.sub_type,
             op.attempt, op.result, dump_error(op.error), op.due_at, op.callback_id,
             op.child_run_id, op.started_at, op.ended_at, input),
        )

    def find_callback(self, callback_id: str) -> tuple[str, Operation] | None:
        """The callback's operation, its row held until commit: two resolutions of one callback
        cannot both find it still STARTED."""
        row = self._one(f"SELECT run_id, {OP_COLUMNS} FROM operations WHERE callback_id = ?"
                        + self.row_lock_clause, (callback_id,))
        return None if row is None else (row[0], operation_row(row[1:]))

    def signal_waiter(self, run_id: str, name: str) -> Operation | None:
        row = self._one(
            f"SELECT {OP_COLUMNS} FROM operations WHERE run_id = ? AND type = 'CALLBACK'"
            " AND sub_type = 'Signal' AND name = ? AND status = 'STARTED' ORDER BY seq LIMIT 1",
            (run_id, name))
        return None if row is None else operation_row(row)


    def push_signal(self, run_id: str, name: str, payload: str | None, now: float) -> None:
        self._exec("INSERT INTO signals (run_id, name, payload, created_at) VALUES (?, ?, ?, ?)",
                   (run_id, name, payload, now))

    def pop_signal(self, run_id: str, name: str) -> tuple[str | None] | None:
        """The oldest buffered signal of that name, removed; a 1-tuple so None payloads survive."""
        row = self._one("SELECT id, payload FROM signals WHERE run_id = ? AND name = ?"
                        " ORDER BY id LIMIT 1", (run_id, name))
        if row is None:
            return None
        self._exec("DELETE FROM signals WHERE id = ?", (row[0],))
        return (row[1],)

    def buffered_signals(self, run_id: str, name: str) -> list[str | None]:
        """The payloads of the signals of that name still buffered (not yet taken by a wait),
        oldest first, without taking them: for readers that must see what a run will receive."""
        rows = self._rows("SELECT payload FROM signals WHERE run_id = ? AND name = ? ORDER BY id",
                          (run_id, name))
        return [r[0] for r in rows]
