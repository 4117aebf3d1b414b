"""`ctx.cancel_run(run_id)`: a workflow cancels another run, recorded once, as `ctx.signal_run`
signals one: the target is cancelled as by `Client.cancel`; a target that does not exist or has
ended is a `CancelRunFailed` the workflow may catch, recorded so a replay raises it again."""

from __future__ import annotations

from durable import Context, ExecutionStatus, workflow
from durable.errors import Cancelled, CancelRunFailed
from durable.testing import TestEnvironment


@workflow(name="cancel_run_target")
async def target(ctx: Context) -> str:
    try:
        await ctx.wait_for_signal("never")
    except Cancelled:
        await ctx.step(lambda: None, name="clean up")  # its handler runs: a cancel, not a stop
        raise
    return "not cancelled"


@workflow(name="cancel_run_canceller")
async def canceller(ctx: Context, run_id: str) -> list[str]:
    outcomes = []
    for asked in (run_id, "no-such-run"):
        try:
            await ctx.cancel_run(asked)
            outcomes.append(f"{asked}: asked")
        except CancelRunFailed as e:
            outcomes.append(f"{asked}: {e.error.message}")
        await ctx.sleep(1)  # durable work between: the replays pass the recorded cancels
    return outcomes


async def test_a_workflow_cancels_another_run_once_and_learns_of_a_missing_one(
        any_db: str) -> None:
    async with TestEnvironment(target, canceller, db=any_db) as env:
        env.start(target, id="target")
        await env.settle()
        outcomes = await env.run(canceller, "target", id="canceller")
        assert outcomes[0] == "target: asked"
        assert outcomes[1].startswith("no-such-run: ") and "no-such-run" in outcomes[1]
        run = env.get("target")
        assert run.status is ExecutionStatus.STOPPED
        assert [op.name for op in env.operations("target") if op.name == "clean up"] == [
            "clean up"]
        events = [e.type for e in env.client.history("target")]
        assert events.count("ExecutionCancelRequested") == 1

        again = await env.run(canceller, "target", id="too-late")
        assert again[0].startswith("target: run 'target' has already ended")
