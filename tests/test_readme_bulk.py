"""docs/guides/operating.md, "Bulk actions", pasted into a shell as it stands: two runs of
examples/approval_chain.py paused, resumed and terminated in bulk from the command line, then
counted over the API."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from pathlib import Path

import durable
from durable.model import ExecutionStatus
from tests.kit import ROOT, Procs, wait_until
from tests.readmekit import OPERATING, Shell, run_section


def test_the_readme_acts_in_bulk_from_the_cli_and_the_api(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    said: dict[str, str] = {}
    with Procs(tmp_path) as procs, closing(durable.Client(
            f"sqlite:///{tmp_path / '.durable' / 'durable.db'}")) as client:
        shell = Shell(tmp_path, procs)

        def bulk(command: str) -> str:
            if "pause" in command and "--dry-run" in command:  # once both ask their approver
                wait_until(lambda: len(client.list(workflow="ask_approver")) == 2,
                           "the approvers to be asked")
            out = said[command] = shell(command)
            return out

        def curl(command: str) -> str:
            out = said[command] = shell(command)
            return out
        skipped = run_section(OPERATING, "Bulk actions", shell, ports=("8777",),
                              skip=lambda c: False,
                              then={"durable bulk": bulk, "curl": curl})
        statuses = {client.get(r).status for r in ("desk-1", "desk-2")}
    assert skipped == [] and statuses == {ExecutionStatus.STOPPED}
    outputs = list(said.values())
    assert "2 runs match; pause would apply to 2" in outputs[0]
    assert "paused 2 runs, skipped 0" in outputs[1]
    assert "resumed 2 runs, skipped 0" in outputs[2]
    terminated = json.loads(outputs[3])
    assert (terminated["acted"], terminated["status"]) == (2, "DONE")
    assert outputs[4].count("bulk job") == 3
    counted = json.loads(outputs[5])
    assert (counted["job_id"], counted["matched"], counted["acted"]) == (None, 2, 0)
    assert len(json.loads(outputs[6])["jobs"]) == 3
