"""Composition and evolution: parallel branches, map, child workflows, versioning, replay,
rerun and continue-as-new."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import durable
from durable import (
    BatchFailed,
    ChildFailed,
    Completion,
    Context,
    ExecutionStatus,
    RetryPolicy,
    StepFailed,
    workflow,
)
from durable.model import ABANDONED, OperationStatus, OperationType, SubType
from durable.model.ids import RUN_ID_MAX, check_run_id
from durable.store import Tx
from durable.views.timeline import describe
from tests.kit import wait_until_async
from tests.test_workflows import finish, run_to_end, serving

ONCE = RetryPolicy(max_attempts=1)


async def branch(ctx: Context, i: int, delay: float) -> str:
    await ctx.sleep(delay)
    return await ctx.step(lambda: f"branch-{i}", name="finish")


async def test_gather_returns_results_in_order_whatever_order_branches_finish(client):
    @workflow
    async def wf(ctx: Context) -> list[str]:
        return await ctx.gather(branch(ctx, 0, 0.15), branch(ctx, 1, 0.01), branch(ctx, 2, 0.08))

    handle = await run_to_end(client, wf)
    assert handle.result() == ["branch-0", "branch-1", "branch-2"]
    steps = [o for o in client.operations(handle.run_id) if o.name == "finish"]
    assert len(steps) == 3 and len({o.id for o in steps}) == 3
    assert len({o.parent_id for o in steps}) == 3  # one scope per branch


async def test_a_waiting_branch_does_not_hold_up_the_others(client):
    ran: list[str] = []

    @workflow
    async def wf(ctx: Context) -> list[Any]:
        async def waits() -> Any:
            return await ctx.wait_for_signal("go")

        async def works() -> str:
            await ctx.step(lambda: ran.append("worked"), name="work")
            return "done"
        return await ctx.gather(waits(), works())

    handle = client.start(wf)
    async with serving(client, wf):
        await wait_until_async(lambda: ran == ["worked"],  # while the other branch waits
                               "the working branch to finish")
        assert client.get(handle.run_id).status is ExecutionStatus.RUNNING
        client.signal(handle.run_id, "go", 7)
        await finish(client, handle.run_id)
    assert handle.result() == [7, "done"]
    assert ran == ["worked"]


async def test_gather_fails_fast_with_the_first_failure(client):
    @workflow
    async def wf(ctx: Context) -> str:
        def boom() -> None:
            raise ValueError("broken branch")
        try:
            await ctx.gather(ctx.step(boom, retry=ONCE), ctx.sleep(3600))
        except StepFailed as e:
            return e.error_message
        return "no"

    handle = await run_to_end(client, wf)
    assert handle.result() == "broken branch"


async def test_map_keeps_item_order_and_limits_concurrency(client):
    running = 0
    peak = 0

    async def square(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return x * x

    @workflow
    async def wf(ctx: Context) -> list[int]:
        result = await ctx.map(square, range(20), max_concurrency=4)
        return list(result)  # type: ignore[arg-type]

    handle = await run_to_end(client, wf)
    assert handle.result() == [x * x for x in range(20)]
    assert peak <= 4


async def test_map_tolerates_failures_within_its_completion_policy(client):
    def check(x: int) -> int:
        if x % 5 == 0:
            raise ValueError(f"bad {x}")
        return x

    @workflow
    async def tolerant(ctx: Context) -> dict[str, Any]:
        r = await ctx.map(check, range(1, 11), completion=Completion.tolerate(failures=2),
                          retry=ONCE)
        return {"results": r.results, "failed": r.failed, "reason": r.completion_reason}

    @workflow
    async def strict(ctx: Context) -> str:
        try:
            await ctx.map(check, range(1, 11), completion=Completion.tolerate(failures=1),
                          retry=ONCE)
        except BatchFailed as e:
            return str(e)
        return "no"

    out = (await run_to_end(client, tolerant)).result()
    assert out == {"results": [1, 2, 3, 4, 6, 7, 8, 9], "failed": 2, "reason": "ALL_COMPLETED"}
    assert "2 of 10 items failed" in (await run_to_end(client, strict)).result()


async def test_map_with_min_successful_stops_early_and_replays_the_same_decision(client):
    @workflow
    async def wf(ctx: Context) -> list[Any]:
        r = await ctx.map(lambda x: x, range(10), max_concurrency=1,
                          completion=Completion.at_least(3))
        await ctx.sleep(0.01)  # replay after the decision: it must come out the same
        return [r.results, r.completion_reason]

    handle = await run_to_end(client, wf)
    assert handle.result() == [[0, 1, 2], "MIN_SUCCESSFUL_REACHED"]


async def test_branches_a_completion_policy_abandons_end_recorded_as_abandoned(client):
    @workflow
    async def wf(ctx: Context) -> list[str]:
        async def waits() -> str:
            await ctx.wait_for_signal("never")
            return "late"

        async def quick() -> str:
            return await ctx.step(lambda: "quick", name="quick")
        batch = await ctx.gather(waits(), quick(), completion=Completion.at_least(1))
        await ctx.sleep(0.01)  # replay after the decision: nothing is abandoned anew
        return [item.status for item in batch.items]

    handle = await run_to_end(client, wf)
    assert handle.result() == ["NOT_COMPLETED", "SUCCEEDED"]
    abandoned, done = sorted((op for op in client.operations(handle.run_id)
                              if op.sub_type == SubType.PARALLEL_BRANCH), key=lambda op: op.name)
    assert done.status is OperationStatus.SUCCEEDED
    # FAILED is the only unsuccessful end a CONTEXT has in the contract; the error says why.
    assert abandoned.status is OperationStatus.FAILED and abandoned.ended_at is not None
    assert abandoned.error is not None and abandoned.error.type == ABANDONED
    assert "MIN_SUCCESSFUL_REACHED" in abandoned.error.message
    events = [e for e in client.history(handle.run_id) if e.operation_id == abandoned.id]
    assert [e.type for e in events] == ["ContextStarted", "ContextFailed"]
    assert describe(events[-1], abandoned, 0.0).text.startswith("abandoned: the batch was done")
    replayed = await asyncio.to_thread(client.replay, [wf], [handle.run_id])
    assert [r.divergence for r in replayed] == [None]


async def test_child_workflow_is_its_own_run_linked_to_the_parent(client):
    @workflow
    async def child(ctx: Context, x: int) -> int:
        await ctx.sleep(0.01)
        return await ctx.step(lambda: x + 1, name="inc")

    @workflow
    async def parent(ctx: Context) -> int:
        return await ctx.invoke(child, 41)

    handle = client.start(parent)
    async with serving(client, parent, child):
        await finish(client, handle.run_id)
    assert handle.result() == 42
    op = next(o for o in client.operations(handle.run_id)
              if o.type is OperationType.CHAINED_INVOKE)
    assert op.child_run_id is not None
    child_run = client.get(op.child_run_id)
    assert child_run.parent_run_id == handle.run_id
    assert child_run.status is ExecutionStatus.SUCCEEDED
    assert [o.name for o in client.operations(op.child_run_id)] == [None, "inc"]


async def test_a_run_ending_looks_for_children_to_stop_only_if_it_invoked_one(
        client, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ending a run stops the children it awaits, which a query looks for; a run that never
    invoked one (the worker knows from its operations) ends without that query."""
    looked: list[str] = []
    live_children = Tx.live_children

    def noting(tx: Tx, run_id: str) -> list[str]:
        looked.append(run_id)
        return live_children(tx, run_id)
    monkeypatch.setattr(Tx, "live_children", noting)

    @workflow
    async def leaf(ctx: Context) -> int:
        return await ctx.step(lambda: 1, name="one")

    @workflow
    async def parent(ctx: Context) -> int:
        return await ctx.invoke(leaf)

    handle = client.start(parent)
    async with serving(client, parent, leaf):
        await finish(client, handle.run_id)
    assert handle.result() == 1
    assert looked == [handle.run_id]  # not the leaf, which invoked nothing


async def test_child_failure_raises_child_failed_in_the_parent(client):
    @workflow
    async def bad_child(ctx: Context) -> None:
        raise RuntimeError("child broke")

    @workflow
    async def parent(ctx: Context) -> str:
        try:
            await ctx.invoke(bad_child)
        except ChildFailed as e:
            return e.error.message
        return "no"

    handle = client.start(parent)
    async with serving(client, parent, bad_child):
        await finish(client, handle.run_id)
    assert handle.result() == "child broke"


async def test_children_of_a_run_with_the_longest_id_get_ids_within_the_rule(client):
    @workflow
    async def leaf(ctx: Context) -> str:
        return ctx.run_id

    @workflow
    async def parent(ctx: Context) -> list[str]:
        return [await ctx.invoke(leaf), await ctx.invoke(leaf)]

    longest = "p" * RUN_ID_MAX  # the default child id, parent + "-" + 12, would be 269 long
    handle = client.start(parent, id=longest)
    async with serving(client, parent, leaf):
        await finish(client, handle.run_id)
    children = handle.result()
    assert [check_run_id(c) for c in children] == children and len(set(children)) == 2
    assert all(client.get(c).parent_run_id == longest for c in children)


async def test_a_child_id_outside_the_rule_fails_the_call_that_chose_it(client):
    @workflow
    async def leaf(ctx: Context) -> None: ...

    @workflow
    async def parent(ctx: Context) -> str:
        try:
            await ctx.start_child(leaf, id="child/1")
        except durable.UsageError as e:
            return str(e)
        return "started"

    handle = await run_to_end(client, parent)
    assert handle.result().startswith("run id 'child/1' contains '/'")
    assert client.list(workflow=leaf.name) == []


async def test_cancelling_a_parent_cancels_its_live_children(client):
    @workflow
    async def sleeper(ctx: Context) -> None:
        await ctx.sleep(3600)

    @workflow
    async def parent(ctx: Context) -> None:
        await ctx.start_child(sleeper, id="detached-child")
        await ctx.invoke(sleeper, id="awaited-child")

    handle = client.start(parent)
    async with serving(client, parent, sleeper):
        await wait_until_async(lambda: len(client.list(workflow=sleeper.name)) == 2,
                               "both children to start")
        client.cancel(handle.run_id)
        await finish(client, handle.run_id)
        await finish(client, "detached-child")
        await finish(client, "awaited-child")
    for run_id in (handle.run_id, "detached-child", "awaited-child"):
        assert client.get(run_id).status is ExecutionStatus.STOPPED


async def test_patched_keeps_old_runs_on_the_old_path_and_new_runs_on_the_new(client):
    def make(v2: bool) -> durable.Workflow[..., Any]:
        @workflow(name="pricing")
        async def pricing(ctx: Context) -> str:
            await ctx.step(lambda: 1, name="load")
            if v2 and ctx.patched("discount"):
                await ctx.step(lambda: 2, name="discount")
                path = "new"
            else:
                path = "old"
            await ctx.wait_for_signal("go")
            return path
        return pricing

    v1 = make(v2=False)
    old = client.start(v1)
    async with serving(client, v1):
        await wait_until_async(lambda: len(client.operations(old.run_id)) == 2,
                               "the old run to wait for its signal")
    v2 = make(v2=True)
    new = client.start(v2)
    client.signal(old.run_id, "go")
    client.signal(new.run_id, "go")
    async with serving(client, v2):
        await finish(client, old.run_id)
        await finish(client, new.run_id)
    assert old.result() == "old"
    assert new.result() == "new"


async def test_replay_reports_a_reordered_step_and_passes_matching_code(client):
    def make(order: tuple[str, str]) -> durable.Workflow[..., Any]:
        @workflow(name="ordered")
        async def ordered(ctx: Context) -> None:
            for name in order:
                await ctx.step(lambda: None, name=name)
        return ordered

    original = make(("reserve", "charge"))
    await run_to_end(client, original)
    ok = await asyncio.to_thread(client.replay, [original])
    assert [r.divergence for r in ok] == [None]
    swapped = make(("charge", "reserve"))
    bad = await asyncio.to_thread(client.replay, [swapped])
    assert bad[0].divergence is not None
    assert "'reserve'" in bad[0].divergence.message
    assert "'charge'" in bad[0].divergence.message


async def test_rerun_from_a_step_reuses_earlier_results_and_executes_from_it(client):
    calls: list[str] = []

    @workflow
    async def pipeline(ctx: Context, n: int) -> list[Any]:
        a = await ctx.step(lambda: calls.append("extract") or n, name="extract")
        b = await ctx.step(lambda: calls.append("transform") or a * 2, name="transform")
        c = await ctx.step(lambda: calls.append("load") or b + n, name="load")
        return [a, b, c]

    first = await run_to_end(client, pipeline, 5)
    assert first.result() == [5, 10, 15]
    calls.clear()
    again = client.rerun(first.run_id, "transform", 100)
    async with serving(client, pipeline):
        await finish(client, again.run_id)
    assert again.result() == [5, 10, 110]  # extract's result reused; input edited
    assert calls == ["transform", "load"]
    with pytest.raises(durable.UsageError, match="extract, load, transform"):
        client.rerun(first.run_id, "nope")


async def test_continue_as_new_keeps_history_bounded(client):
    @workflow
    async def poller(ctx: Context, i: int, total: int) -> int:
        await ctx.step(lambda: i, name="poll")
        if i + 1 < total:
            ctx.continue_as_new(i + 1, total)
        return i

    handle = client.start(poller, 0, 40)
    async with serving(client, poller):
        await finish(client, handle.run_id, timeout=30)
    assert handle.result() == 39
    assert len(client.operations(handle.run_id)) == 1
    assert len(client.history(handle.run_id)) < 10


async def test_each_generation_after_continue_as_new_invokes_a_child_of_its_own(any_client):
    client = any_client

    @workflow
    async def doubled(ctx: Context, n: int) -> int:
        return n * 2

    @workflow
    async def generations(ctx: Context, n: int, total: int) -> list[int]:
        got = await ctx.invoke(doubled, n)
        if n + 1 < total:
            ctx.continue_as_new(n + 1, total)
        return [got]

    handle = client.start(generations, 0, 4)
    async with serving(client, generations, doubled):
        await finish(client, handle.run_id, timeout=30)
    # The last generation's own child answered (an earlier one's run would say 0).
    assert handle.result() == [6]
    children = sorted(r.run_id for r in client.list(workflow=doubled.name))
    assert len(children) == 4
    assert all(client.get(c).parent_run_id == handle.run_id for c in children)


async def test_a_chosen_child_id_reused_by_a_later_generation_fails_that_invoke(any_client):
    client = any_client

    @workflow
    async def leaf(ctx: Context) -> str:
        return "done"

    @workflow
    async def reuses(ctx: Context, n: int) -> str:
        try:
            await ctx.invoke(leaf, id=f"{ctx.run_id}-leaf")
        except ChildFailed as e:
            return str(e)
        if n == 0:
            ctx.continue_as_new(1)
        return "no error"

    handle = client.start(reuses, 0)
    async with serving(client, reuses, leaf):
        await finish(client, handle.run_id, timeout=30)
    message = handle.result()
    assert "earlier generation" in message and "an id of its own" in message
