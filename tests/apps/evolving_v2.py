"""The same pipeline with its steps reordered: runs recorded under v1 diverge from it."""

from durable import Context, workflow


@workflow(name="pipeline")
async def pipeline(ctx: Context, n: int) -> list[int]:
    b = await ctx.step(lambda: n * 2, name="transform")
    a = await ctx.step(lambda: n, name="extract")
    return [a, b]
