"""The durable key-value store shared by all runs: the commands and what they answer.

A command travels to the engine two ways: from workflow code as the payload of a STEP of
sub type `Kv` (the engine applies it in the transaction that records the operation, and the
outcome becomes the operation's result, so a replay reads the outcome and never applies the
command again), and from outside a workflow (`Client.kv`) as a transaction of its own. Values
are JSON text, as the default serializer writes it: the engine itself reads them to add to a
number or compare an expected value, so no workflow's own serializer can be used for them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from durable.errors import UsageError

KEY_MAX = 1024
"""Characters a key may have at most: a key names a value, it is not a value itself."""


class KvOp(StrEnum):
    GET = "get"
    SET = "set"
    DELETE = "delete"
    CHECK_AND_SET = "check_and_set"
    ADD = "add"
    KEYS = "keys"
    SET_IF_VERSION = "set_if_version"
    """Set only if the key is still at `version`: one round of `mutate`, which reads the value,
    computes the new one in the caller's code, and tries again from what it finds if another
    writer came in between."""


READS = frozenset({KvOp.GET, KvOp.KEYS})


@dataclass(frozen=True, slots=True)
class KvCommand:
    """One command. `value`, `expected`: JSON text (None for `expected`: the key is absent or
    null). `n`: what ADD adds. `version`: what SET_IF_VERSION expects (0: absent)."""

    op: KvOp
    key: str
    value: str | None = None
    expected: str | None = None
    n: int | float | None = None
    version: int | None = None

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None})

    @classmethod
    def from_json(cls, text: str) -> KvCommand:
        d = json.loads(text)
        return cls(KvOp(d["op"]), d["key"], d.get("value"), d.get("expected"), d.get("n"),
                   d.get("version"))

    def describe(self) -> str:
        """The command's operation name in a run's history: what it did, to which key."""
        return f"kv.{self.op.value} {self.key}"


@dataclass(frozen=True, slots=True)
class KvOutcome:
    """What a command found or left. `value`: the key's value (JSON text) after the command,
    or, where it changed nothing (a failed check), as it stands; None when absent. `version`
    counts the key's writes (0: never written), so a `mutate` can tell nobody wrote between its
    read and its write. `ok`: a check held (or, for DELETE, the key existed)."""

    value: str | None = None
    version: int = 0
    ok: bool = True
    keys: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> KvOutcome:
        d = json.loads(text)
        return cls(d["value"], d["version"], d["ok"], d["keys"])


@dataclass(frozen=True, slots=True)
class KvEntry:
    """A key as the store holds it, for listings (CLI, API, UI)."""

    key: str
    value: str
    version: int
    updated_at: float


def check_key(key: object, where: str) -> str:
    """`key` if it is a usable key, else one clear error naming `where` it was given."""
    if not isinstance(key, str) or not key:
        raise UsageError(f"{where}: a key is a non-empty string, not {key!r}")
    if len(key) > KEY_MAX:
        raise UsageError(f"{where}: key {key[:40]!r}... is {len(key)} characters long, more "
                         f"than the {KEY_MAX} a key may have; keep keys short and store the "
                         "data under them as the value")
    return key


def check_prefix(prefix: object, where: str) -> str:
    if not isinstance(prefix, str):
        raise UsageError(f"{where}: a prefix is a string, not {prefix!r}")
    return prefix


def check_number(n: object, where: str) -> int | float:
    if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
        raise UsageError(f"{where}: add takes a finite number (int or float), not {n!r}")
    return n


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
