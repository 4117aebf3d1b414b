"""Durable streams across SIGKILLed workers, on both stores: a reader following live sees
every durable entry exactly once and in order; the values of the step attempt the kill
abandoned are followed by its `abandoned` marker and left out by readers coming later."""

from __future__ import annotations

import pytest

from durable.model.streams import StreamKind
from tests.apps import crash_app as app
from tests.crashkit import CrashLab
from tests.kit import wait_until
from tests.streamkit import Follower

pytestmark = pytest.mark.crash

N = 6  # tokens the step writes; it waits at its gate after N // 2


def test_a_reader_following_across_killed_workers_sees_each_durable_entry_once(
        crash_lab_any_db: CrashLab) -> None:
    lab = crash_lab_any_db
    first = lab.worker()
    run_id = lab.start(app.streamed, N, id="streamed-1")
    tokens = Follower(lab.db, run_id, "tokens")
    progress = Follower(lab.db, run_id, "progress")
    lab.wait_effect("tokens-half")
    wait_until(lambda: len(tokens.entries) >= N // 2,
               lambda: f"the running attempt's tokens, live: {tokens.entries}")
    first.kill()  # mid-step: its attempt's tokens are abandoned

    second = lab.worker()
    lab.wait_effect("tokens-half", 2)
    wait_until(lambda: any(e.kind is StreamKind.ABANDONED for e in tokens.entries),
               lambda: f"the abandoned marker of the killed attempt: {tokens.entries}")
    lab.open_gate("tokens")
    lab.wait_effect("stream-mid")
    wait_until(lambda: len(progress.entries) >= 2, lambda: f"progress: {progress.entries}")
    second.kill()  # mid-workflow: the writes before replay, and must not be written again

    lab.worker()
    lab.open_gate("stream-mid")
    lab.finish(run_id)

    seen = tokens.join()
    assert [e.offset for e in seen] == list(range(1, N // 2 + 1 + N + 1)), seen
    killed, marker, kept = seen[:N // 2], seen[N // 2], seen[N // 2 + 1:]
    assert [e.data for e in killed] == [f"tok{i}" for i in range(N // 2)]
    assert {e.attempt_key for e in killed} == {marker.attempt_key}
    assert marker.kind is StreamKind.ABANDONED and marker.value is None
    assert [e.data for e in kept] == [f"tok{i}" for i in range(N)]
    assert len({e.attempt_key for e in kept}) == 1
    assert kept[0].attempt_key != marker.attempt_key
    assert kept[0].operation_id == next(
        op.id for op in lab.client.operations(run_id) if op.name == "tokens")

    assert [(e.offset, e.kind, e.data) for e in progress.join()] == [
        (1, StreamKind.VALUE, {"stage": "begin"}), (2, StreamKind.VALUE, {"stage": "tokens done"}),
        (3, StreamKind.VALUE, {"stage": "end"}), (4, StreamKind.CLOSED, None)]
    assert lab.effects()["stream-mid"] == 2  # the kill did land mid-workflow

    later = list(lab.client.stream(run_id, "tokens"))
    assert [e.offset for e in later] == [marker.offset, *(e.offset for e in kept)]
    assert later == [marker, *kept]
    assert list(lab.client.stream(run_id, "tokens", with_abandoned=True)) == seen
    assert list(lab.client.stream(run_id, "tokens", after=kept[2].offset)) == kept[3:]


def test_terminating_a_run_mid_step_abandons_the_running_attempts_values(
        crash_lab_any_db: CrashLab) -> None:
    lab = crash_lab_any_db
    worker = lab.worker()
    run_id = lab.start(app.streamed, N, id="streamed-terminated")
    tokens = Follower(lab.db, run_id, "tokens")
    lab.wait_effect("tokens-half")
    wait_until(lambda: len(tokens.entries) >= N // 2,
               lambda: f"the running attempt's tokens, live: {tokens.entries}")

    lab.client.terminate(run_id, reason="mid-stream")
    seen = tokens.join()  # the run ended: the follower stops after the marker
    assert [e.kind for e in seen] == [StreamKind.VALUE] * (N // 2) + [StreamKind.ABANDONED]
    assert {e.attempt_key for e in seen} == {seen[-1].attempt_key}

    lab.open_gate("tokens")  # the fenced-out body writes its other tokens: refused
    assert worker.stop() == 0  # a graceful stop waits for the body it was running
    assert list(lab.client.stream(run_id, "tokens", with_abandoned=True)) == seen
    assert list(lab.client.stream(run_id, "tokens")) == seen[-1:]
