"""Chaos on PostgreSQL: worker processes die and lose their connections while 1,000 runs go on.

Four worker processes (tests/apps/chaos_app.py, lease 2 s) serve 1,000 workflows of 10 steps
with pseudo-random durable sleeps and one signal each, sent by the test while they run; in one
run of ten a step's first attempt calls sys.exit(). Every 2 seconds one worker is SIGKILLed and
replaced; once, every PostgreSQL connection of a worker is cut (pg_terminate_backend on its
application_name) and it must carry on. At the end, what tests/chaoskit.py checks holds (every
run succeeded rightly, nothing recorded twice, no completed step ran again), the worker whose
connections were cut ran steps afterwards, and the recovery time, from a kill to the last
orphaned run being leased again, is printed.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

import pytest

import durable
from tests import chaoskit
from tests.apps import chaos_app as app
from tests.chaoskit import Db, Fleet, Kill
from tests.kit import wait_until

pytestmark = pytest.mark.crash

RUNS = 1000
WORKERS = 4
LEASE = 2.0
KILL_EVERY = 2.0
CONCURRENCY = 50  # runs in flight per worker: what a kill interrupts
CUT_AT = 5.0  # seconds into the chaos: cut one worker's connections
SPARE_AFTER_CUT = 6.0  # the cut worker is not killed for this long, to see it carry on
DEADLINE = 120.0  # the whole chaos, start to last run ended (about 30 s on a quiet machine)


def test_chaos_kills_and_cuts_lose_nothing(pg_server: str, pg_url: str, tmp_path: Path) -> None:
    client = durable.Client(pg_url)
    db = Db(pg_url)
    fleet = Fleet(pg_url, tmp_path, lease=LEASE, concurrency=CONCURRENCY, server=pg_server)
    inputs = {f"c{n:04d}": n for n in range(RUNS)}
    kills: list[Kill] = []
    cut: tuple[int, float] | None = None
    try:
        chaoskit.start_all(client, inputs)
        for _ in range(WORKERS):
            fleet.spawn()
        began = time.monotonic()
        signal_errors: list[BaseException] = []
        signaller = threading.Thread(target=chaoskit.signal_all,
                                     args=(client, inputs, signal_errors), daemon=True)
        signaller.start()

        next_kill, next_report = began + KILL_EVERY, began + 10

        def chaos_until_all_ended() -> bool:
            """One tick of the chaos: the checks, then what is due now; True once no run is
            left RUNNING."""
            nonlocal cut, next_kill, next_report
            left = db.running()
            if not left:
                return True
            now = time.monotonic()
            if now >= next_report:  # seen with pytest -s
                print(f"chaos: {now - began:.0f}s, {left} runs left", flush=True)
                next_report += 10
            assert not signal_errors, f"sending a signal failed: {signal_errors[0]!r}"
            assert not fleet.exited(), f"a worker exited: {fleet.exited()}\n{fleet.output()}"
            for kill in kills:
                kill.note_resumed(db)
            if cut is None and now - began >= CUT_AT and fleet.ready():
                pid = random.choice(fleet.ready())
                if fleet.cut(pid):  # else it has not connected yet: another one, next time
                    cut = (pid, time.time())
            spared = {cut[0]} if cut and time.time() - cut[1] < SPARE_AFTER_CUT else set()
            if now >= next_kill and (victim := fleet.kill_one(db, spared)):
                kills.append(victim)
                next_kill += KILL_EVERY
            return False

        wait_until(chaos_until_all_ended, lambda: (
            f"every run to end: {db.running()} still RUNNING; signals "
            f"{'still being' if signaller.is_alive() else 'all'} sent; {db.stuck()}"),
            timeout=DEADLINE, interval=0.05)
        elapsed = time.monotonic() - began
        signaller.join(30)
        for kill in kills:
            kill.note_resumed(db)
    finally:
        fleet.stop()
        client.close()

    assert not fleet.crashed(), "a worker crashed:\n" + "\n---\n".join(fleet.crashed())
    assert cut is not None
    outcome = chaoskit.check(pg_url, tmp_path, inputs, fleet.dead | {cut[0]})
    assert chaoskit.poisoned_attempts(pg_url, inputs) >= sum(map(app.poisoned, inputs.values()))

    # the worker whose connections were cut carried on
    cut_pid, cut_at = cut
    after_cut = [at for runs_of in outcome.executions.values() for pid, _, at in runs_of
                 if pid == cut_pid and at > cut_at]
    assert after_cut, "the worker whose connections were cut ran no step afterwards"

    # recovery times, reported
    recoveries = [max(k.resumed.values()) - k.at for k in kills
                  if k.orphans and len(k.resumed) == len(k.orphans)]
    assert all(len(k.resumed) == len(k.orphans) for k in kills), "orphaned runs never resumed"
    orphans = sum(len(k.orphans) for k in kills)
    print(f"\nchaos: {RUNS} runs x {app.STEPS} steps on {WORKERS} workers in {elapsed:.1f}s;"
          f" {len(kills)} SIGKILLs orphaning {orphans} runs; the connections of worker"
          f" {cut_pid} cut once, its first step after that {min(after_cut) - cut_at:.2f}s later;"
          f" {outcome.extra} step executions repeated (in flight at a kill or cut, or"
          f" {len(outcome.by_live)} by a stalled worker whose lease was taken over)")
    if recoveries:
        print(f"chaos: recovery from a kill to its last orphan leased again (lease {LEASE}s):"
              f" median {statistics.median(recoveries):.2f}s, max {max(recoveries):.2f}s"
              f" over {len(recoveries)} kills with orphans")
