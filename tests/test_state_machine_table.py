"""The operation state machine as a table: the specification `durable.engine.machine` implements.

For every operation type, action and prior status of the operation (or no operation yet), one
checkpoint of that update goes through the real engine (`machine.checkpoint`, in a write of a
real SQLite store, with the token of a claimed run), and the operation must come out in the
status the table gives, or the checkpoint must be refused (`InvalidCheckpoint`) and change
nothing. The prior operation is written straight to the store, so the table also pins what the
engine answers for states it never produces itself (an EXECUTION operation, a READY WAIT).

The cases are generated from the enums (durable/model.py), not from the table: a new
OperationType, OperationAction or OperationStatus member fails here until the table has its
entries, and a changed transition fails the entry that pins it.

`VARIANTS` pins the transitions that depend on the update's fields rather than on its type,
action and prior status (a zero delay, a buffered signal, a detached child, ...).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from durable.engine import machine
from durable.engine.machine import InvalidCheckpoint
from durable.model import ChildStart, ErrorObject, Operation, OperationUpdate, SubType
from durable.model import OperationAction as A
from durable.model import OperationStatus as S
from durable.model import OperationType as T
from durable.store import Store, open_store

T0 = 1_000_000.0  # the engine takes `now` as an argument: the table's clock stands still
WF = "table_wf"
CHILD_WF = "table_child_wf"  # not claimed with WF: a child run started by a case stays out


class Refused:
    """The engine refuses the checkpoint with InvalidCheckpoint; the operation stays as it was."""

    def __repr__(self) -> str:
        return "REFUSED"


X = REFUSED = Refused()
Outcome = S | Refused

# -- the specification ---------------------------------------------------------------------------

ABSENT = None  # no operation with the update's id exists yet
PRIORS: tuple[S | None, ...] = (
    ABSENT, S.STARTED, S.PENDING, S.READY, S.SUCCEEDED, S.FAILED, S.CANCELLED, S.TIMED_OUT,
    S.STOPPED)
STEP, WAIT, CALLBACK, INVOKE, CONTEXT, EXECUTION = (
    T.STEP, T.WAIT, T.CALLBACK, T.CHAINED_INVOKE, T.CONTEXT, T.EXECUTION)
START, SUCCEED, FAIL, RETRY, CANCEL, HEARTBEAT = (
    A.START, A.SUCCEED, A.FAIL, A.RETRY, A.CANCEL, A.HEARTBEAT)
STARTED, PENDING, SUCCEEDED, FAILED, CANCELLED = (
    S.STARTED, S.PENDING, S.SUCCEEDED, S.FAILED, S.CANCELLED)

# What the operation is after one update of (type, action), for each prior status in the order
# of PRIORS; X: refused. Read across a row for what an action does from each state, down a
# column for what a state accepts. Final states refuse everything, except that cancelling a
# CANCELLED operation is a no-op (the engine may have cancelled it already, when the run's
# cancel request came in). A STEP START from STARTED begins the attempt after one whose
# invocation was lost (an SDK starts an attempt once per invocation; the fence keeps out
# stale ones). A STEP HEARTBEAT reports on a running attempt: STARTED only.
TABLE: dict[tuple[T, A], tuple[Outcome, ...]] = {
    # prior:               absent     STARTED    PENDING    READY      SU FA CANCELLED  TO ST
    # (SU, FA, TO, ST: SUCCEEDED, FAILED, TIMED_OUT, STOPPED; X: refused)
    (STEP, START):        (STARTED,   STARTED,   X,         STARTED,   X, X, X,         X, X),
    (STEP, SUCCEED):      (SUCCEEDED, SUCCEEDED, SUCCEEDED, SUCCEEDED, X, X, X,         X, X),
    (STEP, FAIL):         (FAILED,    FAILED,    FAILED,    FAILED,    X, X, X,         X, X),
    (STEP, RETRY):        (PENDING,   PENDING,   PENDING,   PENDING,   X, X, X,         X, X),
    (STEP, CANCEL):       (CANCELLED, CANCELLED, CANCELLED, CANCELLED, X, X, CANCELLED, X, X),
    (STEP, HEARTBEAT):    (X,         STARTED,   X,         X,         X, X, X,         X, X),

    (WAIT, START):        (STARTED,   X,         X,         X,         X, X, X,         X, X),
    (WAIT, SUCCEED):      (X,         X,         X,         X,         X, X, X,         X, X),
    (WAIT, FAIL):         (X,         X,         X,         X,         X, X, X,         X, X),
    (WAIT, RETRY):        (X,         X,         X,         X,         X, X, X,         X, X),
    (WAIT, CANCEL):       (CANCELLED, CANCELLED, CANCELLED, CANCELLED, X, X, CANCELLED, X, X),
    (WAIT, HEARTBEAT):    (X,         X,         X,         X,         X, X, X,         X, X),

    (CALLBACK, START):    (STARTED,   X,         X,         X,         X, X, X,         X, X),
    (CALLBACK, SUCCEED):  (X,         X,         X,         X,         X, X, X,         X, X),
    (CALLBACK, FAIL):     (X,         X,         X,         X,         X, X, X,         X, X),
    (CALLBACK, RETRY):    (X,         X,         X,         X,         X, X, X,         X, X),
    (CALLBACK, CANCEL):   (CANCELLED, CANCELLED, CANCELLED, CANCELLED, X, X, CANCELLED, X, X),
    (CALLBACK, HEARTBEAT):(X,         X,         X,         X,         X, X, X,         X, X),

    (INVOKE, START):      (STARTED,   X,         X,         X,         X, X, X,         X, X),
    (INVOKE, SUCCEED):    (X,         X,         X,         X,         X, X, X,         X, X),
    (INVOKE, FAIL):       (X,         X,         X,         X,         X, X, X,         X, X),
    (INVOKE, RETRY):      (X,         X,         X,         X,         X, X, X,         X, X),
    (INVOKE, CANCEL):     (CANCELLED, CANCELLED, CANCELLED, CANCELLED, X, X, CANCELLED, X, X),
    (INVOKE, HEARTBEAT):  (X,         X,         X,         X,         X, X, X,         X, X),

    (CONTEXT, START):     (STARTED,   STARTED,   STARTED,   STARTED,   X, X, X,         X, X),
    (CONTEXT, SUCCEED):   (SUCCEEDED, SUCCEEDED, SUCCEEDED, SUCCEEDED, X, X, X,         X, X),
    (CONTEXT, FAIL):      (FAILED,    FAILED,    FAILED,    FAILED,    X, X, X,         X, X),
    (CONTEXT, RETRY):     (X,         X,         X,         X,         X, X, X,         X, X),
    (CONTEXT, CANCEL):    (X,         X,         X,         X,         X, X, CANCELLED, X, X),
    (CONTEXT, HEARTBEAT): (X,         X,         X,         X,         X, X, X,         X, X),

    (EXECUTION, START):   (X,         X,         X,         X,         X, X, X,         X, X),
    (EXECUTION, SUCCEED): (X,         X,         X,         X,         X, X, X,         X, X),
    (EXECUTION, FAIL):    (X,         X,         X,         X,         X, X, X,         X, X),
    (EXECUTION, RETRY):   (X,         X,         X,         X,         X, X, X,         X, X),
    (EXECUTION, CANCEL):  (X,         X,         X,         X,         X, X, CANCELLED, X, X),
    (EXECUTION, HEARTBEAT):(X,         X,         X,         X,         X, X, X,         X, X),
}


def expected(type: T, action: A, prior: S | None) -> Outcome | None:
    """The table's entry for the case, or None if it has none."""
    row = TABLE.get((type, action))
    if row is None or prior not in PRIORS or len(row) != len(PRIORS):
        return None
    return row[PRIORS.index(prior)]


# -- how a case is set up ------------------------------------------------------------------------

SUB_TYPE = {T.STEP: SubType.STEP, T.WAIT: SubType.SLEEP, T.CALLBACK: SubType.CALLBACK,
            T.CHAINED_INVOKE: SubType.INVOKE, T.CONTEXT: SubType.PARALLEL}
ERROR = ErrorObject("ValueError", "no")


def update(type: T, action: A, op_id: str, run_id: str, **fields: object) -> OperationUpdate:
    """The update an SDK would send for (type, action) in run `run_id`, with the fields that
    action reads: a result to SUCCEED, an error to FAIL, an error and a delay to RETRY, what a
    START needs (a CHAINED_INVOKE the child run to create)."""
    by_action: dict[A, dict[str, object]] = {
        A.SUCCEED: {"payload": '"ok"'}, A.FAIL: {"error": ERROR},
        A.RETRY: {"error": ERROR, "delay": 30.0}, A.HEARTBEAT: {"payload": "[1]"}}
    starts: dict[T, dict[str, object]] = {
        T.WAIT: {"delay": 60.0}, T.CALLBACK: {"timeout": 60.0},
        T.CHAINED_INVOKE: {"child": ChildStart(f"{run_id}-child", CHILD_WF, None)}}
    values = starts.get(type, {}) if action is A.START else by_action.get(action, {})
    return OperationUpdate(op_id, type, action, **{  # type: ignore[arg-type]
        "name": op_id, "sub_type": SUB_TYPE.get(type), **values, **fields})


def prior_operation(type: T, status: S, op_id: str, run_id: str) -> Operation:
    """An operation of `type` in `status` in run `run_id`, as the engine would have stored it
    (callback ids are unique across runs)."""
    waiting = status in (S.STARTED, S.PENDING)
    return Operation(
        op_id, type, status, name=op_id, sub_type=SUB_TYPE.get(type), attempt=1,
        started_at=T0 - 10, ended_at=T0 - 5 if status.is_final else None,
        due_at=T0 + 3600 if waiting and type is not T.CONTEXT else None,
        callback_id=f"{run_id}-{op_id}-cb" if type is T.CALLBACK else None,
        child_run_id=f"{run_id}-child" if type is T.CHAINED_INVOKE else None)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One SQLite store for the module; each case has a run of its own in it."""
    s = open_store(f"sqlite:///{tmp_path_factory.mktemp('table') / 'durable.db'}")
    yield s
    s.close()


@dataclass
class Case:
    store: Store
    run_id: str
    token: int

    def put(self, op: Operation) -> None:
        self.store.write_sync(lambda tx: tx.put_operation(self.run_id, op))

    def get(self, op_id: str) -> Operation | None:
        return self.store.read(lambda tx: tx.get_operation(self.run_id, op_id))

    def checkpoint(self, u: OperationUpdate) -> Operation:
        (op,) = self.store.write_sync(lambda tx: machine.checkpoint(
            tx, self.run_id, self.token, [u], T0)).operations
        return op


def claimed_run(store: Store, run_id: str) -> Case:
    """A new run, claimed as a worker claims it: its token is the one checkpoints carry."""
    store.write_sync(lambda tx: machine.start_run(tx, run_id, WF, None, T0))
    claimed = store.write_sync(lambda tx: machine.claim(tx, "table", T0, 1, 60.0, [WF]))
    assert [c.invocation.run_id for c in claimed] == [run_id]
    return Case(store, run_id, claimed[0].token)


def assert_refused(case: Case, u: OperationUpdate, before: Operation | None) -> None:
    with pytest.raises(InvalidCheckpoint):
        case.checkpoint(u)
    assert case.get(u.id) == before, "a refused checkpoint changed the operation"


# -- the table, case by case -----------------------------------------------------------------------

Combination = tuple[T, A, S | None]  # (type, action, prior status or ABSENT)
CASES: list[Combination] = list(itertools.product(T, A, (ABSENT, *S)))  # from the enums


def case_id(case: Combination) -> str:
    type, action, prior = case
    return f"{type}-{action}-from-{prior or 'ABSENT'}-{expected(type, action, prior)}"


@pytest.mark.parametrize("case", CASES, ids=map(case_id, CASES))
def test_an_update_leaves_its_operation_as_the_table_says_or_is_refused(
        store: Store, case: Combination) -> None:
    type, action, prior = case
    outcome = expected(type, action, prior)
    assert outcome is not None, (
        f"the table has no entry for {type} {action} from {prior or 'no operation'}: "
        "add the row or column (TABLE, PRIORS) for the new enum member")
    run = claimed_run(store, case_id(case))
    before = None if prior is None else prior_operation(type, prior, "op", run.run_id)
    if before is not None:
        run.put(before)
    u = update(type, action, "op", run.run_id)

    if isinstance(outcome, Refused):
        assert_refused(run, u, before)
        return
    answered = run.checkpoint(u)
    assert (answered.type, answered.status) == (type, outcome)
    assert run.get("op") == answered  # what the checkpoint answered is what it stored


def test_the_table_has_an_entry_for_every_case_and_nothing_else() -> None:
    assert set(PRIORS) == {ABSENT, *S} and len(PRIORS) == len(S) + 1
    assert set(TABLE) == set(itertools.product(T, A))  # a row for each (type, action)
    assert all(len(row) == len(PRIORS) for row in TABLE.values())


# -- transitions that depend on the update's fields ------------------------------------------------

@dataclass(frozen=True)
class Variant:
    prior: Operation | None
    update: OperationUpdate
    outcome: Outcome
    signal: str | None = None  # a signal buffered for the run before the checkpoint


OP = "op"


def changed(type: T, action: A, **fields: object) -> OperationUpdate:
    """The table's update for (type, action), with `fields` changed."""
    return update(type, action, OP, "variant", **fields)


VARIANTS = {
    "a_wait_of_no_time_succeeds_at_once":
        Variant(None, changed(T.WAIT, A.START, delay=0.0), SUCCEEDED),
    "a_wait_of_negative_time_succeeds_at_once":
        Variant(None, changed(T.WAIT, A.START, delay=-5.0), SUCCEEDED),
    "a_signal_wait_with_no_signal_buffered_waits":
        Variant(None, changed(T.CALLBACK, A.START, sub_type=SubType.SIGNAL), STARTED),
    "a_signal_wait_takes_a_buffered_signal_at_once":
        Variant(None, changed(T.CALLBACK, A.START, sub_type=SubType.SIGNAL), SUCCEEDED,
                signal=OP),
    "a_detached_child_start_succeeds_once_the_child_exists":
        Variant(None, changed(T.CHAINED_INVOKE, A.START, sub_type=SubType.START_CHILD),
                SUCCEEDED),
    "an_invoke_whose_target_could_not_be_resolved_fails":
        Variant(None, changed(T.CHAINED_INVOKE, A.START, child=None, error=ERROR), FAILED),
    "an_invoke_that_names_no_child_run_is_refused":
        Variant(None, changed(T.CHAINED_INVOKE, A.START, child=None), REFUSED),
    "an_update_of_another_type_than_the_operation_is_refused":
        Variant(prior_operation(T.STEP, S.STARTED, OP, "variant"), changed(T.WAIT, A.CANCEL),
                REFUSED),
    "cancelling_a_cancelled_operation_is_a_no_op_whatever_the_updates_type":
        Variant(prior_operation(T.WAIT, S.CANCELLED, OP, "variant"), changed(T.STEP, A.CANCEL),
                CANCELLED),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_a_variant_of_an_update_leaves_its_operation_as_pinned(store: Store, name: str) -> None:
    variant = VARIANTS[name]
    run = claimed_run(store, f"variant-{name}")
    if variant.prior is not None:
        run.put(variant.prior)
    if variant.signal is not None:
        store.write_sync(lambda tx: machine.signal(tx, run.run_id, OP, '"sent"', T0))
    if isinstance(variant.outcome, Refused):
        assert_refused(run, variant.update, variant.prior)
        return
    answered = run.checkpoint(variant.update)
    assert answered.status == variant.outcome
    assert run.get(OP) == answered


# -- attempts lost with their invocation -----------------------------------------------------------

LOST_CASES = {
    # update: (attempt it is counted as, whether attempt 1 is recorded lost)
    "a_start_after_a_lost_attempt_begins_the_next":
        (update(T.STEP, A.START, OP, "lost", started_at=T0), 2, True),
    "an_outcome_begun_after_the_lost_attempt_is_the_next_attempts":
        (update(T.STEP, A.SUCCEED, OP, "lost", started_at=T0), 2, True),
    "an_outcome_of_the_started_attempt_itself_is_that_attempts":
        (update(T.STEP, A.SUCCEED, OP, "lost", started_at=T0 - 10), 1, False),
    "an_outcome_without_a_begin_time_is_the_started_attempts":
        (update(T.STEP, A.RETRY, OP, "lost"), 1, False),
}


@pytest.mark.parametrize("name", LOST_CASES)
def test_an_attempt_begun_over_a_started_one_counts_that_one_lost(store: Store, name: str) -> None:
    u, attempt, lost = LOST_CASES[name]
    run = claimed_run(store, f"lost-{name}")
    run.put(prior_operation(T.STEP, S.STARTED, OP, run.run_id))
    assert run.checkpoint(u).attempt == attempt
    failed = [e.details for e in store.read(lambda tx: tx.history(run.run_id))
              if e.type == "StepFailed"]
    lost_failures = [d for d in failed if (d.get("error") or {}).get("type") == "Worker.Lost"]
    assert [d["attempt"] for d in lost_failures] == ([1] if lost else [])
