"""docs/guides/operating.md, "Terminate" and "Delete and retention", pasted into a shell as they
stand: `durable server` serving examples/approval_chain.py on a free port, one run terminated
from the CLI (its approver runs end with it), one over HTTP with its children abandoned, both
deleted (from the CLI and over HTTP), then purges from the CLI and over HTTP, which find
nothing old enough."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from durable import Client
from durable.model import ExecutionStatus
from tests.kit import ROOT, Procs, wait_until
from tests.readmekit import OPERATING, Shell, run_section


def test_the_commands_of_operating_durable(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(ROOT / "examples" / "approval_chain.py", tmp_path / "examples")
    outbox = tmp_path / ".durable" / "outbox.jsonl"
    client = Client(f"sqlite:///{tmp_path}/.durable/durable.db")

    def asked(approvers: int) -> None:
        wait_until(lambda: outbox.exists() and len(outbox.read_text().splitlines()) >= approvers,
                   f"{approvers} approvers to be asked")

    def children(run_id: str) -> list[ExecutionStatus]:
        return [r.status for r in client.list() if r.parent_run_id == run_id]

    def terminate_cli(command: str) -> str:
        asked(3)
        out = shell(command)
        assert "laptop-1 terminated" in out, out
        assert children("laptop-1") == [ExecutionStatus.STOPPED] * 3
        return out

    def show(command: str) -> str:
        out = shell(command)
        assert "STOPPED" in out, out
        assert "terminated: Execution.Stopped: request withdrawn; running child runs: " \
            "terminate" in " ".join(out.split()), out
        return out

    def curl(command: str) -> str:
        out = shell(command)
        if "/terminate" in command:
            asked(5)
            assert json.loads(out)["status"] == "STOPPED", out
            assert children("laptop-2") == [ExecutionStatus.RUNNING] * 2  # they run on
        elif "/api/purge" in command:
            assert json.loads(out) == {"deleted": 0, "more": False}, out  # none ended in 2025
        else:
            assert json.loads(out)["message"] == "run laptop-2 deleted", out
        return out

    with Procs(tmp_path) as procs:
        shell = Shell(tmp_path, procs)
        try:
            run_section(OPERATING, ("Terminate", "Delete and retention"), shell, ports=("8777",),
                        skip=lambda command: False,
                        then={"durable terminate": terminate_cli, "durable show": show,
                              "curl": curl})
            # The parents are deleted; their children are runs of their own, ended too recently
            # for the purges (laptop-1's) or still running (laptop-2's, abandoned).
            left = sorted((r.run_id.rpartition("-")[0], r.status) for r in client.list())
            assert left == [("laptop-1", ExecutionStatus.STOPPED)] * 3 + [
                ("laptop-2", ExecutionStatus.RUNNING)] * 2
        finally:
            client.close()
