"""`durable worker` outlives its database: PostgreSQL unreachable for longer than the writer
retries, an SQLite write lock held past the busy timeout, a full disk, and a database that is
not there yet when the worker starts. Each time the worker must stay up, log the outage once and
then at intervals, stop claiming, and carry on by itself once the database is back, with nothing
lost (what tests/chaoskit.py checks: every run succeeds with the right result, no completed
step runs again, nothing is recorded twice; a signal sent meanwhile is delivered).

PostgreSQL goes away through a TCP proxy (tests/pgkit.py) between the worker and the shared
server, which stays up. The disk fills up for real: the database lives on an 8 MB tmpfs the test
mounts, and fills. (A filesystem turning read-only
under a running worker cannot be staged here: the kernel refuses to remount a filesystem
read-only while a process has a file open on it for writing. It fails the worker's writes just
as a full disk does, and goes down the same path.)
"""

from __future__ import annotations

import errno
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import durable
from tests import chaoskit, pgkit
from tests.apps import chaos_app as app
from tests.chaoskit import CliWorker
from tests.crashkit import write_lock_held
from tests.kit import wait_until

pytestmark = pytest.mark.crash

TARGET = "tests/apps/chaos_app.py"
RUNS = 24  # none of them poisoned: tests/test_poison_steps.py is about that
OUTAGE = 20.0  # seconds: longer than the PostgreSQL writer retries a batch (15 s)
LOG_EVERY = 10.0  # the worker's interval between "still unavailable" lines

UNAVAILABLE = "unavailable ("
STILL = "still unavailable after"
BACK = "available again after"


def inputs() -> dict[str, int]:
    return {f"o{n:02d}": n for n in range(1, RUNS * 2) if not app.poisoned(n)}


@pytest.fixture
def proxy(pg_server: str) -> Iterator[pgkit.Proxy]:
    p = pgkit.Proxy(pg_server)
    yield p
    p.close()


@contextmanager
def serving(db: str, effects: Path, workers_db: str | None = None
            ) -> Iterator[tuple[durable.Client, CliWorker]]:
    """The test's client on `db`, and `durable worker` on `workers_db` (by default the same:
    through the proxy, for PostgreSQL); the client closed after, the worker killed if still up."""
    client = durable.Client(db)
    worker = CliWorker(TARGET, workers_db or db, effects)
    try:
        yield client, worker
    finally:
        worker.kill()
        client.close()


def send_signals(client: durable.Client, runs: dict[str, int]) -> None:
    errors: list[BaseException] = []
    chaoskit.signal_all(client, runs, errors)
    assert not errors, errors


def assert_rode_it_out(worker: CliWorker, client: durable.Client, effects: Path,
                       runs: dict[str, int], what: str) -> None:
    """The database is back now: every run completes rightly, the worker is still up, logged
    the outage once and its end once, and stops cleanly; prints how soon the first step ran."""
    back_at = time.time()
    worker.wait_ended(client, runs)
    chaoskit.check(client.store.url, effects, runs, killed=set())
    assert len(worker.lines(UNAVAILABLE)) == 1, worker.output()
    assert len(worker.lines(BACK)) == 1, worker.output()
    assert "Traceback" not in worker.output()
    resumed = chaoskit.first_effect_after(effects, back_at)
    assert resumed is not None
    assert worker.stop() == 0, worker.output()
    print(f"\n{what}: first step {resumed - back_at:.2f}s after the database was back")


def test_durable_worker_rides_out_a_postgres_outage_and_resumes_by_itself(
        pg_url: str, proxy: pgkit.Proxy, tmp_path: Path) -> None:
    runs = inputs()
    # The test's own way in goes around the proxy.
    with serving(pg_url, tmp_path, proxy.url(pg_url)) as (client, worker):
        chaoskit.start_all(client, runs)
        wait_until(lambda: chaoskit.effects_count(tmp_path) >= RUNS, "steps to run", timeout=60)
        proxy.stop()
        down_at = time.time()
        send_signals(client, runs)  # sent while the worker cannot see them
        worker.wait_line(UNAVAILABLE, timeout=OUTAGE)
        wait_until(lambda: time.time() - down_at >= OUTAGE, "the outage to last", timeout=OUTAGE)
        assert worker.alive, f"the worker exited:\n{worker.output()}"
        proxy.start()
        assert_rode_it_out(worker, client, tmp_path, runs,
                           f"postgres outage of {time.time() - down_at:.1f}s")


def test_durable_worker_waits_out_an_sqlite_write_lock_held_past_the_busy_timeout(
        db_url: str, tmp_path: Path) -> None:
    runs = inputs()
    with serving(db_url, tmp_path) as (client, worker):
        chaoskit.start_all(client, runs)
        wait_until(lambda: chaoskit.effects_count(tmp_path) >= RUNS, "steps to run", timeout=60)
        with write_lock_held(Path(db_url.removeprefix("sqlite:///"))):
            held_at = time.time()
            worker.wait_line(UNAVAILABLE, timeout=60)  # after the 30 s busy timeout
            assert worker.alive, f"the worker exited:\n{worker.output()}"
        held = time.time() - held_at
        send_signals(client, runs)
        assert_rode_it_out(worker, client, tmp_path, runs, f"sqlite write lock held {held:.1f}s")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on an 8 MB filesystem of the test's own (a tmpfs, unmounted after)."""
    fs = tmp_path / "fs"
    fs.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(fs)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = f"cannot mount a tmpfs here ({done.stderr.strip()}); it takes root"
        if pgkit.in_ci():
            pytest.fail(f"{why}. CI=true: this test must run, not skip", pytrace=False)
        pytest.skip(why)
    try:
        yield fs
    finally:
        subprocess.run(["umount", "--lazy", str(fs)], check=False)


def test_durable_worker_rides_out_a_full_disk(small_disk: Path, tmp_path: Path) -> None:
    runs = inputs()
    with serving(f"sqlite:///{small_disk}/durable.db", tmp_path) as (client, worker):
        chaoskit.start_all(client, runs)
        send_signals(client, runs)
        # Full while the runs go on: their writes need room the database never had yet.
        wait_until(lambda: chaoskit.effects_count(tmp_path) >= 1, "a step to run", timeout=60)
        filled_at = time.time()
        fill(small_disk / "filler")
        worker.wait_line(UNAVAILABLE, timeout=60)
        assert "full" in worker.lines(UNAVAILABLE)[0], worker.output()
        worker.wait_line(STILL, timeout=LOG_EVERY * 3)
        (small_disk / "filler").unlink()
        assert_rode_it_out(worker, client, tmp_path, runs,
                           f"disk full for {time.time() - filled_at:.1f}s")


def fill(path: Path) -> None:
    """Write to `path` until its filesystem is full."""
    with path.open("wb", buffering=0) as f:  # unbuffered: nothing left to write at close
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


@pytest.mark.parametrize("how", ["refused", "cut"])
def test_durable_worker_started_while_postgres_is_unreachable_waits_for_it(
        pg_url: str, proxy: pgkit.Proxy, tmp_path: Path, how: str) -> None:
    """Refused: nothing listens (the server is down). Cut: each connection is dropped as soon
    as it is made (a restart, a flapping network). Neither is bad input: not exit 2."""
    runs = dict(list(inputs().items())[:3])
    if how == "refused":
        proxy.stop()
    else:
        proxy.drop_new = True
    with serving(pg_url, tmp_path, proxy.url(pg_url)) as (client, worker):
        chaoskit.start_all(client, runs)
        send_signals(client, runs)
        worker.wait_line(UNAVAILABLE)
        worker.wait_line(STILL, timeout=LOG_EVERY * 2)
        assert worker.alive, f"the worker exited:\n{worker.output()}"
        if how == "refused":
            proxy.start()
        else:
            proxy.drop_new = False
        assert_rode_it_out(worker, client, tmp_path, runs,
                           f"started while postgres was unreachable ({how})")


def test_durable_worker_given_a_database_that_refuses_it_exits_2_with_one_line(
        pg_server: str, tmp_path: Path) -> None:
    """Bad input stays bad input: a role the server does not know will not appear by waiting."""
    worker = CliWorker(TARGET, pg_server.replace("postgres@", "nosuchrole@"), tmp_path)
    try:
        assert worker.wait_exit(30) == 2
        out = worker.output()
        assert out.startswith("error: cannot connect to PostgreSQL") and "nosuchrole" in out
        assert "Traceback" not in out
    finally:
        worker.kill()
