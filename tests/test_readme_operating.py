"""docs/guides/operating.md, "Pause, edit and resume", pasted into a shell as it stands: a
server serving examples/invoice.py, one run fixed from the command line and one over the API;
each ends with the rate the operator recorded, not with the supplier's outage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import durable
from durable.model import OperationStatus
from tests.kit import ROOT, Procs, wait_until
from tests.readmekit import OPERATING, Shell, run_section


def test_the_readme_pauses_edits_and_resumes_from_the_cli_and_the_api(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    results: list[dict[str, object]] = []
    with Procs(tmp_path) as procs:
        shell = Shell(tmp_path, procs)
        client = durable.Client(f"sqlite:///{tmp_path / '.durable' / 'durable.db'}")

        def retrying(run_id: str) -> bool:
            ops = client.operations(run_id)
            return any(op.name == "fetch_rate" and op.status is OperationStatus.PENDING
                       for op in ops)

        def pause_once_it_retries(command: str) -> str:
            """As the operator does: pause once `durable show` shows the step retrying."""
            run_id = "inv-1" if command.startswith("durable") else "inv-2"
            wait_until(lambda: retrying(run_id), f"{run_id}'s fetch_rate to wait to retry")
            out = shell(command)
            assert "PAUSED" in out
            return out

        def posted(command: str) -> str:
            return pause_once_it_retries(command) if command.endswith("/pause") \
                else shell(command)

        def result(command: str) -> str:
            out = shell(command)
            results.append(json.loads(out) if command.startswith("durable")
                           else json.loads(out)["result"])
            return out
        skipped = run_section(
            OPERATING, "Pause, edit and resume", shell, ports=("8777",), skip=lambda c: False,
            then={"durable pause": pause_once_it_retries, "curl -s -X POST": posted,
                  "durable result": result, "curl -s 'http": result})
        client.close()
    assert skipped == []
    assert results == [{"customer": "acme", "rate": 0.9, "total": 90.0},
                       {"customer": "globex", "rate": 0.8, "total": 80.0}]
