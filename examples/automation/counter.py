"""A counter in the durable key-value store: every page view published on `page.views` starts a
run that counts it, exactly once, however many workers serve the trigger.

`ctx.kv.add` is atomic in the database (SQLite or PostgreSQL) and recorded in the run's history:
a worker killed after it and the run's replay do not count the view twice. The counts outlive
every run; read them with `durable kv ls views/`, `client.kv.get("views/home")`, or the web UI's
KV store page.

Run it:

    durable worker examples/automation/counter.py &
    durable publish page.views '{"page": "home"}' --id view-1
    durable publish page.views '{"page": "home"}' --id view-1    # a retry: not counted again
    durable kv get views/home
"""

from typing import Any

from durable import Context, workflow


@workflow(name="count_view", on_event="page.views", filter="has(data.page)")
async def count_view(ctx: Context, event: dict[str, Any]) -> int:
    page = event["data"]["page"]
    views = await ctx.kv.add(f"views/{page}")
    if views % 1000 == 0:  # a milestone, recorded with the count it was reached at
        await ctx.kv.set(f"milestones/{page}", views)
    return views
