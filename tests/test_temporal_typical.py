"""examples/temporal_style/typical.py, a Temporal user's typical program with only its imports
changed, run as a program on each store: it prints what its docstring says Temporal prints, and
prints it again when run a second time against the same database (Temporal's default id reuse
policy lets a program start its fixed workflow ids anew)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

TYPICAL = Path(__file__).parent.parent / "examples" / "temporal_style" / "typical.py"
RUN_GUARD = 120.0  # a hang fails the test instead of the suite; never reached when it works


def expected_output() -> list[str]:
    """The lines the program's docstring says it prints (the indented block after "prints
    what it prints under Temporal")."""
    doc = ast.get_docstring(ast.parse(TYPICAL.read_text()), clean=False) or ""
    block = doc.split("prints what it prints under Temporal", 1)[1].split("\n", 1)[1]
    return [line.strip() for line in block.splitlines() if line.startswith("    ")]


def test_the_typical_temporal_program_prints_what_it_prints_under_temporal_twice(
        any_db: str, tmp_path: Path) -> None:
    expected = expected_output()
    assert len(expected) == 9
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL_", "DURABLE_"))}
    env["TEMPORAL_ADDRESS"] = any_db  # as a deployment points Temporal code at its frontend
    for _ in range(2):
        done = subprocess.run([sys.executable, str(TYPICAL)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=RUN_GUARD)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == expected, done.stderr
