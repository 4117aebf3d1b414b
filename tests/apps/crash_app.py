"""Workflows for the crash suite, and the small launcher the tests run as a real subprocess.

    python tests/apps/crash_app.py --db URL [--lease 1.0] [--version v1|v2] [--concurrency N]
        serves every workflow below with `durable.Worker` until killed;
    python tests/apps/crash_app.py --db URL --start WORKFLOW --id RUN_ID [--input JSON]
        starts one run (after `--after FILE` appears, so several processes can start together);
    python tests/apps/crash_app.py --db URL --serve-and-start WORKFLOW --id RUN_ID [--input JSON]
        serves as the first form, and starts one run from the worker's own event loop, so that
        the worker takes it at the start (`Client.start_async`).

Step bodies talk to the test through files in the directory named by $CRASH_DIR:

- `effects.log`: one line `<event> <pid>` per side effect, appended and fsynced, so the test can
  count how many times each step body ran and in which process;
- `gate-<name>`: a step calling `gate(name)` blocks until the test creates this file;
- `ready-<pid>`: written once the worker has opened the database and is about to serve.

$CRASH_AT (`step:phase[,step:phase...]`) makes the process SIGKILL itself at that point, after
recording `crash:<step>:<phase>`. Phases: `before` (the body started, no effect yet), `inside`
(the effect happened, the body has not returned), `after` (the body returned; its SUCCEED is about
to be checkpointed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import durable
from durable import BatchFailed, Cancelled, Completion, Context, RetryPolicy, StepFailed, workflow
from durable.engine.worker import serving_here
from durable.errors import StaleToken
from durable.model import (
    Checkpointer,
    CheckpointResult,
    Invocation,
    InvocationOutput,
    OperationAction,
    OperationType,
    OperationUpdate,
)

PHASES = ("before", "inside", "after")
EFFECTS = "effects.log"


# -- talking to the test through files ---------------------------------------------------------

def _dir() -> Path:
    return Path(os.environ["CRASH_DIR"])


def record(event: str, *, sync: bool = True) -> None:
    """Append `<event> <pid>` to the effects log; with `sync`, on disk before returning."""
    fd = os.open(_dir() / EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {os.getpid()}\n".encode())
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def count(event: str) -> int:
    """How many times `event` was recorded so far, by any process."""
    try:
        text = (_dir() / EFFECTS).read_text()
    except FileNotFoundError:
        return 0
    return sum(1 for line in text.splitlines() if line.split(" ")[0] == event)


def crash_point(step: str, phase: str) -> None:
    """SIGKILL this process here if $CRASH_AT names this step and phase."""
    if f"{step}:{phase}" in os.environ.get("CRASH_AT", "").split(","):
        record(f"crash:{step}:{phase}")
        os.kill(os.getpid(), signal.SIGKILL)


def effect(step: str) -> None:
    """The side effect of a step body, with its `before` and `inside` crash points around it."""
    crash_point(step, "before")
    record(step)
    crash_point(step, "inside")


def gate(name: str) -> None:
    """Block until the test opens the gate (creates `gate-<name>`)."""
    path = _dir() / f"gate-{name}"
    while not path.exists():
        time.sleep(0.01)


# -- step bodies ---------------------------------------------------------------------------------

def plain(step: str, value: Any) -> Any:
    effect(step)
    return value


async def plain_async(step: str, value: Any) -> Any:
    effect(step)
    return value


def gated(step: str, value: Any) -> Any:
    """Do the effect, then wait at the gate named after the step before returning."""
    effect(step)
    gate(step)
    return value


def whoami(step: str) -> int:
    """A gated step whose result is the pid of the process that finished it."""
    return int(gated(step, os.getpid()))


def fail_first_attempt(step: str, value: Any) -> Any:
    """Fail the very first attempt ever made (by any process), succeed after."""
    crash_point(step, "before")
    record(f"{step}:attempt")
    if count(f"{step}:attempt") == 1:
        raise RuntimeError(f"{step}: first attempt fails on purpose")
    record(step)
    crash_point(step, "inside")
    return value


def tick(i: int) -> int:
    record("tick", sync=False)
    return i


# -- workflows -----------------------------------------------------------------------------------

@workflow(name="crash.chain")
async def chain(ctx: Context, n: int) -> list[int]:
    """a, b (waits at gate `b`), c: the basic at-least-once scenario."""
    a = await ctx.step(plain, "a", n + 1, name="a")
    b = await ctx.step(gated, "b", a * 2, name="b")
    c = await ctx.step(plain_async, "c", b + 3, name="c")
    return [a, b, c]


@workflow(name="crash.charge")
async def charge(ctx: Context, max_attempts: int) -> dict[str, Any]:
    """An at-most-once step (waits at gate `charge`) under a policy of `max_attempts`."""
    await ctx.step(plain, "prepare", None, name="prepare")
    policy = RetryPolicy(max_attempts=max_attempts, initial_interval=0.05, jitter=0)
    try:
        receipt = await ctx.step(gated, "charge", "receipt-1", name="charge", retry=policy,
                                 semantics="at_most_once")
    except StepFailed as e:
        return {"charged": False, "error_type": e.error_type}
    return {"charged": True, "receipt": receipt}


@workflow(name="crash.nap")
async def nap(ctx: Context, seconds: float) -> str:
    await ctx.step(plain, "before", None, name="before")
    await ctx.sleep(seconds)
    return str(await ctx.step(plain, "after", "rested", name="after"))


@workflow(name="crash.backoff")
async def backoff(ctx: Context, interval: float) -> str:
    policy = RetryPolicy(max_attempts=3, initial_interval=interval, jitter=0)
    return str(await ctx.step(fail_first_attempt, "flaky", "recovered", name="flaky",
                              retry=policy))


@workflow(name="crash.approval")
async def approval(ctx: Context, order: str) -> dict[str, Any]:
    await ctx.step(plain, "requested", None, name="request")
    decision = await ctx.wait_for_signal("approve", timeout=600)
    await ctx.step(plain, "approved", None, name="approved")
    return {"order": order, "decision": decision}


def bump(count: int) -> int:
    """A condition's check: the effect `poll<count>` (with its crash points), then one more."""
    effect(f"poll{count}")
    return count + 1


@workflow(name="crash.poller")
async def poller(ctx: Context, target: int) -> int:
    """Polls `bump` from 0 until the count reaches `target`, 0.05 s between polls."""
    strategy = durable.WaitStrategy(lambda n: n < target, initial_delay=0.05, jitter=0)
    return int(await ctx.wait_for_condition(bump, initial_state=0, wait_strategy=strategy,
                                            name="count"))


@workflow(name="crash.single")
async def single(ctx: Context, value: str) -> str:
    return str(await ctx.step(plain, "single", value.upper(), name="single"))


@workflow(name="crash.tagged")
async def tagged(ctx: Context, tenant: str) -> str:
    """Searchable attributes set around a step: `tagged:unsaved` kills the worker after the
    first `set_attributes`, before anything checkpoints it; `tag:inside` kills it inside the
    next step, whose start saved them."""
    await ctx.step(plain, "tag-first", 1, name="tag-first")
    ctx.set_attributes({"tenant": tenant, "stage": 1})
    crash_point("tagged", "unsaved")
    await ctx.step(plain, "tag", 2, name="tag")
    ctx.set_attributes({"stage": 2})
    return tenant


@workflow(name="crash.fence")
async def fence(ctx: Context) -> dict[str, int]:
    """one, slow (returns the pid that finished it), two; slow and two wait at their gates."""
    await ctx.step(plain, "one", None, name="one")
    pid = await ctx.step(whoami, "slow", name="slow")
    await ctx.step(gated, "two", None, name="two")
    return {"slow_finished_by": pid}


@workflow(name="crash.reorder")
async def reorder_v1(ctx: Context, seconds: float) -> list[str]:
    a = await ctx.step(plain, "alpha", "A", name="alpha")
    b = await ctx.step(plain, "beta", "B", name="beta")
    await ctx.sleep(seconds)
    return [a, b, await ctx.step(plain, "gamma", "C", name="gamma")]


@workflow(name="crash.reorder")
async def reorder_v2(ctx: Context, seconds: float) -> list[str]:
    """The same workflow after a careless deploy: alpha and beta swapped."""
    b = await ctx.step(plain, "beta", "B", name="beta")
    a = await ctx.step(plain, "alpha", "A", name="alpha")
    await ctx.sleep(seconds)
    return [a, b, await ctx.step(plain, "gamma", "C", name="gamma")]


@workflow(name="crash.burst")
async def burst(ctx: Context, steps: int) -> int:
    total = 0
    for i in range(steps):
        total += await ctx.step(tick, i, name="tick")
    return total


@workflow(name="crash.sleeper")
async def sleeper(ctx: Context) -> str:
    await ctx.sleep(3600)
    return "woke"


PIPELINE_STEPS = ("load", "enrich", "flaky", "price", "ship", "notify")


@workflow(name="crash.pipeline")
async def pipeline(ctx: Context, n: int) -> dict[str, Any]:
    """Six steps, sync and async, one retried, one durable sleep: the property test's subject."""
    items = await ctx.step(plain_async, "load", [n, n + 1, n + 2], name="load")
    total = await ctx.step(plain, "enrich", sum(items) * 3, name="enrich")
    fast = RetryPolicy(max_attempts=3, initial_interval=0.01, jitter=0)
    total = await ctx.step(fail_first_attempt, "flaky", total + 1, name="flaky", retry=fast)
    await ctx.sleep(0.005)
    price = await ctx.step(plain_async, "price", {"total": total, "tax": total // 10},
                           name="price")
    label = await ctx.step(plain, "ship", f"shipped-{price['total'] + price['tax']}",
                           name="ship")
    note = await ctx.step(plain_async, "notify", label.upper(), name="notify")
    return {"items": items, "price": price, "label": label, "note": note}


async def _logged_branch(ctx: Context, i: int) -> int:
    ctx.logger.info("branch %d begins", i)
    value = await ctx.step(plain, f"log-branch-{i}", i, name=f"log-branch-{i}")
    ctx.logger.info("branch %d ends", i)
    return int(value)


@workflow(name="crash.logged")
async def logged(ctx: Context, n: int) -> int:
    """Logs through ctx.logger in the body, in parallel branches and in a step body that fails
    its first attempt, around a gated step the test kills the worker in."""
    def noisy(step: str) -> Any:
        ctx.logger.info("attempt of %s", step)
        return fail_first_attempt(step, n)
    ctx.logger.info("starting %d", n)
    await ctx.step(plain, "log-a", 1, name="log-a")
    ctx.logger.info("after a")
    await ctx.gather(*(_logged_branch(ctx, i) for i in range(2)))
    ctx.logger.warning("before the gate")
    await ctx.step(gated, "log-gate", 2, name="log-gate")
    ctx.logger.info("after the gate")
    await ctx.step(noisy, "log-retry", name="log-retry",
                   retry=RetryPolicy(initial_interval=0.05, jitter=0))
    ctx.logger.info("done")
    return n


@workflow(name="crash.beating")
async def beating(ctx: Context, heartbeat: float) -> str:
    """Waits on a callback that must hear a heartbeat every `heartbeat` seconds."""
    callback = await ctx.create_callback(name="beating", timeout=600,
                                         heartbeat_timeout=heartbeat)
    try:
        return str(await callback.result())
    except durable.CallbackHeartbeatTimeout:
        return "no heartbeat"


@workflow(name="crash.deadline", execution_timeout=5.0)
async def deadline(ctx: Context) -> str:
    """Sleeps far past its execution timeout, which must end it while it sleeps."""
    await ctx.step(plain, "deadline-step", None, name="deadline-step")
    await ctx.sleep(600, name="long")
    return "overslept"


@workflow(name="crash.streamed")
async def streamed(ctx: Context, n: int) -> int:
    """Streams `progress` from workflow code and `n` tokens from inside the step `tokens`,
    which waits at gate `tokens` halfway (effect `tokens-half`); then the gated step
    `stream-mid`, between two progress writes, and the close."""
    progress = ctx.stream("progress")
    progress.write({"stage": "begin"})

    def tokens(count: int) -> int:
        out = ctx.stream("tokens")
        for i in range(count):
            if i == count // 2:
                record("tokens-half")
                gate("tokens")
            out.write(f"tok{i}")
        return count

    await ctx.step(tokens, n, name="tokens")
    progress.write({"stage": "tokens done"})
    await ctx.step(gated, "stream-mid", None, name="stream-mid")
    progress.write({"stage": "end"})
    progress.close()
    return n


COMMON: list[durable.Workflow[..., Any]] = [chain, charge, nap, backoff, approval, single, fence,
                                       burst, sleeper, pipeline, logged, tagged, beating,
                                       deadline, poller, streamed]
VERSIONS = {"v1": [*COMMON, reorder_v1], "v2": [*COMMON, reorder_v2]}


# -- composition workflows (tests/test_crash_composition.py) -------------------------------------
# Served by a worker started with version "composition". Besides the phases above, these runs may
# crash at `<child workflow>:invoked`: right after the checkpoint that created a child run came
# back, before anything of the child ran. Steps also leave structured facts for the test in
# `notes.jsonl` (item spans with their times, what a step was handed).

NOTES = "notes.jsonl"
MAP_LIMIT = 4
QUORUM_ITEMS = 6
QUORUM_POLICIES = {"at_least": Completion.at_least(3), "tolerate": Completion.tolerate(failures=1)}
ONCE = RetryPolicy(max_attempts=1)


def note(kind: str, **fields: Any) -> None:
    """Append `{"kind": kind, "pid": <this process>, **fields}` to the notes as one JSON line.
    Not fsynced: a SIGKILL loses nothing the process wrote, only a power cut would."""
    line = json.dumps({"kind": kind, "pid": os.getpid(), **fields}) + "\n"
    fd = os.open(_dir() / NOTES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def jittered(step: str, value: Any) -> Any:
    """The effect, then a random few milliseconds: parallel branches finish in a new order each
    run, and a kill finds several bodies in flight."""
    effect(step)
    time.sleep(random.uniform(0.002, 0.03))
    return value


def spanned(item: int) -> int:
    """A map item that notes when its body starts and ends (the machine-wide monotonic clock)."""
    note("span", item=item, edge="start", at=time.monotonic())
    effect(f"m{item}")
    time.sleep(random.uniform(0.005, 0.02))
    note("span", item=item, edge="end", at=time.monotonic())
    return item * item


def vote(item: list[Any]) -> int:
    """Map item `[index, fails]`: odd indexes answer at once (failing, with `fails`), even ones
    hold at their gate `v<index>`, so they are still running when the batch is decided."""
    index, fails = item
    effect(f"v{index}")
    if index % 2 == 0:
        gate(f"v{index}")
    elif fails:
        raise RuntimeError(f"vote {index} fails on purpose")
    return int(index)


def report(step: str, summary: dict[str, Any]) -> dict[str, Any]:
    """Note what the step was handed (e.g. a batch's decision), then do the effect."""
    note(step, summary=summary)
    effect(step)
    return summary


def fanout_step(branch: int, step: int) -> str:
    return f"g{branch}s{step}"


async def _fanout_branch(ctx: Context, branch: int, steps: int) -> str:
    trail = f"b{branch}"
    for s in range(steps):
        name = fanout_step(branch, s)
        trail = await ctx.step(jittered, name, f"{trail}>{s}", name=name)
    return trail


@workflow(name="crash.fanout")
async def fanout(ctx: Context, shape: list[int]) -> list[str]:
    """`shape` = [branches, steps]: a gather of branches of `jittered` steps, each step's value
    built on the one before, e.g. branch 1 of 2 steps returns "b1>0>1"."""
    branches, steps = shape
    return list(await ctx.gather(*(_fanout_branch(ctx, b, steps) for b in range(branches))))


@workflow(name="crash.bounded_map")
async def bounded_map(ctx: Context, n: int) -> list[int]:
    return (await ctx.map(spanned, range(n), max_concurrency=MAP_LIMIT)).results


@workflow(name="crash.quorum")
async def quorum(ctx: Context, policy: str) -> dict[str, Any]:
    """A map of `vote`s under a completion policy that decides while the even votes still run;
    the step after it, `report`, is handed the decision."""
    items = [[i, policy == "tolerate"] for i in range(QUORUM_ITEMS)]
    try:
        batch = await ctx.map(vote, items, completion=QUORUM_POLICIES[policy], retry=ONCE)
    except BatchFailed as e:
        batch = e.result
    summary = {"reason": batch.completion_reason, "succeeded": batch.results,
               "counted": [i.index for i in batch.items if i.status != "NOT_COMPLETED"]}
    return dict(await ctx.step(report, "report", summary, name="report"))


@workflow(name="crash.child")
async def child(ctx: Context, x: int) -> int:
    one = await ctx.step(plain, "c-one", x + 1, name="c-one")
    return int(await ctx.step(plain, "c-two", one * 2, name="c-two"))


@workflow(name="crash.parent")
async def parent(ctx: Context, x: int) -> dict[str, int]:
    """p-before, then awaits crash.child (its operation #2), then p-after."""
    sent = await ctx.step(plain, "p-before", x, name="p-before")
    got = await ctx.invoke(child, sent)
    return dict(await ctx.step(plain, "p-after", {"sent": sent, "got": got}, name="p-after"))


@workflow(name="crash.holding_parent")
async def holding_parent(ctx: Context, x: int) -> dict[str, int]:
    """Awaits crash.child while its own invocation is held open by the step `hold`, which waits
    at its gate: the child can end while the invocation that started it still runs."""
    got, held = await ctx.gather(ctx.invoke(child, x), ctx.step(gated, "hold", x, name="hold"))
    return {"got": got, "held": held}


@workflow(name="crash.guarded_child")
async def guarded_child(ctx: Context, i: int) -> int:
    """reserve<i>, then work<i> (waits at its gate); cancelled: release<i>."""
    try:
        await ctx.step(plain, f"reserve{i}", i, name="reserve")
        return int(await ctx.step(gated, f"work{i}", i, name="work"))
    except Cancelled:
        await ctx.step(plain, f"release{i}", i, name="release")
        raise


@workflow(name="crash.guarded_parent")
async def guarded_parent(ctx: Context, n: int) -> list[int]:
    """Awaits `n` guarded children in parallel; cancelled: parent-undo."""
    try:
        return list(await ctx.gather(*(ctx.invoke(guarded_child, i) for i in range(n))))
    except Cancelled:
        await ctx.step(plain, "parent-undo", n, name="parent-undo")
        raise


@workflow(name="crash.gen_child")
async def gen_child(ctx: Context, n: int) -> int:
    return int(await ctx.step(plain, f"gc{n}", n * 2, name=f"gc{n}"))


@workflow(name="crash.generations")
async def generations(ctx: Context, n: int) -> list[int]:
    """Invokes crash.gen_child (step gc<n>), then continues as new with n + 1, up to n = 2:
    each generation's invoke is the same operation id, and must get a child of its own."""
    got = await ctx.invoke(gen_child, n)
    if n < 2:
        ctx.continue_as_new(n + 1)
    return [n, got]


class CrashAfterInvokeStart:
    """Serves a workflow through a checkpointer that runs the crash point
    `<child workflow>:invoked` once a checkpoint that started a child run has come back."""

    def __init__(self, wf: durable.Workflow[..., Any]) -> None:
        self.name = wf.name
        self._inner = wf.handler

    async def handler(self, invocation: Invocation,
                      checkpointer: Checkpointer) -> InvocationOutput:
        async def checkpoint(updates: list[OperationUpdate]) -> CheckpointResult:
            result = await checkpointer(updates)
            for u in updates:
                if u.type is OperationType.CHAINED_INVOKE and u.action is OperationAction.START:
                    crash_point(u.name or "", "invoked")
            return result
        return await self._inner(invocation, checkpoint)


VERSIONS["composition"] = [CrashAfterInvokeStart(wf) for wf in (  # type: ignore[misc]
    fanout, bounded_map, quorum, child, parent, holding_parent, guarded_child, guarded_parent,
    gen_child, generations)]


# -- serving -------------------------------------------------------------------------------------

class Instrumented:
    """Serves a workflow through a checkpointer that can crash just before a step's SUCCEED is
    checkpointed (phase `after`) and that records every checkpoint the engine refused: `stale`
    for a fenced-out invocation, `refused:<error type>` for anything else."""

    def __init__(self, wf: durable.Workflow[..., Any]) -> None:
        self.name = wf.name
        self.execution_timeout = getattr(wf, "execution_timeout", None)
        self._inner = wf.handler

    async def handler(self, invocation: Invocation,
                      checkpointer: Checkpointer) -> InvocationOutput:
        async def checkpoint(updates: list[OperationUpdate]) -> CheckpointResult:
            for u in updates:
                if u.type is OperationType.STEP and u.action is OperationAction.SUCCEED:
                    crash_point(u.name or "", "after")
            try:
                return await checkpointer(updates)
            except StaleToken:
                record("stale")
                raise
            except Exception as e:
                record(f"refused:{type(e).__name__}")
                raise
        return await self._inner(invocation, checkpoint)


def serve(db: str, lease: float, version: str, concurrency: int) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s worker {os.getpid()} %(name)s: %(message)s")
    worker = durable.Worker([Instrumented(wf) for wf in VERSIONS[version]], db=db,
                            lease_seconds=lease, concurrency=concurrency)
    (_dir() / f"ready-{os.getpid()}").touch()
    worker.run()


def serve_forked(db: str, lease: float, version: str, concurrency: int, env: dict[str, str],
                 log: str) -> None:
    """`serve` in a process the test harness forked (from a multiprocessing forkserver that has
    imported this module already): output to `log`, settings from `env`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(env)
    serve(db, lease, version, concurrency)


def start(db: str, name: str, run_id: str, input_json: str | None, after: str | None) -> None:
    if after:
        (_dir() / f"ready-{os.getpid()}").touch()
        while not os.path.exists(after):
            time.sleep(0.001)
    wf = {w.name: w for w in VERSIONS["v1"]}[name]
    client = durable.Client(db)
    try:
        print(client.start(wf, *_input(input_json), id=run_id).run_id, flush=True)
    finally:
        client.close()


def serve_and_start(db: str, lease: float, name: str, run_id: str,
                    input_json: str | None) -> None:
    async def main() -> None:
        worker = durable.Worker([Instrumented(wf) for wf in VERSIONS["v1"]], db=db,
                                lease_seconds=lease)
        client = durable.Client(db)
        serving = asyncio.create_task(worker.run_async())
        while serving_here(client.store.url, name) is None:
            await asyncio.sleep(0.001)
        wf = {w.name: w for w in VERSIONS["v1"]}[name]
        await client.start_async(wf, *_input(input_json), id=run_id)
        await serving
    asyncio.run(main())


def _input(input_json: str | None) -> tuple[Any, ...]:
    return () if input_json is None else (json.loads(input_json),)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True)
    p.add_argument("--lease", type=float, default=1.0)
    p.add_argument("--version", choices=sorted(VERSIONS), default="v1")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--start", metavar="WORKFLOW")
    p.add_argument("--serve-and-start", metavar="WORKFLOW")
    p.add_argument("--id")
    p.add_argument("--input")
    p.add_argument("--after", metavar="FILE")
    a = p.parse_args()
    if a.start:
        start(a.db, a.start, a.id, a.input, a.after)
    elif a.serve_and_start:
        serve_and_start(a.db, a.lease, a.serve_and_start, a.id, a.input)
    else:
        serve(a.db, a.lease, a.version, a.concurrency)


if __name__ == "__main__":
    main()
