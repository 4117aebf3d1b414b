"""Two stores of one SQLite file in one process, and another process writing to it: opening the
second store must not drop the first's POSIX locks (closing any descriptor of a file drops all
of a process's locks on it), or the other process, taking itself for the last connection,
checkpoints the WAL away under the first, which then misses its writes and corrupts the file."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing
from pathlib import Path

import durable


def test_a_write_from_another_process_is_seen_after_a_second_store_opened_here(
        tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    with closing(durable.Client(db)) as first:
        first.start_run("here", "1")
        with closing(durable.Client(db)):  # reads the file's header on opening
            pass
        child = subprocess.run(
            [sys.executable, "-c", "import durable, sys; durable.Client(sys.argv[1])"
             ".start_run('there', '1')", db], capture_output=True, text=True, timeout=60)
        assert child.returncode == 0, child.stderr
        assert sorted(r.workflow for r in first.runs().runs) == ["here", "there"]
    with closing(durable.Client(db)) as again:
        assert len(again.runs().runs) == 2
