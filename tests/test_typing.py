"""The public API's types as a user's type checker sees them: every tests/typing/test_*.py is
checked by mypy --strict and by pyright, and each checker must report an error on exactly the
lines marked `# expect-error` (a mistake the types must catch) and on no other (an
`assert_type` that no longer holds, a type that became Any, an error in the SDK itself).

Expected errors are marked rather than silenced with per-checker ignore codes because both
checkers pick which error to report for a call no overload matches differently from one
version (and one neighbouring comment) to the next; that some error is reported on the line is
what matters. `# type: ignore[...]` lines work too: mypy and pyright both honour them and, as
configured, report one that suppresses nothing.

pyright is basedpyright's build of it: its wheel bundles the checker and node, so it runs
offline once installed, where PyPI's `pyright` downloads its npm package when first run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TYPING = ROOT / "tests" / "typing"
FILES = sorted(TYPING.glob("test_*.py"))
MARK = re.compile(r"#\s*expect-error\s*$")
BIN = Path(sys.executable).parent

Errors = dict[tuple[Path, int], list[str]]
"""What a checker reported: the messages of its errors, by file and (1-based) line."""


def expected(files: Sequence[Path]) -> set[tuple[Path, int]]:
    return {(path.resolve(), number) for path in files
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if MARK.search(line)}


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)


def mypy(files: Sequence[Path]) -> Errors:
    # The project's configuration (pyproject.toml) with --strict, as a user's strictest run.
    done = _run([str(BIN / "mypy"), "--strict", "--no-error-summary", "--hide-error-context",
                 *map(str, files)])
    if done.returncode not in (0, 1):  # 2: mypy itself failed (bad options, a crash)
        pytest.fail(f"mypy could not check:\n{done.stdout}{done.stderr}")
    errors: Errors = {}
    for line in done.stdout.splitlines():
        found = re.match(r"(?P<file>.+?):(?P<line>\d+): error: (?P<message>.*)", line)
        if found:
            key = ((ROOT / found["file"]).resolve(), int(found["line"]))
            errors.setdefault(key, []).append(found["message"])
    if done.returncode == 1 and not errors:
        pytest.fail(f"mypy failed without an error line:\n{done.stdout}{done.stderr}")
    return errors


def pyright(files: Sequence[Path]) -> Errors:
    done = _run([str(BIN / "basedpyright"), "--outputjson", "-p",
                 str(TYPING / "pyrightconfig.json"), "--pythonpath", sys.executable,
                 *map(str, files)])
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pyright could not check:\n{done.stdout}{done.stderr}")
    errors: Errors = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            key = (Path(diagnostic["file"]).resolve(),
                   diagnostic["range"]["start"]["line"] + 1)
            errors.setdefault(key, []).append(
                f"{diagnostic['message']} ({diagnostic.get('rule', 'error')})")
    if done.returncode != 0 and not errors:
        pytest.fail(f"pyright failed without an error:\n{done.stdout}{done.stderr}")
    return errors


CHECKERS: dict[str, Callable[[Sequence[Path]], Errors]] = {"mypy": mypy, "pyright": pyright}


def discrepancies(files: Sequence[Path], errors: Errors) -> list[str]:
    """Each line where the checker's errors and the marks disagree, as a readable line."""
    marked = expected(files)
    wrong = [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: "
             f"unexpected error: {' | '.join(messages)}"
             for (path, line), messages in sorted(errors.items()) if (path, line) not in marked]
    missed = [f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}: "
              "marked # expect-error, but the checker accepts it"
              for path, line in sorted(marked - set(errors))]
    return wrong + missed


SAMPLE = """\
from typing import assert_type
from durable import Context, workflow

@workflow
async def double(ctx: Context, n: int) -> int:
    assert_type(await ctx.step(abs, n), str)
    await ctx.step(abs, n)  # expect-error
    await ctx.step(abs, 'n')  # expect-error
    await ctx.step(abs, 'n')  # type: ignore[arg-type]
    return await ctx.step(abs, n)  # type: ignore[arg-type]
"""
"""A file the harness must find fault with: a wrong assert_type on line 6, a mark on line 7
where nothing is wrong, and on line 10 an ignore that ignores nothing. Lines 8 and 9 are
mistakes caught as marked, and as ignored."""


@dataclass(frozen=True)
class Checked:
    sample: Path
    errors: Errors


@pytest.fixture(scope="module", params=sorted(CHECKERS))
def checked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Checked:
    """One run of a checker over tests/typing and SAMPLE together, the costly part shared."""
    # A new module name each time: mypy's cache would answer for an earlier file of the same
    # name and content, with that file's path.
    sample = tmp_path_factory.mktemp("typing") / f"test_sample_{uuid.uuid4().hex}.py"
    sample.write_text(SAMPLE)
    return Checked(sample, CHECKERS[request.param]([*FILES, sample]))


def test_the_typing_files_are_there() -> None:
    assert TYPING / "test_sdk_types.py" in FILES


def test_types_flow_through_the_sdk_and_mistakes_do_not_type_check(checked: Checked) -> None:
    problems = discrepancies(FILES, {key: messages for key, messages in checked.errors.items()
                                     if key[0] != checked.sample.resolve()})
    assert not problems, "the checker disagrees with tests/typing:\n" + "\n".join(problems)


def test_the_harness_reports_a_wrong_type_and_a_mistake_that_type_checks(
        checked: Checked) -> None:
    sample = checked.sample.resolve()
    problems = discrepancies([sample], {key: messages for key, messages in
                                        checked.errors.items() if key[0] == sample})
    assert sorted(p.split(": ", 1)[0].rsplit(":", 1)[1] for p in problems) == ["10", "6", "7"], \
        problems
    assert "the checker accepts it" in problems[-1]
    assert all("unexpected error" in p for p in problems[:-1])
