"""A pipeline as first deployed (see evolving_v2.py for the reordered deploy)."""

from durable import Context, workflow


@workflow(name="pipeline")
async def pipeline(ctx: Context, n: int) -> list[int]:
    a = await ctx.step(lambda: n, name="extract")
    b = await ctx.step(lambda: a * 2, name="transform")
    return [a, b]
