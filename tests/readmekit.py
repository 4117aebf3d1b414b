"""Running a README's or a docs page's shell commands as a user pastes them: the ```bash
blocks of one section, one command at a time (continuation lines joined), in a working
directory of the test's, with this venv's `durable`, `uvicorn` and `aws` first on PATH.

A command ending in `&` starts in the background and is waited on until the port it was given
answers (a user sees it come up before typing on); `export` and `cd` change what the following
commands see, as in the user's shell; every other command runs under bash and must succeed.
The test says which commands it does not run (`pip install`: this venv has the packages; what
needs an AWS account) and which it runs itself, so a command added to the README without a
test fails the test rather than being skipped."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.kit import ROOT, Procs, free_port

BIN = str(Path(sys.executable).parent)


def section(readme: Path, title: str) -> str:
    """The text under the heading `title` (any level), up to the next heading of that level."""
    text = readme.read_text()
    found = re.search(rf"^(#+) {re.escape(title)}\n(.*?)(?=^\1 |\Z)", text, re.M | re.S)
    assert found, f"no section {title!r} in {readme}"
    return found[2]


def commands(text: str, blocks: slice) -> Iterator[str]:
    """Each command of those ```bash blocks in `text`, continuation lines joined."""
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)[blocks]:
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                yield line.strip()


class Shell:
    """The user's shell: its environment and working directory, and what it left running."""

    def __init__(self, cwd: Path, procs: Procs) -> None:
        self.cwd = cwd
        self.procs = procs
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("AWS_", "DURABLE_", "PYTHONPATH"))}
        self.env["PATH"] = f"{BIN}{os.pathsep}{self.env.get('PATH', '')}"

    def __call__(self, command: str) -> str:
        """Run one command as the README has it; its standard output."""
        words = shlex.split(command, comments=True)
        if words[0] == "export":
            self.env.update(word.split("=", 1) for word in words[1:])
            return ""
        if words[0] == "cd":
            self.cwd = (self.cwd / words[1]).resolve()
            return ""
        if words[-1] == "&":
            self._background(words[:-1])
            return ""
        done = subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (f"`{command}` exited {done.returncode}:\n{done.stderr}"
                                      f"\n{self.procs.logs()[-4000:]}")
        return done.stdout

    def _background(self, argv: list[str]) -> None:
        url = f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/"
        self.procs.start(*argv, name=Path(argv[0]).name, env=self.env, cwd=self.cwd
                         ).wait_answering(url)


Special = dict[str, Callable[[str], str]]


def run_section(readme: Path, title: str | tuple[str, ...], shell: Shell, *,
                blocks: slice = slice(None), ports: tuple[str, ...] = (),
                skip: Callable[[str], bool], then: Special) -> list[str]:
    """Run the commands of the section's `blocks` in `shell` (of several sections, one after
    the other, as one), each port in `ports` replaced by a free one (what the README says of
    any port); `then[prefix]` runs a command starting with prefix instead (it may wait, fill a
    placeholder, check the output). Returns what was skipped."""
    titles = (title,) if isinstance(title, str) else title
    text = "".join(section(readme, t) for t in titles)
    for port in ports:
        text = text.replace(port, str(free_port()))
    skipped = []
    for command in commands(text, blocks):
        if skip(command):
            skipped.append(command)
            continue
        special = next((fn for prefix, fn in then.items() if command.startswith(prefix)), None)
        if special is None:
            shell(command)
        else:
            special(command)
    return skipped


SERVERLESS_README = ROOT / "examples" / "serverless" / "README.md"
OPERATING = ROOT / "docs" / "guides" / "operating.md"  # the site's pages that were the README's
AWS_LAMBDA = ROOT / "docs" / "guides" / "aws-lambda.md"
