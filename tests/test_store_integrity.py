"""A damaged SQLite file, a schema from a newer Durable, a writer holding the lock, driven through
the real `durable` command (tests/test_cli.py's `Cli`). Damage is met with one line on stderr,
exit 2 and nothing written; a held write lock does not hold up reading at all. The files are real
databases, damaged the way disks and torn copies damage them: pages overwritten with garbage.
The newer-schema refusal on both dialects is in tests/test_store_contract.py."""

from __future__ import annotations

import contextlib
import hashlib
import random
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import durable
from durable.engine import machine
from durable.errors import StoreUnusable
from durable.store import diagnose, open_store
from durable.store.schema import LATEST
from tests.apps import cli_app
from tests.kit import Procs
from tests.test_cli import APP, Cli, Result


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Iterator[Cli]:
    with Procs(tmp_path) as procs:
        yield Cli(db_url, procs)


@pytest.fixture
def db(db_url: str) -> Path:
    """A real database, every page in the main file: runs waiting for a signal, each with its
    history, and runs that ended, with their operations."""
    client = durable.Client(db_url)
    try:
        for i in range(150):
            client.start(cli_app.wait_signal, id=f"waiting-{i}")
        for i in range(5):
            durable.run(cli_app.add, i, i, id=f"added-{i}", db=client.store)
    finally:
        client.close()
    path = Path(db_url.removeprefix("sqlite:///"))
    assert query(path, "PRAGMA quick_check") == [("ok",)]  # and now all in the file
    return path


def query(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """One statement, committed, and the WAL moved into the file: so that no connection closing
    later (the last one to close does the same) changes the file's bytes."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        with conn:
            rows = conn.execute(sql, params).fetchall()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return rows


def page_size(path: Path) -> int:
    return int(query(path, "PRAGMA page_size")[0][0])


def overwrite_pages(path: Path, pages: list[int]) -> None:
    """Garbage over the given pages (numbered from 1, as SQLite does)."""
    size = page_size(path)
    garbage = random.Random(15)
    with open(path, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(garbage.randbytes(size))


def leaves_of(path: Path, table: str) -> list[int]:
    """The pages holding the table's rows (all of it, if it fits in its root page)."""
    return [r[0] for r in query(path, "SELECT pageno FROM dbstat WHERE name = ? AND "
                                "pagetype = 'leaf'", (table,))]


def fingerprint(path: Path) -> tuple[str, ...]:
    """The database's bytes and its WAL's (none is as good as an empty one): what a write
    would change."""
    return tuple(hashlib.sha256(p.read_bytes() if p.exists() else b"").hexdigest()
                 for p in (path, Path(f"{path}-wal")))


def one_line(done: Result) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


WRITES = [
    ["signal", "waiting-1", "go"],
    ["cancel", "waiting-2"],
    ["callback", "succeed", "some-callback"],
    ["callback", "fail", "some-callback"],
    ["start", f"{APP}:add", "--input", "[1, 2]"],
    ["rerun", "added-1", "--from-step", "total"],
    ["functions", "add", "fn", "--url", "http://127.0.0.1:9/"],
    ["functions", "rm", "fn"],
    ["worker", APP],
]


def test_once_damage_is_found_no_command_writes_and_each_says_so_in_one_line(
        cli: Cli, db: Path) -> None:
    total = db.stat().st_size // page_size(db)
    overwrite_pages(db, list(range(total // 3, total // 2)))
    checked = cli("doctor")
    assert checked.returncode == 2
    assert "DAMAGED" in checked.stdout
    assert "problems (integrity)" in one_line(checked)
    assert Path(f"{db}-damaged").exists()
    before = fingerprint(db)
    for command, done in zip(WRITES, cli.all(*WRITES), strict=True):
        assert done.returncode == 2, (command, done.stderr)
        line = one_line(done)
        assert "is damaged" in line and "Durable will not write to it" in line, command
        assert "durable doctor" in line
    reads = cli.all(["ls"], *(["show", f"waiting-{i}"] for i in range(0, 150, 10)),
                    ["result", "added-3"])
    for done in reads:  # what is intact is read, what is not says so
        assert done.returncode in (0, 2), done.stderr
        assert done.returncode == 0 or "is damaged" in one_line(done)
    assert fingerprint(db) == before


def test_reading_a_damaged_page_says_so_in_one_line_and_stops_later_writes(
        cli: Cli, db: Path) -> None:
    overwrite_pages(db, leaves_of(db, "history"))
    listed = cli("ls", "--limit", "3")
    assert listed.returncode == 0, listed.stderr  # the runs table is intact
    shown = cli("show", "waiting-7")
    assert shown.returncode == 2
    assert "database disk image is malformed" in one_line(shown)
    before = fingerprint(db)
    signalled = cli("signal", "waiting-8", "go")  # the signals table is intact, but
    assert signalled.returncode == 2
    assert "is damaged" in one_line(signalled)
    assert fingerprint(db) == before


def test_a_write_that_meets_damage_commits_nothing_and_stops_later_writes(
        cli: Cli, db: Path) -> None:
    overwrite_pages(db, leaves_of(db, "signals"))
    before = fingerprint(db)
    signalled = cli("signal", "waiting-1", "unawaited")  # kept in signals until awaited
    assert signalled.returncode == 2
    assert "is damaged" in one_line(signalled)
    cancelled = cli("cancel", "waiting-2")  # which needs no page of signals
    assert cancelled.returncode == 2
    assert "is damaged" in one_line(cancelled)
    assert fingerprint(db) == before


def test_doctor_finds_a_sound_file_sound_and_a_restored_one_writable_again(
        cli: Cli, db: Path) -> None:
    backup = db.read_bytes()
    report = {f["check"]: f["detail"] for f in cli.json("doctor")["findings"]}
    assert report["journal mode"] == "wal"
    assert report["schema"] == f"version {LATEST}, the newest this Durable knows"
    assert report["integrity"] == "every page is sound (PRAGMA quick_check)"
    assert f"{db.stat().st_size:,} bytes" in report["file"]
    overwrite_pages(db, leaves_of(db, "runs"))
    assert cli("doctor").returncode == 2
    assert cli("signal", "waiting-1", "go").returncode == 2
    db.write_bytes(backup)  # restored
    again = cli("doctor")
    assert again.returncode == 0, again.stdout
    assert "the damage recorded earlier" in again.stdout
    assert not Path(f"{db}-damaged").exists()
    signalled = cli("signal", "waiting-1", "go")
    assert signalled.returncode == 0, signalled.stderr


def test_a_damaged_header_or_a_file_that_is_no_database_is_refused_when_opened(
        cli: Cli, db: Path, tmp_path: Path) -> None:
    with open(db, "r+b") as f:
        f.seek(16)
        f.write(b"\xff" * 8)  # page size and file format versions
    listed = cli("ls")
    assert listed.returncode == 2
    assert "its header (the first 100 bytes) is not valid" in one_line(listed)
    checked = cli("doctor")
    assert checked.returncode == 2
    assert "is not valid" in checked.stdout
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n" * 20)
    started = cli("start", f"{APP}:add", "--input", "[1, 2]", "--db", f"sqlite:///{notes}")
    assert started.returncode == 2
    assert "is not a SQLite database" in one_line(started)
    assert notes.read_text() == "not a database\n" * 20


def test_every_command_refuses_a_database_of_a_newer_schema_naming_both_versions(
        cli: Cli, db: Path) -> None:
    query(db, "INSERT INTO durable_migrations VALUES (?, 0)", (LATEST + 1,))
    before = fingerprint(db)
    for done in cli.all(["ls"], ["signal", "waiting-1", "go"], ["worker", APP], ["migrate"]):
        assert done.returncode == 2
        line = one_line(done)
        assert f"schema version {LATEST + 1}, newer than version {LATEST}" in line
        assert "upgrade Durable" in line
    checked = cli("doctor")
    assert checked.returncode == 2
    assert f"version {LATEST + 1}, newer than version {LATEST}" in checked.stdout
    assert fingerprint(db) == before


@pytest.fixture
def write_locked(db: Path) -> Iterator[None]:
    """Another connection holds the file's write lock, as a frozen writer or an `sqlite3`
    shell in BEGIN IMMEDIATE would, for as long as the test runs."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_opening_and_reading_take_no_write_lock(db_url: str, write_locked: None) -> None:
    began = time.monotonic()
    store = open_store(db_url)
    try:
        assert store.read(lambda tx: tx.get_run("added-1")) is not None
    finally:
        store.close()
    assert time.monotonic() - began < 1  # the busy timeout it used to wait out is 30 s


def test_reading_commands_answer_while_another_connection_holds_the_write_lock(
        cli: Cli, write_locked: None) -> None:
    writing = cli.popen("signal", "waiting-1", "go")  # waits for the lock meanwhile
    for command in (["ls"], ["show", "added-1"], ["result", "added-1"], ["doctor"]):
        began = time.monotonic()
        done = cli(*command)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - began < 5, command  # a Python start-up, not 30 s
    assert writing.wait_exit(timeout=60) == 2  # the busy timeout, then one line
    stderr = writing.errors()
    assert "error: the database is locked: another connection has held its write lock" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_an_open_store_stops_writing_when_damage_is_found_and_resumes_once_doctor_clears_it(
        db_url: str, db: Path) -> None:
    backup = db.read_bytes()
    store = open_store(db_url)  # a worker, say, that lives through all of it
    try:
        overwrite_pages(db, leaves_of(db, "history"))
        with pytest.raises(StoreUnusable, match="is damaged"):
            store.read(lambda tx: tx.history("waiting-3"))
        with pytest.raises(StoreUnusable, match="is damaged"):
            store.write_sync(lambda tx: machine.start_run(tx, "new", "wf", None, 1.0))
        db.write_bytes(backup)  # restored
        assert all(f.ok for f in diagnose(db_url))  # which removes the mark
        deadline = time.monotonic() + 5
        while True:  # the store looks at the mark again within MARK_LOOK_SECONDS
            try:
                store.write_sync(lambda tx: machine.start_run(tx, "new", "wf", None, 1.0))
                break
            except StoreUnusable:
                assert time.monotonic() < deadline, "writes did not resume"
                time.sleep(0.01)
    finally:
        store.close()
    assert query(db, "SELECT run_id FROM runs WHERE run_id = 'new'") == [("new",)]


def test_the_server_answers_503_with_the_reason_for_a_damaged_database(
        db_url: str, db: Path) -> None:
    from fastapi.testclient import TestClient

    from durable.server.app import create_app

    overwrite_pages(db, leaves_of(db, "history"))
    before = fingerprint(db)
    with TestClient(create_app(db_url, serve=False), base_url="http://127.0.0.1") as api:
        shown = api.get("/api/runs/waiting-3")
        signalled = api.post("/api/runs/waiting-4/signal", json={"name": "go"})
    for answer in (shown, signalled):
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "store_unusable"
        assert "is damaged" in answer.json()["error"]["message"]
    assert fingerprint(db) == before


def test_doctor_says_what_it_found_of_postgresql_without_touching_it(
        cli: Cli, pg_url: str) -> None:
    found = cli.json("doctor", "--db", pg_url)
    report = {f["check"]: f["detail"] for f in found["findings"]}
    assert report["connection"].startswith("PostgreSQL ")
    assert "tables in schema durable_test_" in report["connection"]
    assert report["schema"].startswith("no Durable tables yet")  # and it made none
    assert cli.json("doctor", "--db", pg_url) == found
    unreachable = cli("doctor", "--db", "postgresql://durable@127.0.0.1:1/nowhere")
    assert unreachable.returncode == 2
    assert "PROBLEM: cannot connect or read" in unreachable.stdout
    assert "problems (connection)" in one_line(unreachable)
