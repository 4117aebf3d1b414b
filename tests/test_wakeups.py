"""Wake-ups between processes sharing one SQLite file (store/wakeup.py): sockets in the directory
beside the database, which another user can neither take first nor block; and polling, with one
warning, where that directory cannot be used. Each test has a real second process wait while this
one commits."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from durable.engine import machine
from durable.store import Store, open_store

WAITER = """
import logging, sys, threading
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
from durable.store import open_store
store = open_store(sys.argv[1])
heard = threading.Event()
store.subscribe(heard.set)
print("ready", flush=True)
print("woken" if heard.wait(20) else "not woken", flush=True)
store.close()
"""

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files away")


class Waiter:
    """Another process subscribed to the database, waiting for one wake-up."""

    def __init__(self, db_url: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", WAITER, db_url], text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.process.stdout is not None
        self.stdout = self.process.stdout
        line = self.stdout.readline().strip()
        assert line == "ready", (line, self.process.stderr and self.process.stderr.read())

    def woken_after(self, commit: Store) -> float:
        """Seconds from a commit that notifies until this process hears of it."""
        began = time.monotonic()
        commit.write_sync(lambda tx: machine.start_run(tx, f"r{began}", "wf", None, 1.0))
        assert self.stdout.readline().strip() == "woken"
        return time.monotonic() - began

    def stderr(self) -> str:
        _, err = self.process.communicate(timeout=20)
        return err


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.close()


def wake_dir(db_url: str) -> Path:
    return Path(os.path.realpath(db_url.removeprefix("sqlite:///")) + "-wake")


def test_processes_wake_each_other_through_sockets_beside_the_database(
        db_url: str, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(db_url.removeprefix("sqlite:///"), 0o644)
    waiter = Waiter(db_url)
    directory = wake_dir(db_url)
    [socket_file] = directory.iterdir()
    assert stat.S_ISSOCK(socket_file.stat().st_mode)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700  # the database is not shared
    assert waiter.woken_after(store) < 1
    assert waiter.stderr() == ""
    assert not [r for r in caplog.records if r.name == "durable.store.wakeup"]


def test_a_database_path_too_long_for_a_socket_address_still_wakes_through_sockets(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    db_url = f"sqlite:///{deep / 'durable.db'}"
    store = open_store(db_url)
    try:
        waiter = Waiter(db_url)
        [socket_file] = wake_dir(db_url).iterdir()
        assert len(str(socket_file)) > 108  # longer than any socket address may be
        assert waiter.woken_after(store) < 1
        assert waiter.stderr() == ""
    finally:
        store.close()
    assert not [r for r in caplog.records if r.name == "durable.store.wakeup"]


def assert_polls_with_one_warning(db_url: str, store: Store, caplog: pytest.LogCaptureFixture,
                                  reason: str) -> None:
    """Both processes work on, by polling: the waiter wakes well before any fallback timer a
    worker (5 s) or a client (1 s) has of its own, and each process warns once."""
    caplog.set_level(logging.WARNING, "durable.store.wakeup")
    waiter = Waiter(db_url)
    assert waiter.woken_after(store) < 0.9
    store.write_sync(lambda tx: machine.start_run(tx, "again", "wf", None, 1.0))
    [warning] = waiter.stderr().strip().splitlines()
    assert warning.startswith("WARNING durable.store.wakeup: this process cannot use ")
    assert reason in warning and "polls the database" in warning
    [ours] = [r.getMessage() for r in caplog.records if r.name == "durable.store.wakeup"]
    assert reason in ours
    assert list(wake_dir(db_url).iterdir()) == []  # nobody bound a socket in it


@as_root
def test_a_wake_up_directory_another_user_made_first_only_costs_polling(
        db_url: str, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    directory = wake_dir(db_url)
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)  # nobody's, as if nobody had made it before us
    assert_polls_with_one_warning(db_url, store, caplog,
                                  "it belongs to uid 65534, neither you nor the database's owner")


def test_a_wake_up_directory_others_may_write_is_not_trusted(
        db_url: str, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    os.chmod(db_url.removeprefix("sqlite:///"), 0o644)
    directory = wake_dir(db_url)
    directory.mkdir()
    directory.chmod(0o777)
    assert_polls_with_one_warning(db_url, store, caplog,
                                  "its mode 0777 lets users write it who may not write the "
                                  "database (mode 0644)")


@as_root
def test_a_database_shared_with_a_group_gets_a_wake_up_directory_shared_with_it(
        db_url: str, store: Store) -> None:
    database = db_url.removeprefix("sqlite:///")
    os.chown(database, -1, 65534)
    os.chmod(database, 0o660)
    waiter = Waiter(db_url)
    directory = wake_dir(db_url).stat()
    assert (stat.S_IMODE(directory.st_mode), directory.st_gid) == (0o770, 65534)
    [socket_file] = wake_dir(db_url).iterdir()
    assert stat.S_IMODE(socket_file.stat().st_mode) & 0o020  # the group may send to it
    assert waiter.woken_after(store) < 1
    assert waiter.stderr() == ""
