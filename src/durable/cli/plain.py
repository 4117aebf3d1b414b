"""What `durable` draws with when rich is not installed (the core install, as in a function's
deployment package): the few rich classes render.py uses, writing plain aligned text, without
colours, panels' borders or the live status line. `pip install 'durable-serverless[cli]'`
brings rich back."""

from __future__ import annotations

import sys
from typing import Any

import click

RenderableType = Any


class Text:
    def __init__(self, text: str = "", style: str = "") -> None:
        self.plain = text

    @classmethod
    def assemble(cls, *parts: str | tuple[str, str]) -> Text:
        return cls("".join(p if isinstance(p, str) else p[0] for p in parts))

    def __str__(self) -> str:
        return self.plain


class Column:
    def __init__(self, header: str = "", *, justify: str = "left", **_: Any) -> None:
        self.header = header
        self.right = justify == "right"


class Table:
    """Columns two spaces apart, a cell's lines kept one under the other; a header row unless
    it is a grid."""

    def __init__(self, *columns: str | Column, show_header: bool = True, **_: Any) -> None:
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.show_header = show_header
        self.rows: list[list[str]] = []

    @classmethod
    def grid(cls, **_: Any) -> Table:
        return cls(show_header=False)

    def add_column(self, header: str = "", **options: Any) -> None:
        self.columns.append(Column(header, **options))

    def add_row(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def __str__(self) -> str:
        rows = ([[c.header for c in self.columns]] if self.show_header else []) + self.rows
        split = [[cell.splitlines() or [""] for cell in row] for row in rows]
        widths = [max((len(line) for row in split for line in row[i]), default=0)
                  for i in range(len(self.columns))]
        out = []
        for row in split:
            for n in range(max(len(lines) for lines in row)):
                cells = [(lines[n] if n < len(lines) else "") for lines in row]
                out.append("  ".join(
                    cell.rjust(w) if col.right else cell.ljust(w)
                    for cell, w, col in zip(cells, widths, self.columns, strict=True)).rstrip())
        return "\n".join(out)


class Group:
    def __init__(self, *parts: object) -> None:
        self.parts = parts

    def __str__(self) -> str:
        return "\n".join(map(str, self.parts))


class Panel:
    def __init__(self, body: object, *, title: str = "", **_: Any) -> None:
        self.body, self.title = body, title

    def __str__(self) -> str:
        return "\n".join([self.title, *(f"  {line}" for line in str(self.body).splitlines())])


class Spinner:
    def __init__(self, name: str, **_: Any) -> None:
        pass

    def update(self, **_: Any) -> None:
        pass


class Live:
    """No live summary without rich: `durable run` and `show --follow` print it once, at the end."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def __enter__(self) -> Live:
        return self

    def __exit__(self, *_: object) -> None:
        pass


class Console:
    def __init__(self, stderr: bool = False, **_: Any) -> None:
        self.stderr = stderr

    @property
    def is_terminal(self) -> bool:
        return (sys.stderr if self.stderr else sys.stdout).isatty()

    def print(self, *objects: object) -> None:
        click.echo(" ".join(map(str, objects)), err=self.stderr)
