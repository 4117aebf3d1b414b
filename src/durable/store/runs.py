"""The `runs` table: creating runs, leases and fencing tokens, claims, listing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from durable.model import ExecutionStatus, Operation, RunInfo
from durable.model.listing import Cursor, RunFilter
from durable.model.queues import Enqueue
from durable.store.attributes import Attributes
from durable.store.rows import (
    FIRST_TOKEN,
    OP_COLUMNS,
    RUN_COLUMNS,
    contains,
    marks,
    operation_row,
    run_columns,
    run_row,
    status_clause,
    workflow_filter,
)

# Columns of `runs` the engine may set through `update_run`; guards the f-string below.
_RUN_SETTABLE = frozenset(
    {"status", "result", "error", "updated_at", "ended_at", "ready_at", "lease_owner",
     "lease_expires", "cancel_requested", "parked", "compute_seconds", "timeout_at",
     "invocation_failures", "invocation_error", "invocation_failing_since"}
)


LIVE = "('RUNNING', 'PAUSED')"
"""The statuses of runs that have not ended. Claims, wake-ups and due times read RUNNING only
(the partial indexes they walk hold no other): a PAUSED run is never invoked."""


Fenced = tuple[bool, bool, Operation | None]
"""What a fence read answers for a current token (`Runs.fence_and_get`)."""

Ahead = tuple[RunInfo, Operation | None]
"""What `Runs.read_fences` found of a fence's run and operation."""


@dataclass(frozen=True, slots=True)
class Fence:
    """The fence read a write will begin with (`fence_and_get` of this run, token and
    operation; `fenced_run` if `op_id` is None), declared before it runs, so that a writer may
    read the fences of many writes of one batch in one statement (`read_fences`) rather than
    one round trip each.

    `confined`: the write changes nothing of another run that a fence read sees (its token,
    status, cancel request or operations). A batch's fences are read together only across
    confined writes of distinct runs: a write that may change another run (a claim taking a
    lease over, a cancel) or a second write of the same run has its fence read after the
    writes before it have run (`BatchWriter`)."""

    run_id: str
    token: int
    op_id: str | None
    confined: bool = True


class Runs(Attributes):
    """Runs and their leases."""

    ahead: tuple[Fence, Ahead | None] | None = None
    """The answer to the fence read that the write now running declared, read with those of
    other writes of its batch; `fence_and_get` or `fenced_run` takes it instead of reading."""

    def _read_ahead(self, run_id: str, token: int,
                    op_id: str | None) -> tuple[bool, Ahead | None]:
        """Whether this fence was read ahead for the write now running, and what was found
        (None: the token is stale). Taken once."""
        ahead, self.ahead = self.ahead, None
        if ahead is None or (ahead[0].run_id, ahead[0].token, ahead[0].op_id) != (
                run_id, token, op_id):
            return False, None
        return True, ahead[1]

    def insert_run(self, run_id: str, workflow: str, input: str | None, now: float,
                   parent: tuple[str, str] | None = None,
                   lease: tuple[str, float] | None = None,
                   enqueue: Enqueue | None = None) -> bool:
        """Create a RUNNING run ready now; False if the id exists already (start is idempotent),
        or if `enqueue` carries a dedup id a live run of its queue has (`runs_dedup`).
        `parent` is the (run id, operation id) of the CHAINED_INVOKE that started it. With
        `lease` (owner, until), the run is created leased to that owner (`FIRST_TOKEN`), as if
        it had claimed it, instead of ready: nobody else needs to hear of it. With `enqueue`,
        it waits for a slot of that queue (ENQUEUED), in its priority order; without, it waits
        on the queue a worker recorded for the workflow (`workflow_settings`), if any, in the
        same statement: a start costs no more round trips for it."""
        parent_run, parent_op = parent or (None, None)
        owner, until = lease or (None, None)
        queue, priority, dedup_id = ((enqueue.queue, enqueue.priority, enqueue.dedup_id)
                                     if enqueue else (None, 0, None))
        # A run leased at its start is run at once by a worker that admits no queue's runs.
        recorded = ("?" if enqueue or lease else
                    "(SELECT queue FROM workflow_settings WHERE workflow = ?)")
        created = self._one(
            "INSERT INTO runs (run_id, workflow, status, input, created_at, updated_at, ready_at,"
            " parent_run_id, parent_op_id, lease_owner, lease_expires, token, enqueued_on,"
            " priority, dedup_id)"
            f" VALUES (?, ?, 'RUNNING', ?, ?, ?, ?, ?, ?, ?, ?, ?, {recorded}, ?, ?)"
            " ON CONFLICT DO NOTHING RETURNING run_id",
            (run_id, workflow, input, now, now, None if lease else now, parent_run, parent_op,
             owner, until, FIRST_TOKEN if lease else 0,
             queue if enqueue or lease else workflow, priority, dedup_id),
        ) is not None
        if created and lease is None:
            self.notify()
        return created

    def get_run(self, run_id: str, lock: bool = False) -> RunInfo | None:
        """With `lock`, hold the run's row until commit (`row_lock_clause`): what a change from
        outside (a signal, a cancel) does first, so that it and a checkpoint of the same run,
        which holds the row from its `fence`, each see all of the other or none of it."""
        row = self._one(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
                        + (self.row_lock_clause if lock else ""), (run_id,))
        return None if row is None else run_row(row)

    def update_run(self, run_id: str, **values: Any) -> None:
        assert values.keys() <= _RUN_SETTABLE, values.keys() - _RUN_SETTABLE
        sets = ", ".join(f"{k} = ?" for k in values)
        self._exec(f"UPDATE runs SET {sets} WHERE run_id = ?", (*values.values(), run_id))

    def wake(self, run_id: str, now: float) -> None:
        """Mark the run as having work now (a signal, callback or cancel arrived)."""
        self._exec(
            "UPDATE runs SET ready_at = ?, updated_at = ? WHERE run_id = ? AND status = 'RUNNING'",
            (now, now, run_id),
        )
        self.notify()

    def fenced_run(self, run_id: str, token: int) -> RunInfo | None:
        """The run, if `token` is still its current one (None: stale). An invocation's
        outcome reads it first.

        `row_lock_clause` holds the run's row until commit where the dialect lets a lease
        change meanwhile.
        """
        read, found = self._read_ahead(run_id, token, None)
        if read:
            return None if found is None else found[0]
        row = self._one(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ? AND token = ?"
                        f" AND status IN {LIVE}" + self.row_lock_clause, (run_id, token))
        return None if row is None else run_row(row)


    def fence_and_get(self, run_id: str, token: int, op_id: str) -> Fenced | None:
        """None if `token` is stale, else whether a cancel was requested, whether the run is
        paused (its invocation in flight may still checkpoint), and the operation `op_id` as
        it stands, in one statement: a step's checkpoint, the commonest write, then reads once
        (one round trip on a server), or not at all if its fence was read ahead (`ahead`). A
        read, not a write, to keep the step path to the rows it must write; the row lock as in
        `fenced_run`."""
        read, found = self._read_ahead(run_id, token, op_id)
        if read:
            return None if found is None else (
                found[0].cancel_requested, found[0].status is ExecutionStatus.PAUSED, found[1])
        row = self._one(
            f"SELECT f.cancel_requested, f.run_status, {OP_COLUMNS} FROM (SELECT run_id,"
            " cancel_requested, status AS run_status FROM runs WHERE run_id = ? AND token = ?"
            f" AND status IN {LIVE}{self.row_lock_clause}) f LEFT JOIN operations o"
            " ON o.run_id = f.run_id AND o.op_id = ?", (run_id, token, op_id))
        if row is None:
            return None
        return (bool(row[0]), row[1] == "PAUSED",
                None if row[2] is None else operation_row(row[2:]))

    def read_fences(self, fences: Sequence[Fence]) -> list[Ahead | None]:
        """For each of these fences (of distinct runs), None if its token is stale, else its
        run and operation as they stand, in one statement, with the row locks of
        `fence_and_get`. A run's input only for a `fenced_run` fence (op_id None): what a
        checkpoint's fence needs of a run is a few columns, where an input may be large."""
        keys, params = self.fence_keys(fences)
        columns = run_columns("r.", input_if="k.op_id IS NULL")
        rows = self._rows(
            f"WITH k (run_id, token, op_id) AS ({keys}) SELECT {columns},"
            f" o.{OP_COLUMNS.replace(', ', ', o.')} FROM k"
            " JOIN runs r ON r.run_id = k.run_id AND r.token = k.token"
            f" AND r.status IN {LIVE} LEFT JOIN operations o ON o.run_id = k.run_id"
            f" AND o.op_id = k.op_id{self.fence_lock_clause}", params)
        width = len(RUN_COLUMNS.split(", "))
        found = {row[0]: (run_row(row[:width]),
                          None if row[width] is None else operation_row(row[width:]))
                 for row in rows}
        return [found.get(fence.run_id) for fence in fences]

    def fence_keys(self, fences: Sequence[Fence]) -> tuple[str, list[Any]]:
        """A query of the rows (run_id, token, op_id) of `fences`, and its parameters."""
        return (" UNION ALL ".join(["SELECT ?, ?, ?"] * len(fences)),
                [v for f in fences for v in (f.run_id, f.token, f.op_id)])

    def lease(self, run_ids: Sequence[str], owner: str,
              until: float) -> list[tuple[RunInfo, int]]:
        """Take the lease on each run, bumping its fencing token; returns each run as it now
        stands with its new token, in the order of `run_ids`. One statement for them all: a
        claim when many runs fall due at once takes a worker's every free slot."""
        if not run_ids:
            return []
        leased = {run.run_id: (run, token) for run, token in self._take_leases(
            f"run_id IN ({marks(run_ids)})", run_ids, owner, until)}
        return [leased[run_id] for run_id in run_ids]

    def _take_leases(self, where: str, params: Sequence[Any], owner: str,
                     until: float) -> list[tuple[RunInfo, int]]:
        """Lease the runs `where` selects to `owner`, bumping each one's fencing token; each
        run as it now stands, with its new token, in no particular order."""
        rows = self._rows(
            "UPDATE runs SET lease_owner = ?, lease_expires = ?, token = token + 1,"
            f" ready_at = NULL WHERE {where} RETURNING {RUN_COLUMNS}, token",
            (owner, until, *params))
        return [(run_row(row), int(row[-1])) for row in rows]

    def lease_of(self, run_id: str) -> tuple[str | None, float | None]:
        """Who holds the run's lease and until when (None, None: nobody)."""
        row = self._one("SELECT lease_owner, lease_expires FROM runs WHERE run_id = ?", (run_id,))
        return (None, None) if row is None else (row[0], row[1])

    def lease_owners(self, prefix: str) -> list[str]:
        """Owners, named starting with `prefix`, that hold leases on running runs."""
        return [r[0] for r in self._rows(
            "SELECT DISTINCT lease_owner FROM runs WHERE status = 'RUNNING'"
            " AND lease_owner LIKE ?", (prefix.replace("%", "") + "%",))]

    def run_counts(self) -> list[tuple[str, str, int]]:
        """(workflow, status, runs) for every pair that has runs: what metrics show. Reads the
        whole table; a scrape every few seconds is the use it is made for."""
        return [(r[0], r[1], int(r[2])) for r in self._rows(
            "SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status")]

    def timers_due(self, now: float, pending: str) -> int:
        """Operations in status `pending` whose due time has come, in runs no worker holds:
        timers that fell due and are not yet taken up. Walks runs_ready, so it costs what is
        due, not what is stored."""
        return int(self._one(
            "SELECT count(*) FROM runs r JOIN operations o ON o.run_id = r.run_id"
            " WHERE r.status = 'RUNNING' AND r.lease_owner IS NULL AND r.ready_at <= ?"
            " AND o.status = ? AND o.due_at <= ?", (now, pending, now))[0])

    def expired_leases(self, now: float, limit: int, workflows: Sequence[str],
                       queued: Sequence[str]) -> dict[str, tuple[str, float]]:
        """The runs `claim` would take from a holder that stopped renewing its lease, with
        that holder and when its lease ran out: who is being taken over from, which the claim's
        UPDATE cannot tell once it has rewritten the lease. One probe of runs_lease that finds
        nothing when no lease ran out."""
        where, params = workflow_filter(workflows, queued)
        return {r[0]: (r[1], r[2]) for r in self._rows(
            "SELECT run_id, lease_owner, lease_expires FROM runs WHERE lease_expires < ?"
            f" AND lease_owner IS NOT NULL AND status = 'RUNNING'{where}"
            " ORDER BY lease_expires LIMIT ?",
            (now, *params, limit))}

    def expire_leases(self, owner: str, now: float) -> dict[str, float]:
        """End `owner`'s live leases now, as if they had run out; returns when each would have
        run out, which this overwrites and the takeover's history needs. The owner goes with
        them: `expired_leases` then does not name it, so the claim that takes these runs does
        not record their loss again (`machine.take_over` has). A PAUSED run's lease is left to
        run out, as `expired_leases` leaves it: nobody takes a paused run over, and the claim
        after its resume records the loss."""
        held = {r[0]: float(r[1]) for r in self._rows(
            "SELECT run_id, lease_expires FROM runs WHERE lease_owner = ? AND lease_expires > ?"
            " AND status = 'RUNNING'", (owner, now))}
        self._exec("UPDATE runs SET lease_expires = ?, lease_owner = NULL WHERE lease_owner = ?"
                   " AND lease_expires > ? AND status = 'RUNNING'", (now, owner, now))
        return held

    def register_worker(self, owner: str, lock_key: int, now: float) -> None:
        """Name `owner` as a worker whose session holds the presence lock `lock_key` (see
        `gone_workers`); taken again with a new key after its session was replaced."""
        self._exec("INSERT INTO workers (owner, lock_key, started_at) VALUES (?, ?, ?)"
                   " ON CONFLICT (owner) DO UPDATE SET lock_key = excluded.lock_key",
                   (owner, lock_key, now))

    def gone_workers(self, other_than: str) -> list[str]:
        """Registered workers (but `other_than`) whose sessions have ended: their processes
        died, or lost the database, and hold their runs' leases for nothing."""
        return [r[0] for r in self._rows(
            f"SELECT owner FROM workers AS w WHERE owner <> ?{self.session_gone_clause}",
            (other_than,))]

    def forget_worker(self, owner: str, *, gone: bool = True) -> bool:
        """Delete `owner`'s registration, if its session is still gone (asked again here, in
        the transaction that takes its runs over: it may have come back since it was seen
        gone) or, `gone=False`, whatever its session; whether there was one to delete."""
        clause = self.session_gone_clause if gone else ""
        return bool(self._rows(
            f"DELETE FROM workers AS w WHERE owner = ?{clause} RETURNING owner", (owner,)))

    def extend_leases(self, owner: str, run_ids: Sequence[str], until: float) -> set[str]:
        """Renew `owner`'s leases on these runs until `until`; returns the runs renewed (not
        those another owner took meanwhile)."""
        if not run_ids:
            return set()
        return {r[0] for r in self._rows(
            "UPDATE runs SET lease_expires = ? WHERE lease_owner = ?"
            f" AND run_id IN ({marks(run_ids)}) RETURNING run_id", (until, owner, *run_ids))}

    def claim(self, now: float, limit: int, workflows: Sequence[str], queued: Sequence[str],
              owner: str, until: float) -> list[tuple[RunInfo, int]]:
        """Lease up to `limit` runs that have work due and no live lease, or whose lease holder
        stopped renewing it, as `lease` does; in one statement. Runs of the `queued` workflows
        count only once a queue admitted them (`admit`). Returned oldest run first.

        Runs orphaned by a dead worker are chosen first, the longest expired first; then runs
        that are due, the earliest first. Each kind is its own sub-select that walks its index
        in order (runs_lease, runs_ready) and stops after the rows it takes, where one query
        over both kinds with an OR has to collect and sort every due run on every claim, which
        makes claiming 100,000 runs that fell due at once quadratic. The kinds are disjoint: a
        lease sets lease_owner and lease_expires together and every release clears both.
        """
        if limit <= 0:
            return []
        where, params = workflow_filter(workflows, queued)
        lock = self.claim_lock_clause
        leased = self._take_leases(self.run_id_in.format(
            "SELECT run_id FROM (SELECT run_id FROM runs WHERE lease_expires < ?"
            f" AND status = 'RUNNING'{where} ORDER BY lease_expires LIMIT ?{lock}) orphans"
            " UNION ALL SELECT run_id FROM (SELECT run_id FROM runs WHERE ready_at <= ?"
            f" AND lease_owner IS NULL AND status = 'RUNNING'{where} ORDER BY ready_at"
            f" LIMIT ?{lock}) due LIMIT ?"),
            (now, *params, limit, now, *params, limit, limit), owner, until)
        return sorted(leased, key=lambda claimed: (claimed[0].created_at, claimed[0].run_id))


    def next_due(self, workflows: Sequence[str], queued: Sequence[str] = ()) -> float | None:
        """When the earliest of these runs has work; `queued` as in `claim`.

        The first row of each index `claim` walks, in one round trip. ORDER BY ... LIMIT 1
        rather than min(), which means the same but which PostgreSQL may compute by reading
        every due run while a table just filled has no statistics yet.
        """
        where, params = workflow_filter(workflows, queued)
        row = self._one(
            "SELECT (SELECT ready_at FROM runs WHERE ready_at IS NOT NULL AND lease_owner IS NULL"
            f" AND status = 'RUNNING'{where} ORDER BY ready_at LIMIT 1),"
            " (SELECT lease_expires FROM runs WHERE lease_expires IS NOT NULL"
            f" AND status = 'RUNNING'{where} ORDER BY lease_expires LIMIT 1)", (*params, *params))
        return min((t for t in row if t is not None), default=None)

    def list_runs(self, filter: RunFilter, limit: int, offset: int = 0,
                  after: Cursor | None = None, preview: int | None = None) -> list[RunInfo]:
        """Newest first (then by id), those `filter` selects; from after `after` on, or
        skipping `offset`. `preview`: input and result hold only their first `preview + 1`
        characters (`run_columns`), for showing, not decoding."""
        clauses, params = _filtered(filter)
        for condition in filter.conditions:
            sql, values = self.matching(condition)
            clauses.append(sql)
            params += values
        if after is not None:
            clauses.append("(created_at < ? OR (created_at = ? AND run_id > ?))")
            params += [after.created_at, after.created_at, after.run_id]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._rows(
            f"SELECT {run_columns(preview=preview)} FROM runs{where}"
            " ORDER BY created_at DESC, run_id"
            " LIMIT ? OFFSET ?", (*params, limit, offset))
        return [run_row(r) for r in rows]

    def changed_runs(self, run_ids: Sequence[str], since: float,
                     preview: int | None = None) -> list[RunInfo]:
        """Those of these runs updated at or after `since`: what a listing that shows them
        reads to keep them current, by primary key, however many runs there are."""
        if not run_ids:
            return []
        return [run_row(r) for r in self._rows(
            f"SELECT {run_columns(preview=preview)} FROM runs WHERE run_id IN"
            f" ({marks(run_ids)}) AND updated_at >= ?", (*run_ids, since))]

    def child_counts(self, run_ids: Sequence[str]) -> dict[str, int]:
        """How many runs each of these started (those that started none are left out)."""
        if not run_ids:
            return {}
        return {r[0]: int(r[1]) for r in self._rows(
            "SELECT parent_run_id, count(*) FROM runs WHERE parent_run_id IN"
            f" ({marks(run_ids)}) GROUP BY parent_run_id", run_ids)}

    def restart_run(self, run_id: str, input: str | None, now: float) -> int:
        """Clear the run's operations, history and kept log lines and start it over with
        `input`; buffered signals and published events stay. Returns the new generation
        number."""
        self._exec("DELETE FROM operations WHERE run_id = ?", (run_id,))
        self._exec("DELETE FROM run_logs WHERE run_id = ?", (run_id,))
        # Keep the newest event (the invocation that continued) so history ids never go back.
        self._exec("DELETE FROM history WHERE run_id = ? AND id < (SELECT max(id) FROM history"
                   " WHERE run_id = ?)", (run_id, run_id))
        row = self._one(
            "UPDATE runs SET input = ?, ready_at = ?, updated_at = ?, generation = generation + 1"
            " WHERE run_id = ? RETURNING generation", (input, now, now, run_id))
        return int(row[0])

    def generation(self, run_id: str) -> int:
        """How many times the run continued as new (0: never)."""
        row = self._one("SELECT generation FROM runs WHERE run_id = ?", (run_id,))
        return 0 if row is None else int(row[0])

    def parent_of(self, run_id: str) -> tuple[str, str] | None:
        row = self._one("SELECT parent_run_id, parent_op_id FROM runs WHERE run_id = ?",
                        (run_id,))
        return None if row is None or row[0] is None else (row[0], row[1])

    def ended_runs(self, run_ids: Sequence[str]) -> list[RunInfo]:
        """Those of these runs that have ended, in one statement by primary key: the child
        runs whose end a parent may still have to take (`machine._deliver_held_reports`)."""
        if not run_ids:
            return []
        return [run_row(r) for r in self._rows(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id IN ({marks(run_ids)})"
            f" AND status NOT IN {LIVE}", run_ids)]

    def live_children(self, run_id: str) -> list[str]:
        return [r[0] for r in self._rows(
            f"SELECT run_id FROM runs WHERE parent_run_id = ? AND status IN {LIVE}", (run_id,))]

    def parked_runs(self, workflows: Sequence[str]) -> list[str]:
        where, params = workflow_filter(workflows)
        return [r[0] for r in self._rows(
            f"SELECT run_id FROM runs WHERE status = 'RUNNING' AND parked IS NOT NULL{where}",
            params)]


_DERIVED_SQL = {"PARKED": "status = 'RUNNING' AND parked IS NOT NULL"}
"""The SQL of each of model.listing.DERIVED_STATUSES."""


def _filtered(f: RunFilter) -> tuple[list[str], list[Any]]:
    """The WHERE clauses, ANDed, that select the runs `f` asks for, and their parameters;
    but for its attribute conditions (`Attributes.matching`)."""
    clauses: list[str] = []
    params: list[Any] = []
    if f.status in _DERIVED_SQL:
        clauses.append(_DERIVED_SQL[f.status])
    elif f.status:
        clause, values = status_clause(f.status)
        clauses.append(clause)
        params += values
    for column, value in (("workflow = ?", f.workflow), ("created_at >= ?", f.since),
                          ("created_at < ?", f.until), ("parent_run_id = ?", f.parent)):
        if value is not None:
            clauses.append(column)
            params.append(value)
    if f.roots:
        clauses.append("parent_run_id IS NULL")
    if f.search:
        clauses.append("(lower(run_id) LIKE ? ESCAPE '!' OR lower(workflow) LIKE ? ESCAPE '!')")
        params += [contains(f.search)] * 2
    return clauses, params
