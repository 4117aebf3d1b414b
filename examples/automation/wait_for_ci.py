"""A run that waits for the next matching event: a deploy that goes out only once CI has passed
on its commit.

`ctx.subscribe` buffers the events of a topic that pass its filter from the moment it is
recorded, so a CI result published while the run is busy, or before it starts waiting, is not
lost; `ctx.next_event` takes the oldest, or waits for one, holding no process meanwhile. Both are
recorded: a replay sees the same events in the same order.

Run it (the publish plays the CI system):

    durable run examples/automation/wait_for_ci.py:deploy_when_green --id deploy-1 \\
        --input '{"sha": "4f2a9c1"}' &
    durable publish ci '{"sha": "4f2a9c1", "passed": true}'
"""

import json
from dataclasses import dataclass
from datetime import timedelta

from durable import Context, WaitTimeout, workflow


@dataclass
class Deploy:
    sha: str
    ci_timeout: float = 3600.0  # seconds to wait for CI before giving up


def ship(sha: str) -> str:
    """A stand-in for the deploy itself."""
    return f"deployed {sha}"


@workflow
async def deploy_when_green(ctx: Context, deploy: Deploy) -> str:
    # Only this commit's results: other commits' CI runs publish on the same topic. The sha
    # goes in as a JSON string, which is a CEL string literal too, quotes escaped.
    ci = ctx.subscribe("ci", filter=f"data.sha == {json.dumps(deploy.sha)}")
    while True:
        try:
            result = await ctx.next_event(ci, timeout=timedelta(seconds=deploy.ci_timeout))
        except WaitTimeout:
            return f"gave up on {deploy.sha}: no CI result"
        if result["data"]["passed"]:
            return await ctx.step(ship, deploy.sha, name="ship")
        ctx.logger.info("CI failed on %s; waiting for a rerun", deploy.sha)
