"""examples/serverless/README.md, "Run it locally", pasted into a shell as it stands: in a fresh
copy of the example, the function host and `durable server` each on a free port in place of the
README's 9000 and 8777, a run started with `durable start` and one with `aws lambda invoke`,
approved with `durable callback succeed`, ending with the result the workflow computes. (The
section's third block, a server behind a proxy, shows other options rather than a next step.)"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from durable import Client
from tests.kit import ROOT, Procs, wait_until
from tests.readmekit import SERVERLESS_README, Shell, run_section


def test_the_commands_of_run_it_locally_run_the_example_on_any_port(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples" / "serverless", tmp_path / "examples" / "serverless",
                    ignore=shutil.ignore_patterns("__pycache__", "*.yaml", "requirements.txt"))
    db = f"sqlite:///{tmp_path}/.durable/durable.db"  # the default, in the directory it ran in

    def callback(run_id: str) -> str:
        def waiting() -> str | None:
            view = json.loads(shell(f"durable show {run_id} --json"))
            return next((p["callback_id"] for p in view["pending"] if p["callback_id"]), None)
        found: str = wait_until(waiting, f"run {run_id} to wait on its callback")
        return found

    def show(command: str) -> str:
        callback_id = callback("order-17")
        shown = shell(command)
        assert "approval" in shown and callback_id in shown, shown
        return shown

    def succeed(command: str) -> str:
        return shell(command.replace("CALLBACK_ID", callback("order-17")))

    def result(command: str) -> str:
        out = shell(command)
        assert json.loads(out)["payment"] == "charge-17-25", out
        return out

    with Procs(tmp_path) as procs:
        shell = Shell(tmp_path, procs)
        skipped = run_section(
            SERVERLESS_README, "Run it locally", shell, blocks=slice(2), ports=("9000", "8777"),
            skip=lambda command: command.startswith("pip install"),
            then={"durable show": show, "durable callback succeed": succeed,
                  "durable result": result})
        assert [command.split("  #")[0].rstrip() for command in skipped] == [
            "pip install 'durable-serverless[server]'", "pip install awscli"]

        client = Client(db)
        try:
            def invoked() -> list[str] | None:
                inputs = [r.input or "" for r in client.list(workflow="checkout")]
                return inputs if any('"18"' in i for i in inputs) else None
            wait_until(invoked, "the run `aws lambda invoke` started")
        finally:
            client.close()
