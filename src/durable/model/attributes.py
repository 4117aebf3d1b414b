"""Searchable attributes of runs, and the small filter language that finds runs by them.

An attribute is a key with one typed value: text, a number or a time (kept as epoch seconds).
The type decides which column of `run_attributes` holds it and which comparisons mean
something: text compares only for equality, numbers and times also by range. A filter is
conditions joined by AND, e.g. `customer = "acme" AND amount >= 3 AND due < 2026-12-01T00:00Z`.
The parser is hand-written so that each error can say exactly where the filter breaks.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NoReturn

from durable.errors import UsageError

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")
"""An attribute's key: what the filter language can name without quoting."""
TEXT_LIMIT = 1000
"""Longest text value kept, in characters: attributes are for finding runs, not for payloads."""


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    TIME = "time"


@dataclass(frozen=True, slots=True)
class Attribute:
    key: str
    kind: Kind
    value: str | float  # text for TEXT; a number, or epoch seconds for TIME


def attribute(key: str, value: Any) -> Attribute:
    """`value` as the attribute it makes under `key`; UsageError for a key or value that cannot
    be one (booleans are refused: is True the text "true" or the number 1?)."""
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise UsageError(f"attribute key {key!r} is not valid: use a letter or _ then letters, "
                         "digits, _ . or - (at most 100 characters)")
    if isinstance(value, bool):
        raise UsageError(f"attribute {key!r}: a boolean is not an attribute value; give text "
                         "(\"true\"), a number or a time")
    if isinstance(value, str):
        if len(value) > TEXT_LIMIT:
            raise UsageError(f"attribute {key!r}: text longer than {TEXT_LIMIT} characters")
        return Attribute(key, Kind.TEXT, value)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise UsageError(f"attribute {key!r}: {value!r} is not a finite number")
        return Attribute(key, Kind.NUMBER, float(value))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise UsageError(f"attribute {key!r}: the time {value.isoformat()} has no time "
                             "zone; give an aware datetime (e.g. tzinfo=UTC)")
        return Attribute(key, Kind.TIME, value.timestamp())
    raise UsageError(f"attribute {key!r}: a {type(value).__name__} is not an attribute value; "
                     "give text, a number or an aware datetime")


def attributes(values: Mapping[str, Any] | None) -> list[Attribute]:
    return [attribute(k, v) for k, v in (values or {}).items()]


def encode(attrs: list[Attribute]) -> str:
    """The attributes as the JSON a SetAttributes operation records, read back by `decode`
    (the engine's, whatever serializer the workflow uses)."""
    return json.dumps({a.key: [a.kind.value, a.value] for a in attrs})


def decode(payload: str) -> list[Attribute]:
    return [Attribute(k, Kind(kind), value) for k, (kind, value) in json.loads(payload).items()]


def shown(attr: Attribute) -> str | float | int:
    """The value as JSON shows it: text, a number (whole ones as integers), an ISO time."""
    if attr.kind is Kind.TIME:
        return datetime.fromtimestamp(float(attr.value), UTC).isoformat().replace("+00:00", "Z")
    if attr.kind is Kind.NUMBER and float(attr.value).is_integer():
        return int(attr.value)
    return attr.value


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` as `durable start --attr` takes it: the value is a number or a time where
    it reads as one (the filter language's literals), else text; quote it to force text."""
    key, eq, raw = text.partition("=")
    if not eq:
        raise UsageError(f"attribute {text!r} is not key=value")
    raw = raw.strip()
    if raw.startswith('"'):
        return key.strip(), _Parser(raw, "value").text()
    if _NUMBER.fullmatch(raw):
        return key.strip(), float(raw)
    return key.strip(), json_value(raw)


def json_value(value: Any) -> Any:
    """An attribute's value as JSON gives it: text in ISO 8601 with a zone
    (2026-12-01T09:00:00Z) is a time, other values are what they are (`attribute` checks)."""
    if isinstance(value, str) and _TIME.fullmatch(value):
        try:
            return datetime.fromtimestamp(_literal(Kind.TIME, value), UTC)
        except ValueError:
            raise UsageError(f"{value!r} is not a valid time") from None
    return value


# -- filters -------------------------------------------------------------------------------------
class Op(StrEnum):
    EQ = "="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class Condition:
    key: str
    op: Op
    kind: Kind
    value: str | float


class FilterError(UsageError):
    """A filter that does not parse: the message names the position (1-based) and what was
    expected there."""

    def __init__(self, text: str, position: int, expected: str) -> None:
        rest = text[position:position + 20]
        found = repr(rest) if rest else "the end"
        super().__init__(f"bad filter at position {position + 1}: expected {expected}, found "
                         f"{found}; e.g. customer = \"acme\" AND amount >= 3 AND "
                         "due < 2026-12-01T00:00:00Z")
        self.position = position + 1


_OPS = re.compile(r"<=|>=|=|<|>")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)")
_AND = re.compile(r"AND\b", re.IGNORECASE)


def parse_filter(text: str) -> list[Condition]:
    """`text` as conditions all of which a run must meet; FilterError where it breaks."""
    return _Parser(text, "filter").conditions()


def _literal(kind: Kind, raw: str) -> float:
    if kind is Kind.TIME:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    return float(raw)


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.text_, self.at, self.what = text, 0, what

    def conditions(self) -> list[Condition]:
        found = [self.condition()]
        while self.skip() < len(self.text_):
            if not self.take(_AND):
                self.fail("AND or the end of the filter")
            found.append(self.condition())
        return found

    def condition(self) -> Condition:
        self.skip()
        key = self.take(KEY_PATTERN)
        if key is None:
            self.fail("an attribute key (a letter or _ then letters, digits, _ . -)")
        self.skip()
        op = self.take(_OPS)
        if op is None:
            self.fail("a comparison (=, <, <=, >, >=)")
        self.skip()
        start = self.at
        kind, value = self.value()
        if kind is Kind.TEXT and op != Op.EQ:
            self.at = start
            self.fail(f"a number or a time after {op} (text compares only with =)")
        return Condition(key, Op(op), kind, value)

    def value(self) -> tuple[Kind, str | float]:
        if self.text_.startswith('"', self.at):
            return Kind.TEXT, self.text()
        for kind, pattern in ((Kind.TIME, _TIME), (Kind.NUMBER, _NUMBER)):
            raw = self.take(pattern, whole_word=True)
            if raw is not None:
                try:
                    return kind, _literal(kind, raw)
                except ValueError:  # a time of the right shape but no such day or hour
                    self.at -= len(raw)
                    self.fail("a valid time (YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])")
        self.fail('a value: "text", a number, or a time like 2026-12-01T00:00:00Z')

    def text(self) -> str:
        """A double-quoted string from here; backslash escapes \\" and \\\\."""
        start, i = self.at, self.at + 1
        out: list[str] = []
        while i < len(self.text_):
            ch = self.text_[i]
            if ch == '"':
                self.at = i + 1
                return "".join(out)
            if ch == "\\" and i + 1 < len(self.text_):
                i += 1
                ch = self.text_[i]
            out.append(ch)
            i += 1
        self.at = start
        self.fail('a closing " for this text')

    def skip(self) -> int:
        while self.at < len(self.text_) and self.text_[self.at].isspace():
            self.at += 1
        return self.at

    def take(self, pattern: re.Pattern[str], whole_word: bool = False) -> str | None:
        found = pattern.match(self.text_, self.at)
        if found is None:
            return None
        end = found.end()
        if whole_word and end < len(self.text_) and not self.text_[end].isspace():
            return None
        self.at = end
        return found.group()

    def fail(self, expected: str) -> NoReturn:
        if self.what == "filter":
            raise FilterError(self.text_, self.at, expected)
        raise UsageError(f"bad {self.what} {self.text_!r}: expected {expected}")

