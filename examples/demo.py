"""Watch a workflow survive `kill -9`. This is what `make demo` runs.

A six-step pipeline (~0.4 s a step) runs in a worker process on an embedded SQLite database. After
three steps have been checkpointed, the demo SIGKILLs the worker in the middle of the fourth step:
no cleanup, no goodbye. A fresh worker then takes the run over as soon as the dead worker's lease
expires, replays the three finished steps from their checkpoints without running them, and
carries on. Every step body appends a line to a side-effect file, so the demo can show how often
each one really ran: the finished steps once, and only the step that was in flight at the kill
twice (at-least-once semantics; a step declared `semantics="at_most_once"` would not re-run).

    python examples/demo.py [--dir .durable/demo]

It exits 0 when the run succeeded and no checkpointed step ran again, 1 otherwise. The database is
kept, so `durable show demo-pipeline --db sqlite:///.durable/demo/demo.db` shows the run after.
"""

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import durable
from durable import Context, workflow
from durable.model import EventType, HistoryEvent, RunInfo

STEPS = ("fetch orders", "validate", "price", "reserve stock", "invoice", "notify")
RUN_ID = "demo-pipeline"
LEASE_SECONDS = 2.0  # short, so the takeover after the kill is quick; the default is 30 s
KILL_AFTER = 3  # checkpointed steps before the kill


@dataclass(frozen=True)
class Job:
    effects: str  # the side-effect file every step body appends to
    step_seconds: float = 0.4


async def pipeline_step(job: Job, number: int, name: str) -> str:
    """The step body: record that it ran (the side effect the demo counts), then work a while."""
    with open(job.effects, "a") as f:
        f.write(f"{name}\t{os.getpid()}\n")
    print(f"    worker {os.getpid()}: step {number}/{len(STEPS)} {name!r} running", flush=True)
    await asyncio.sleep(job.step_seconds)
    return f"{name}: ok"


@workflow
async def pipeline(ctx: Context, job: Job) -> list[str]:
    return [await ctx.step(pipeline_step, job, number, name, name=name)
            for number, name in enumerate(STEPS, 1)]


# -- the show ------------------------------------------------------------------------------------

def spawn_worker(db: str) -> subprocess.Popen[bytes]:
    """A real worker process, the kind `durable worker` runs, serving only this file's workflow."""
    return subprocess.Popen([sys.executable, __file__, "--serve", db])


def serve(db: str) -> None:
    durable.Worker([pipeline], db=db, lease_seconds=LEASE_SECONDS).run()


def checkpointed_steps(client: durable.Client) -> int:
    return sum(1 for op in client.operations(RUN_ID)
               if op.type == "STEP" and op.status == "SUCCEEDED")


def wait_for(condition: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: gave up waiting for {condition} after {timeout}s")
        time.sleep(0.02)


def say(text: str) -> None:
    print(f"\n{text}", flush=True)


def timeline(run: RunInfo, events: list[HistoryEvent], killed_at: float) -> list[str]:
    """The run's history as `durable show` tells it, with the moment of the kill marked in."""
    lines = []
    marked = False
    for e in events:
        if not marked and e.timestamp > killed_at:
            lines.append(f"  +{killed_at - run.created_at:5.2f}s  ✗ worker SIGKILLed")
            marked = True
        what = e.type
        if e.type == EventType.STEP_SUCCEEDED:
            ran = e.timestamp - float(e.details.get("started_at") or e.timestamp)
            what = f"{e.type:19} {e.name!r} (body {ran:.2f}s)"
        elif e.type == EventType.INVOCATION_COMPLETED:
            what = (f"{e.type:19} {e.details['status']} after "
                    f"{float(e.details['duration']):.2f}s of compute")
        lines.append(f"  +{e.timestamp - run.created_at:5.2f}s  {what}")
    return lines


def crash_and_resume(client: durable.Client, db: str,
                     workers: list[subprocess.Popen[bytes]]) -> tuple[RunInfo, float]:
    """Worker 1 runs the pipeline until it is SIGKILLed; worker 2 finishes it.
    Returns the ended run and the moment of the kill."""
    workers.append(first := spawn_worker(db))
    say(f"Worker 1 (pid {first.pid}) is running it.")
    wait_for(f"{KILL_AFTER} checkpoints", lambda: checkpointed_steps(client) >= KILL_AFTER)
    time.sleep(0.2)  # into the middle of the next step
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = time.time()
    say(f"✗ SIGKILL worker 1 (pid {first.pid}) in the middle of step {KILL_AFTER + 1}. "
        f"Checkpointed: {checkpointed_steps(client)}/{len(STEPS)} steps; "
        f"run status: {client.get(RUN_ID).status}.")

    workers.append(second := spawn_worker(db))
    say(f"Worker 2 (pid {second.pid}) started; it takes the run over once worker 1's lease "
        f"expires (at most {LEASE_SECONDS:.0f} s), replays the checkpointed steps and goes on.")
    run = client.wait(RUN_ID, timeout=30)
    second.send_signal(signal.SIGTERM)  # graceful: drains, then exits
    second.wait(timeout=15)
    return run, killed_at


def main(workdir: Path) -> int:
    workdir = workdir.resolve()  # the workers may not share our working directory
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    db = f"sqlite:///{workdir / 'demo.db'}"
    effects = workdir / "effects.log"
    client = durable.Client(db)
    client.start(pipeline, Job(str(effects)), id=RUN_ID)
    say(f"Started run {RUN_ID!r}: {len(STEPS)} steps of ~0.4 s, database {db}")
    workers: list[subprocess.Popen[bytes]] = []
    try:
        run, killed_at = crash_and_resume(client, db, workers)
    finally:  # never leave a worker behind, whatever went wrong
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    counts = Counter(line.split("\t")[0] for line in effects.read_text().splitlines())
    say(f"Run {run.status} in {float(run.ended_at or 0) - run.created_at:.1f} s. "
        "How often each step body really ran (from the side-effect file):")
    for number, name in enumerate(STEPS, 1):
        note = ""
        if counts[name] > 1:
            note = "  <- in flight at the kill: at-least-once re-ran its unfinished body"
        print(f"  step {number} {name:14} {counts[name]}x{note}")
    print(f"  Worker 2 replayed steps 1-{KILL_AFTER} from their checkpoints: results read back, "
          "bodies not run.")
    say("Timeline (history of the run):")
    print("\n".join(timeline(run, client.history(RUN_ID), killed_at)))
    say(f"See it again: durable show {RUN_ID} --db {db}")
    client.close()

    rerun = [name for name in STEPS[:KILL_AFTER] if counts[name] != 1]
    if run.status is not durable.ExecutionStatus.SUCCEEDED or rerun:
        print(f"demo FAILED: status {run.status}, checkpointed steps that ran again: {rerun}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path(".durable/demo"),
                        help="where the demo database and side-effect file go (wiped first)")
    parser.add_argument("--serve", metavar="DB", help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
    else:
        sys.exit(main(args.dir))
