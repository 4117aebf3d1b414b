"""Property: crashing a worker at any step boundary changes nothing a user can see.

Hypothesis picks where worker processes SIGKILL themselves while running a six-step workflow
(sync and async steps, one retried, one durable sleep): before a step body's effect, inside the
body after its effect, or after the body returned but before its result was checkpointed. Workers
are started one after another until the run completes. The result must equal the no-crash result,
and each step's effect must have happened exactly once, plus once more for every kill inside or
just after that step's body (at-least-once: the body ran, its checkpoint did not).
"""

from __future__ import annotations

import functools
import signal
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable import ExecutionStatus
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import Proc, wait_until

pytestmark = pytest.mark.crash

LEASE = 0.5
INPUT = 7
RERUNS = ("inside", "after")  # kills after the effect, before the checkpoint: the body reruns

CrashPoint = tuple[str, str]


def _order(point: CrashPoint) -> tuple[int, int]:
    return app.PIPELINE_STEPS.index(point[0]), app.PHASES.index(point[1])


crash_plans = st.lists(
    st.tuples(st.sampled_from(app.PIPELINE_STEPS), st.sampled_from(app.PHASES)), max_size=3,
).map(lambda points: sorted(points, key=_order))
"""Up to three kills, in the order the run reaches them (a kill at a step already done is moot)."""


def _crashed_or_ended(lab: CrashLab, worker: Proc, run_id: str) -> bool:
    return not worker.alive or lab.client.get(run_id).status is not ExecutionStatus.RUNNING


def _run_with_crashes(lab: CrashLab, plan: list[CrashPoint]) -> tuple[Any, int]:
    """Run the pipeline, one worker per crash point then a clean one; return (result, kills)."""
    run_id = lab.start(app.pipeline, INPUT, id="pipeline")
    kills = 0
    for step, phase in plan:
        worker = lab.worker(lease=LEASE, crash_at=[f"{step}:{phase}"], ready=False)
        wait_until(functools.partial(_crashed_or_ended, lab, worker, run_id),
                   f"worker to crash at {step}:{phase} or the run to end")
        if not worker.alive:
            assert worker.wait_exit() == -signal.SIGKILL, worker.output()
            kills += 1
            continue
        worker.kill()  # the run ended before reaching this point: the rest of the plan is moot
        break
    else:
        lab.worker(lease=LEASE)
    lab.finish(run_id)
    return lab.result(run_id), kills


@pytest.fixture(scope="module")
def no_crash(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Counter[str]]:
    with CrashLab(tmp_path_factory.mktemp("no-crash")) as lab:
        result, kills = _run_with_crashes(lab, [])
        effects = lab.effects().counts
    assert kills == 0
    assert all(effects[step] == 1 for step in app.PIPELINE_STEPS), effects
    return result, effects


@settings(max_examples=15, deadline=None)
@given(plan=crash_plans)
def test_crashing_at_any_step_boundary_gives_the_no_crash_result_and_effects(
        no_crash: tuple[Any, Counter[str]], tmp_path_factory: pytest.TempPathFactory,
        plan: list[CrashPoint]) -> None:
    expected_result, expected_effects = no_crash
    with CrashLab(tmp_path_factory.mktemp("crashes")) as lab:
        result, kills = _run_with_crashes(lab, plan)
        fx = lab.effects()

    assert result == expected_result
    crashes = fx.crashes()
    assert len(crashes) == kills
    assert crashes == plan[:kills]
    for step in app.PIPELINE_STEPS:
        reruns = sum(1 for s, phase in crashes if s == step and phase in RERUNS)
        assert fx[step] == expected_effects[step] + reruns, (step, crashes, fx.counts)
