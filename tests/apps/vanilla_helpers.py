"""Another module of the project for tests/test_vanilla.py: its functions run inline in an auto
workflow, and the calls they make are routed like the workflow's own."""

from __future__ import annotations

from tests.apps import vanilla_ext


def announce(word: str) -> str:
    loud = word.upper()
    vanilla_ext.notify(loud)
    return loud
