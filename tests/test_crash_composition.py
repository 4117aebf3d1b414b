"""Crashes in the middle of composition: parallel branches, maps under a concurrency bound or a
completion policy, child workflows, and the cancellation of a parent.

Real worker processes (tests/apps/crash_app.py, version "composition"; see tests/crashkit.py)
SIGKILL themselves at a crash point, or are killed by the test, while branches, items or children
are half done. A fresh worker then takes over. What was checkpointed at the kill never runs again;
only the step bodies in flight at the kill run a second time; and the run ends as it would have
without the crash.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from durable import ExecutionStatus
from durable.model import (
    ABANDONED,
    Operation,
    OperationStatus,
    OperationType,
    SubType,
    operation_id,
)
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import DEADLINE, Proc, wait_until

pytestmark = pytest.mark.crash

LEASE = 0.5
REFUSALS = ("stale", "refused:")  # checkpoints the engine refused, as the harness logs them
HARNESS_EVENTS = ("crash:", *REFUSALS)  # what the harness logs beside step effects


def _worker(lab: CrashLab, *crash_at: str) -> Proc:
    return lab.worker(lease=LEASE, version="composition", crash_at=crash_at)


@dataclass(frozen=True)
class AtKill:
    """What a kill left: the effects so far, and the steps (by effect name) whose result had
    been checkpointed."""

    effects: Counter[str]
    done: frozenset[str]

    @property
    def in_flight(self) -> set[str]:
        """Steps whose body had its effect but whose result was not checkpointed."""
        return {step for step, n in self.effects.items()
                if n and step not in self.done and not step.startswith(HARNESS_EVENTS)}


def _steps_done(lab: CrashLab, *run_ids: str) -> frozenset[str]:
    """Names of the SUCCEEDED steps of these runs (a uniquely named step's name is its effect)."""
    return frozenset(str(op.name) for run_id in run_ids for op in lab.client.operations(run_id)
                     if op.type is OperationType.STEP and op.status is OperationStatus.SUCCEEDED)


def _assert_only_in_flight_steps_ran_again(lab: CrashLab, at_kill: AtKill,
                                           steps: Iterable[str]) -> None:
    """Every step ran once after the kill unless its result was checkpointed before: a step
    done at the kill never ran again, one in flight ran twice, any other once."""
    fx = lab.effects()
    for step in steps:
        expected = at_kill.effects[step] + (step not in at_kill.done)
        assert fx[step] == expected, (step, fx.counts, at_kill)
    refused = [e for e, _ in fx.lines if e.startswith(REFUSALS)]
    assert refused == [], refused


# -- parallel branches ---------------------------------------------------------------------------

BRANCHES, STEPS = 5, 4


def _fanout_ids() -> dict[str, str]:
    """The operation id of every step of crash.fanout, by name: derived from the gather's id,
    the branch's index and the step's position, never from the order branches finished in."""
    gather = operation_id(None, 1)
    return {app.fanout_step(b, s): operation_id(operation_id(gather, b + 1), s + 1)
            for b in range(BRANCHES) for s in range(STEPS)}


def _assert_each_operation_recorded_once(lab: CrashLab, run_id: str) -> None:
    ops = lab.client.operations(run_id)
    assert len({op.id for op in ops}) == len(ops)
    ended = Counter(e.operation_id for e in lab.history(run_id)
                    if e.type in ("StepSucceeded", "ContextSucceeded"))
    started = Counter(e.operation_id for e in lab.history(run_id, "ContextStarted"))
    for op in ops:
        assert ended[op.id] == 1, (op, ended[op.id])
        assert started[op.id] == int(op.type is OperationType.CONTEXT), (op, started[op.id])


def test_gather_killed_with_branches_half_done_reruns_only_the_steps_in_flight(
        crash_lab: CrashLab) -> None:
    lab = crash_lab
    run_id = lab.start(app.fanout, [BRANCHES, STEPS], id="fanout")
    killed_in = app.fanout_step(2, 2)
    lab.wait_crashed(_worker(lab, f"{killed_in}:inside"))
    at_kill = AtKill(lab.effects().counts, _steps_done(lab, run_id))
    assert killed_in in at_kill.in_flight
    assert 0 < len(at_kill.done) < BRANCHES * STEPS

    _worker(lab)
    lab.finish(run_id)

    assert lab.result(run_id) == [f"b{b}" + "".join(f">{s}" for s in range(STEPS))
                                  for b in range(BRANCHES)]
    ids = _fanout_ids()
    _assert_only_in_flight_steps_ran_again(lab, at_kill, ids)
    steps = {name: op.id for name, op in lab.operations(run_id).items()
             if op.type is OperationType.STEP}
    assert steps == ids
    _assert_each_operation_recorded_once(lab, run_id)


# -- a map under a concurrency bound -------------------------------------------------------------

ITEMS = 50


def _item_step_ids() -> dict[str, str]:
    """The operation id of every item's step in crash.bounded_map, by the item's effect name."""
    mapped = operation_id(None, 1)
    return {f"m{i}": operation_id(operation_id(mapped, i + 1), 1) for i in range(ITEMS)}


def _peak_overlap(spans: list[dict[str, Any]], died_at: dict[int, float]) -> int:
    """The most item bodies running at once. A body that never noted its end ran until its
    process was seen dead (only a killed process may leave one)."""
    ends = {(s["pid"], s["item"]): s["at"] for s in spans if s["edge"] == "end"}
    edges: list[tuple[float, int]] = []
    for s in spans:
        if s["edge"] == "start":
            end = ends.get((s["pid"], s["item"]))
            edges += [(s["at"], 1), (died_at[s["pid"]] if end is None else end, -1)]
    running = peak = 0
    for _, change in sorted(edges):  # at equal times an end (-1) sorts before a start
        running += change
        peak = max(peak, running)
    return peak


def test_map_killed_midway_keeps_its_concurrency_bound_and_never_reruns_done_items(
        crash_lab: CrashLab) -> None:
    lab = crash_lab
    run_id = lab.start(app.bounded_map, ITEMS, id="map")
    w1 = _worker(lab, f"m{ITEMS // 2}:inside")
    died = lab.wait_crashed(w1)
    ids = _item_step_ids()
    recorded = {op.id: op for op in lab.client.operations(run_id)}
    done = frozenset(item for item, op_id in ids.items() if op_id in recorded
                     and recorded[op_id].status is OperationStatus.SUCCEEDED)
    at_kill = AtKill(lab.effects().counts, done)
    assert f"m{ITEMS // 2}" in at_kill.in_flight
    assert 0 < len(done) < ITEMS

    _worker(lab)
    lab.finish(run_id)

    assert lab.result(run_id) == [i * i for i in range(ITEMS)]
    _assert_only_in_flight_steps_ran_again(lab, at_kill, ids)
    # Measured, not assumed: the bound was reached, and never exceeded, before and after the kill.
    assert _peak_overlap(lab.notes("span"), {w1.pid: died}) == app.MAP_LIMIT


# -- a map under a completion policy -------------------------------------------------------------

REASONS = {"at_least": "MIN_SUCCESSFUL_REACHED", "tolerate": "FAILURE_TOLERANCE_EXCEEDED"}


def _decision(op: Operation) -> dict[str, Any] | None:
    """The batch's recorded decision: the items counted and why it was done."""
    return json.loads(op.result) if op.status.is_final and op.result else None


def _assert_uncounted_items_recorded_abandoned(lab: CrashLab, run_id: str,
                                               counted: list[int]) -> None:
    """Every item that started has ended: those the decision counted with their own outcome,
    the others abandoned (FAILED with an ABANDONED error), none left STARTED."""
    items = {int(str(op.name)): op for op in lab.client.operations(run_id)
             if op.sub_type == SubType.MAP_ITERATION}
    assert all(op.status.is_final for op in items.values()), items
    abandoned = {i for i, op in items.items() if op.error is not None
                 and op.error.type == ABANDONED}
    assert set(counted) <= set(items) and abandoned == set(items) - set(counted), items


@pytest.mark.parametrize("policy", sorted(app.QUORUM_POLICIES))
def test_map_decision_and_abandoned_items_are_recorded_before_a_kill_and_kept_after_restart(
        crash_lab: CrashLab, policy: str) -> None:
    lab = crash_lab
    run_id = lab.start(app.quorum, policy, id=f"quorum-{policy}")
    lab.wait_crashed(_worker(lab, "report:inside"))  # the first step after the decision
    (seen,) = [n["summary"] for n in lab.notes("report")]
    odd = set(range(1, app.QUORUM_ITEMS, 2))
    assert seen["reason"] == REASONS[policy]
    assert set(seen["counted"]) <= odd and len(seen["counted"]) >= 2
    (batch,) = [op for op in lab.client.operations(run_id) if op.sub_type == SubType.MAP]
    assert _decision(batch) == {"completed": seen["counted"], "reason": seen["reason"]}, (
        "the step after the batch ran before the batch's decision was checkpointed")
    _assert_uncounted_items_recorded_abandoned(lab, run_id, seen["counted"])
    abandoned = [f"v{i}" for i in range(app.QUORUM_ITEMS) if i not in seen["counted"]]
    for step in abandoned:  # the votes still running at the decision could finish now
        lab.open_gate(step)
    at_kill = AtKill(lab.effects().counts, _steps_done(lab, run_id))

    _worker(lab)
    lab.finish(run_id)

    assert lab.result(run_id) == seen
    (batch,) = [op for op in lab.client.operations(run_id) if op.sub_type == SubType.MAP]
    assert _decision(batch) == {"completed": seen["counted"], "reason": seen["reason"]}
    _assert_uncounted_items_recorded_abandoned(lab, run_id, seen["counted"])
    fx = lab.effects()
    assert all(fx[step] == 1 for step in abandoned), fx.counts  # never driven again
    _assert_only_in_flight_steps_ran_again(lab, at_kill, ["report"])


# -- child workflows -----------------------------------------------------------------------------

CHILD_KILLS = {  # moment -> (crash point, steps in flight at the kill)
    "while_the_child_runs_a_step": ("c-two:inside", {"c-two"}),
    "right_after_the_child_run_was_created": (f"{app.child.name}:invoked", set()),
}


@pytest.mark.parametrize("moment", sorted(CHILD_KILLS))
def test_parent_awaiting_a_child_gets_the_result_of_exactly_one_child_run_after_a_kill(
        crash_lab: CrashLab, moment: str) -> None:
    lab = crash_lab
    crash_at, in_flight = CHILD_KILLS[moment]
    run_id = lab.start(app.parent, 5, id="parent")
    lab.wait_crashed(_worker(lab, crash_at))
    child_id = f"{run_id}-{operation_id(None, 2)[:12]}"  # derived from the invoke's position
    invoke = lab.operations(run_id)[app.child.name]
    assert (invoke.status, invoke.child_run_id) == (OperationStatus.STARTED, child_id)
    assert lab.client.get(child_id).status is ExecutionStatus.RUNNING
    at_kill = AtKill(lab.effects().counts, _steps_done(lab, run_id, child_id))
    assert at_kill.in_flight == in_flight
    if not in_flight:  # the child run exists, nothing of it ran
        assert lab.client.operations(child_id) == []
        assert at_kill.effects["c-one"] == 0

    _worker(lab)
    lab.finish(run_id)

    assert lab.result(run_id) == {"sent": 5, "got": 12}
    assert [r.run_id for r in lab.client.list(workflow=app.child.name)] == [child_id]
    child = lab.client.get(child_id)
    assert (child.status, child.parent_run_id) == (ExecutionStatus.SUCCEEDED, run_id)
    assert len(lab.history(child_id, "ExecutionSucceeded")) == 1
    assert len(lab.history(run_id, "ChainedInvokeStarted")) == 1
    assert len(lab.history(run_id, "ChainedInvokeSucceeded")) == 1
    _assert_only_in_flight_steps_ran_again(lab, at_kill, ["p-before", "c-one", "c-two", "p-after"])


@pytest.mark.parametrize("ending", ["normally", "killed"])
def test_a_child_ending_while_its_parents_invocation_runs_is_reported_once_after_that_invocation(
        crash_lab_any_db: CrashLab, ending: str) -> None:
    """The child ends while the parent's invocation that started it still runs (held open by
    the step `hold`): the parent's CHAINED_INVOKE stays STARTED until that invocation has
    ended, by returning or by its worker being SIGKILLed, and then takes the child's result
    once, recorded after that invocation's end (as AWS orders it)."""
    lab = crash_lab_any_db
    run_id = lab.start(app.holding_parent, 5, id="holding")
    w1 = _worker(lab)
    lab.wait_effect("hold")
    (child,) = wait_until(lambda: lab.client.list(workflow=app.child.name) or None,
                          "the child run to be started")
    assert lab.client.wait(child.run_id, DEADLINE).status is ExecutionStatus.SUCCEEDED
    assert lab.operations(run_id)[app.child.name].status is OperationStatus.STARTED
    assert lab.history(run_id, "ChainedInvokeSucceeded") == []
    assert lab.history(run_id, "InvocationCompleted") == []

    if ending == "killed":
        w1.kill()
        lab.open_gate("hold")
        _worker(lab)
    else:
        lab.open_gate("hold")
    lab.finish(run_id)

    assert lab.result(run_id) == {"got": 12, "held": 5}
    events = [e.type for e in lab.history(run_id)]
    assert events.count("ChainedInvokeSucceeded") == 1
    invocation_end = "WorkerLost" if ending == "killed" else "InvocationCompleted"
    assert events.index(invocation_end) < events.index("ChainedInvokeSucceeded"), events
    fx = lab.effects()
    assert (fx["c-one"], fx["c-two"], fx["hold"]) == (1, 1, 1 + (ending == "killed"))
    assert [r.run_id for r in lab.client.list(workflow=app.child.name)] == [child.run_id]


def test_cancelling_a_parent_killed_while_its_children_run_stops_all_and_compensates_once(
        crash_lab: CrashLab) -> None:
    lab = crash_lab
    children = 2
    run_id = lab.start(app.guarded_parent, children, id="guarded")
    w1 = _worker(lab)
    for i in range(children):
        lab.wait_effect(f"work{i}")  # every child is inside its gated step
    w1.kill()
    child_ids = [r.run_id for r in lab.client.list(workflow=app.guarded_child.name)]
    assert len(child_ids) == children
    lab.client.cancel(run_id)
    for i in range(children):  # a work step run again after the cancel would now complete
        lab.open_gate(f"work{i}")

    _worker(lab)

    for rid in (run_id, *child_ids):
        assert lab.client.wait(rid, DEADLINE).status is ExecutionStatus.STOPPED, lab.worker_logs()
    fx = lab.effects()
    steps = ["parent-undo", *(f"{s}{i}" for s in ("reserve", "work", "release")
                              for i in range(children))]
    assert {step: fx[step] for step in steps} == dict.fromkeys(steps, 1)


@pytest.mark.parametrize("crash_at", ["gc1:inside", "gc2:before"])
def test_each_generation_gets_one_child_of_its_own_across_a_kill(
        crash_lab_any_db: CrashLab, crash_at: str) -> None:
    """After ctx.continue_as_new the invoke is the same operation id again: a kill inside a
    later generation's child leaves that generation's child to finish, not an earlier one's."""
    lab = crash_lab_any_db
    run_id = lab.start(app.generations, 0, id="generations")
    lab.wait_crashed(_worker(lab, crash_at))
    _worker(lab)
    lab.finish(run_id)

    assert lab.result(run_id) == [2, 4]
    children = lab.client.list(workflow=app.gen_child.name)
    assert sorted(lab.result(c.run_id) for c in children) == [0, 2, 4]
    assert {lab.client.get(c.run_id).parent_run_id for c in children} == {run_id}
    fx = lab.effects()
    in_flight = crash_at.split(":")[0] if crash_at.endswith(":inside") else None
    for step in ("gc0", "gc1", "gc2"):
        assert fx[step] == 1 + (step == in_flight), (step, fx.counts)
