"""The chaos suite: everything production throws at a fleet of workers at once, on each store.

Three worker processes (tests/apps/chaos_app.py, lease 2 s) serve 150 workflows of 10 steps with
pseudo-random durable sleeps and one signal each; in one run of ten a step's first attempt calls
sys.exit(). While they run, a worker is SIGKILLed and replaced every few seconds, one is frozen
with SIGSTOP for longer than its lease and thawed, and the database goes away:

- PostgreSQL: every worker connection is cut once, then the server is unreachable for 30 s
  (a TCP proxy between the workers and the shared server, which stays up for the test);
- SQLite: another connection holds the write lock for 40 s, past the 30 s busy timeout.

Half the signals are sent before the outage and half after its start (PostgreSQL: during it,
around the proxy; SQLite: once the lock is let go), so runs wait across it. Replacement workers
started meanwhile must wait for the database rather than exit. At the end: what
tests/chaoskit.py checks holds (every run succeeded rightly, nothing recorded twice, no
completed step ran again), no worker exited until told to, each stopped cleanly on SIGTERM, and
the outage was logged. The time from the database's return to the first step run after it is
printed (pytest -s).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

import durable
from tests import chaoskit, pgkit
from tests.apps import chaos_app as app
from tests.chaoskit import Db, Fleet, Kill
from tests.crashkit import write_lock_held
from tests.kit import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.crash]

RUNS = 150
WORKERS = 3
LEASE = 2.0
CONCURRENCY = 50
KILL_EVERY = 3.0
PAUSE_AT, PAUSE_FOR = 2.0, 2 * LEASE + 1  # frozen past its lease: its runs are taken over
CUT_AT = 4.0  # PostgreSQL: every worker connection dropped at once
OUTAGE_AT = PAUSE_AT + PAUSE_FOR + 1  # after the thaw: taking the SQLite lock waits for a
# worker frozen inside a write, and only this loop can thaw it
OUTAGES = {"postgres": 30.0, "sqlite": 40.0}
DEADLINE = 150.0  # start to last run ended (about 60 s on a quiet machine)


@pytest.mark.parametrize("store", ["postgres", "sqlite"])
def test_chaos_kills_pauses_cuts_outages_and_sys_exit_lose_nothing(
        store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    proxy: pgkit.Proxy | None = None
    if store == "postgres":
        db: str = request.getfixturevalue("pg_url")
        proxy = pgkit.Proxy(request.getfixturevalue("pg_server"))
        workers_db = proxy.url(db)
    else:
        db = workers_db = f"sqlite:///{tmp_path / 'durable.db'}"
    client = durable.Client(db)
    sql = Db(db)
    fleet = Fleet(workers_db, effects, lease=LEASE, concurrency=CONCURRENCY)
    inputs = {f"x{n:03d}": n for n in range(RUNS)}
    order = list(inputs)
    random.shuffle(order)
    early, late = order[:RUNS // 2], order[RUNS // 2:]
    kills: list[Kill] = []
    errors: list[BaseException] = []
    down: AbstractContextManager[object] | None = None
    try:
        chaoskit.start_all(client, inputs)
        for _ in range(WORKERS):
            fleet.spawn()
        began = time.monotonic()
        chaoskit.signal_all(client, {r: inputs[r] for r in early}, errors)
        paused: int | None = None
        cut = False
        back_at: float | None = None
        next_kill = began + KILL_EVERY

        def chaos_until_all_ended() -> bool:
            """One tick of the chaos: the checks, then what is due now; True once no run is
            left RUNNING."""
            nonlocal paused, cut, down, back_at, next_kill
            for kill in kills:  # first: the runs that ended since the last tick count too
                kill.note_resumed(sql)
            if not sql.running():
                return True
            now = time.monotonic() - began
            assert not fleet.exited(), f"a worker exited: {fleet.exited()}\n{fleet.output()}"
            assert not errors, f"sending a signal failed: {errors[0]!r}"
            if paused is None and now >= PAUSE_AT and fleet.ready():
                paused = random.choice(fleet.ready())
                fleet.pause(paused)
            if paused is not None and paused in fleet.live and now >= PAUSE_AT + PAUSE_FOR:
                fleet.resume(paused)
            if proxy is not None and not cut and now >= CUT_AT:
                cut = proxy.cut() > 0
            if down is None and back_at is None and now >= OUTAGE_AT:
                down = _unreachable(proxy) if proxy else write_lock_held(tmp_path / "durable.db")
                down.__enter__()
                if proxy is not None:  # the test's own way in still works: signal now
                    threading.Thread(target=chaoskit.signal_all, daemon=True, args=(
                        client, {r: inputs[r] for r in late}, errors)).start()
            if down is not None and now >= OUTAGE_AT + OUTAGES[store]:
                down.__exit__(None, None, None)
                down, back_at = None, time.time()
                if proxy is None:
                    threading.Thread(target=chaoskit.signal_all, daemon=True, args=(
                        client, {r: inputs[r] for r in late}, errors)).start()
            if time.monotonic() >= next_kill and (victim := fleet.kill_one(sql, {paused or 0})):
                kills.append(victim)
                next_kill += KILL_EVERY
            return False

        wait_until(chaos_until_all_ended, lambda: f"every run to end: {sql.running()} still "
                   f"RUNNING; {sql.stuck()}\n{fleet.output()}", timeout=DEADLINE, interval=0.05)
        elapsed = time.monotonic() - began
        assert back_at is not None, "the runs ended before the outage did: it hit nothing"
        codes = fleet.stop()
    finally:
        if down is not None:
            down.__exit__(None, None, None)
        fleet.stop()
        client.close()
        if proxy is not None:
            proxy.close()

    # A worker that served steps was stopped while serving: it must drain and exit 0. One
    # started just before the end may still have been starting up (no handler yet: SIGTERM).
    served = {int(p.stem.removeprefix("effects-")) for p in effects.glob("effects-*.log")}
    unclean = {pid: code for pid, code in codes.items()
               if code != 0 and (pid in served or code != -signal.SIGTERM)}
    assert not unclean, f"workers did not stop cleanly: {unclean}\n{fleet.output()}"
    assert not fleet.crashed(), "a worker crashed:\n" + "\n---\n".join(fleet.crashed())
    outcome = chaoskit.check(db, effects, inputs, fleet.dead)
    poisoned = sum(map(app.poisoned, inputs.values()))
    assert chaoskit.poisoned_attempts(db, inputs) >= poisoned
    log = fleet.full_output()
    assert "unavailable (" in log and "available again after" in log, fleet.output()
    if proxy is not None:  # SQLite opens without the write lock: nothing to wait for there
        assert "unavailable (opening the database" in log, "no replacement waited for it"
    assert all(len(k.resumed) == len(k.orphans) for k in kills), "orphaned runs never resumed"
    resumed = chaoskit.first_effect_after(effects, back_at)
    assert resumed is not None
    print(f"\nchaos on {store}: {RUNS} runs x {app.STEPS} steps on {WORKERS} workers in "
          f"{elapsed:.1f}s; {len(kills)} SIGKILLs, a worker frozen {PAUSE_FOR:.0f}s, "
          f"{'connections cut, ' if cut else ''}the database away {OUTAGES[store]:.0f}s, "
          f"{poisoned} runs whose step called sys.exit(); first step {resumed - back_at:.2f}s "
          f"after the database came back; {outcome.extra} step executions repeated (in flight "
          f"at a kill, {len(outcome.by_live)} by a worker frozen or cut off past its lease)")


@contextmanager
def _unreachable(proxy: pgkit.Proxy) -> Iterator[None]:
    proxy.stop()
    try:
        yield
    finally:
        proxy.start()
