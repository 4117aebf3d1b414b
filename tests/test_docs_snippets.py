"""Every snippet of README.md and docs/**/*.md runs as a reader would paste it.

The convention (docs/index.md's contributors' note says it too): each ```python block is a
complete script, run on its own in a fresh temporary directory with this venv's Python, so it
must import what it uses and finish quickly on the embedded SQLite default; a block that cannot
run alone is preceded by the line `<!-- skip-snippet -->`. ```bash blocks run only when preceded
by `<!-- run-snippet -->`, under `bash -e` in a fresh directory with this venv's `durable` first
on PATH. A snippet passes when it exits 0; one that names a postgresql:// database runs on
the tests' PostgreSQL server, skipping (failing in CI) without one as every PostgreSQL test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kit import ROOT
from tests.pgkit import require_server

SKIP = "<!-- skip-snippet -->"
RUN = "<!-- run-snippet -->"
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
BIN = str(Path(sys.executable).parent)


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    marker: str | None  # SKIP, RUN or None: the last non-blank line before the fence
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def runs(self) -> bool:
        if self.lang == "python":
            return self.marker != SKIP
        return self.lang == "bash" and self.marker == RUN


def snippets(path: Path) -> list[Snippet]:
    """The fenced blocks of one Markdown file, with the marker line before each."""
    lines = path.read_text().splitlines()
    found: list[Snippet] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening or not opening["lang"]:
            i += 1
            continue
        indent = opening["indent"]
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].strip() == "```"), None)
        assert end is not None, f"{path}:{i + 1}: a ``` block that never closes"
        before = next((line.strip() for line in reversed(lines[:i]) if line.strip()), None)
        code = "\n".join(line.removeprefix(indent) for line in lines[i + 1:end]) + "\n"
        found.append(Snippet(path, i + 1, opening["lang"],
                             before if before in (SKIP, RUN) else None, code))
        i = end + 1
    return found


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


ALL = [s for doc in documents() for s in snippets(doc)]


def environment() -> dict[str, str]:
    """The reader's shell: none of this machine's DURABLE_* or AWS_* settings, the venv first."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DURABLE_", "AWS_", "PYTHONPATH"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.parametrize("snippet", [s for s in ALL if s.runs], ids=lambda s: s.name)
def test_each_runnable_snippet_of_the_docs_runs_alone_in_a_fresh_directory(
        snippet: Snippet, tmp_path: Path) -> None:
    if "postgresql://" in snippet.code:
        require_server()  # as every PostgreSQL test: skips without one, fails so in CI
    if snippet.lang == "python":
        script = tmp_path / "snippet.py"
        script.write_text(snippet.code)
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-c", snippet.code]
    done = subprocess.run(argv, cwd=tmp_path, env=environment(), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, (
        f"{snippet.name} exited {done.returncode}\n--- code\n{snippet.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")


def test_every_marker_stands_right_before_a_block_it_can_apply_to() -> None:
    """A marker left above prose, or a run marker on a Python block, would silently do
    nothing: the reader's copy of that block would go untested."""
    marked = {(s.path, s.line) for s in ALL if s.marker}
    for doc in documents():
        lines = doc.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            if line.strip() not in (SKIP, RUN):
                continue
            after = next((j for j in range(number, len(lines)) if lines[j].strip()), None)
            assert after is not None and (doc, after + 1) in marked, (
                f"{doc.relative_to(ROOT)}:{number}: {line.strip()} is not followed by a block")
    assert not [s.name for s in ALL if s.marker == RUN and s.lang != "bash"], \
        "run-snippet is for bash blocks: python blocks run unless marked skip-snippet"


def test_most_python_snippets_run_rather_than_being_skipped() -> None:
    python = [s for s in ALL if s.lang == "python"]
    skipped = [s.name for s in python if not s.runs]
    assert python and len(skipped) <= len(python) // 3, (
        f"{len(skipped)} of {len(python)} python snippets skipped: {skipped}")


def test_every_relative_link_of_the_readme_names_a_file_of_the_repository() -> None:
    """`mkdocs build --strict` checks the site's links; the README, the landing page read on
    the forge and in the package's metadata, is outside the site, so its links are checked
    here."""
    readme = (ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", readme)
               if not t.startswith(("http://", "https://", "#"))]
    assert targets
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
