"""A module defining exactly one workflow, which imports a sibling module by its plain name: a
file target puts its own directory on sys.path, as `python single_app.py` would."""

from __future__ import annotations

from sibling_steps import shout  # type: ignore[import-not-found]

from durable import Context, workflow


@workflow
async def loud(ctx: Context, word: str) -> str:
    return await ctx.step(shout, word)
