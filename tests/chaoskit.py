"""The chaos tests' harness: worker processes of tests/apps/chaos_app.py on one database (SQLite
or PostgreSQL), started, killed, paused and replaced; the runs they serve and their signals; and
the checks that nothing was lost (tests/test_postgres_chaos.py, tests/test_chaos.py,
tests/test_worker_outages.py).

What the checks hold to, from the effects the steps leave (see chaos_app):

- every run SUCCEEDED with the result its input and signal imply;
- no operation was recorded twice: one StepSucceeded per step, one end per run;
- no completed step ran again: no execution of a step began after its recorded execution was
  checkpointed; an execution that was not recorded belongs to a step in flight when its worker
  was killed, cut off, paused past its lease, or lost the database (at-least-once).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import durable
from durable.engine import machine
from durable.model import RunInfo
from tests import pgkit
from tests.apps import chaos_app as app
from tests.kit import DURABLE, Proc, Procs, Subprocess, wait_until

APP = Path(app.__file__)
STOP_GRACE = 30.0  # seconds a worker has to drain on SIGTERM: 50 runs in flight, a busy machine


class Db:
    """Plain SQL on the test's database, beside Durable: what the test inspects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite:///")

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.sqlite:
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=60)
            try:
                return conn.execute(sql, params).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as pg:
            return pg.execute(sql.replace("?", "%s"), params).fetchall()

    def running(self) -> int:
        return int(self.rows("SELECT count(*) FROM runs WHERE status = 'RUNNING'")[0][0])

    def stuck(self) -> str:
        """What the runs still RUNNING wait for, to say why the chaos did not finish."""
        rows = self.rows(
            "SELECT r.lease_owner IS NOT NULL, r.ready_at IS NOT NULL, o.type, o.name, o.status,"
            " count(*) FROM runs r LEFT JOIN operations o ON o.run_id = r.run_id"
            " AND o.status IN ('STARTED', 'PENDING', 'READY') WHERE r.status = 'RUNNING'"
            " GROUP BY 1, 2, 3, 4, 5 ORDER BY 6 DESC LIMIT 10")
        return "(leased, ready, waiting on type, name, status, runs): " + repr(rows)

    def leased_by(self, pid: int) -> dict[str, int]:
        """Runs whose lease the worker `pid` holds (its owner id names the pid), with tokens."""
        rows = self.rows("SELECT run_id, token, lease_owner FROM runs WHERE status = 'RUNNING'"
                         " AND lease_owner IS NOT NULL")
        return {str(run_id): int(token) for run_id, token, owner in rows
                if f":{pid}:" in owner}

    def tokens(self, run_ids: Iterable[str]) -> dict[str, tuple[int, str]]:
        ids = list(run_ids)
        marks = ", ".join("?" for _ in ids)
        return {str(r): (int(t), str(s)) for r, t, s in self.rows(
            f"SELECT run_id, token, status FROM runs WHERE run_id IN ({marks})", *ids)}


@dataclass
class Kill:
    pid: int
    at: float
    orphans: dict[str, int]  # run id -> its token when the worker died
    resumed: dict[str, float] = field(default_factory=dict)  # run id -> when it was re-leased

    def note_resumed(self, db: Db) -> None:
        """Mark orphans that someone has leased again (their token moved) or that ended."""
        waiting = [r for r in self.orphans if r not in self.resumed]
        if not waiting:
            return
        now = time.time()
        for run_id, (token, status) in db.tokens(waiting).items():
            if token > self.orphans[run_id] or status != "RUNNING":
                self.resumed[run_id] = now


class Fleet:
    """Worker processes of chaos_app on one database: started, killed, paused and replaced. On
    PostgreSQL each has its own application_name, so its sessions can be found and cut: one
    with this fleet's own prefix, since the server is shared with tests running alongside."""

    def __init__(self, db: str, effects: Path, *, lease: float, concurrency: int,
                 server: str | None = None) -> None:
        self.db, self.effects, self.server = db, effects, server
        self.lease, self.concurrency = lease, concurrency
        self.procs = Procs(effects, grace=STOP_GRACE)
        self.live: dict[int, tuple[Proc, str]] = {}
        self.dead: set[int] = set()  # killed by the test
        self.name = f"durable-chaos-{uuid.uuid4().hex[:8]}"

    def spawn(self) -> int:
        number = len(self.procs) + 1
        name = f"{self.name}-{number}"
        db = self.db if self.db.startswith("sqlite:") else pgkit.with_params(
            self.db, application_name=name)
        proc = self.procs.start(
            sys.executable, str(APP), "--db", db, "--effects", str(self.effects),
            "--lease", str(self.lease), "--concurrency", str(self.concurrency),
            log=self.effects / f"worker-{number}.out")
        self.live[proc.pid] = (proc, name)
        return proc.pid

    def ready(self) -> list[int]:
        """Live workers that have opened the database (starting one can take seconds here)."""
        return [pid for pid in self.live if (self.effects / f"ready-{pid}").exists()]

    def kill(self, pid: int) -> None:
        proc, _ = self.live.pop(pid)
        proc.kill()
        self.dead.add(pid)

    def kill_one(self, db: Db, spare: Iterable[int] = ()) -> Kill | None:
        """SIGKILL a ready worker chosen at random (none of `spare`) and start its replacement;
        the kill, with the runs it orphaned (None: no worker to kill yet)."""
        victims = [pid for pid in self.ready() if pid not in set(spare)]
        if not victims:
            return None
        pid = random.choice(victims)
        kill = Kill(pid, time.time(), db.leased_by(pid))
        self.kill(pid)
        self.spawn()
        return kill

    def pause(self, pid: int) -> None:
        self.live[pid][0].pause()

    def resume(self, pid: int) -> None:
        self.live[pid][0].resume()

    def cut(self, pid: int) -> int:
        """Cut every PostgreSQL session of worker `pid`; returns how many there were."""
        assert self.server is not None, "cutting sessions needs the PostgreSQL server"
        return pgkit.terminate(self.server, self.live[pid][1])

    def exited(self) -> dict[int, int]:
        """Workers the test did not kill that have exited anyway, with their exit codes."""
        return {pid: rc for pid, (proc, _) in self.live.items()
                if (rc := proc.poll()) is not None}

    def stop(self) -> dict[int, int]:
        """SIGTERM every live worker (and SIGCONT: a paused one must see it) and wait for it to
        drain; returns each one's exit code (SIGKILLed if not stopped in STOP_GRACE seconds)."""
        self.procs.close()
        return {pid: proc.wait_exit() for pid, (proc, _) in self.live.items()}

    def output(self) -> str:
        """Every worker's output (its last 3000 characters), each headed by its number."""
        return "\n".join(f"--- worker {i}\n{proc.output()[-3000:]}"
                         for i, proc in enumerate(self.procs, 1))

    def full_output(self) -> str:
        """Every worker's whole output: what must appear somewhere in it, however much the
        workers logged after it (a takeover is a line per worker lost)."""
        return "\n".join(proc.output() for proc in self.procs)

    def crashed(self) -> list[str]:
        """Output of workers that printed a traceback: there should be none."""
        return [text[-3000:] for proc in self.procs if "Traceback" in (text := proc.output())]


class CliWorker(Subprocess):
    """`durable worker TARGET --db DB [ARGS]`, the command as operators run it, its output in
    `effects/<name>.out`; `prefix` runs it under another command (e.g. `unshare`), `env` adds
    to its environment. The test kills it (`kill`) if it is still running at the end."""

    def __init__(self, target: str, db: str, effects: Path, *, prefix: Iterable[str] = (),
                 env: dict[str, str] | None = None, args: Iterable[str] = (),
                 name: str = "worker") -> None:
        super().__init__([*prefix, DURABLE, "worker", target, "--db", db, *args],
                         effects / f"{name}.out",
                         env={**os.environ, app.EFFECTS_ENV: str(effects), **(env or {})})

    def lines(self, text: str) -> list[str]:
        return [line for line in self.output().splitlines() if text in line]

    def wait_line(self, text: str, timeout: float = 60.0) -> str:
        """The first output line containing `text`, once there is one; fails if the worker
        exits first."""
        def found() -> str | None:
            assert self.alive or self.lines(text), (
                f"the worker exited {self.poll()} before printing {text!r}:\n{self.output()}")
            return next(iter(self.lines(text)), None)
        return wait_until(found, f"the worker to print {text!r}", timeout=timeout)

    def wait_ended(self, client: durable.Client, run_ids: Iterable[str],
                   timeout: float = 120.0) -> dict[str, RunInfo]:
        """The runs once every one has ended; fails at once if the worker exits first."""
        ids = list(run_ids)

        def ended() -> dict[str, RunInfo] | None:
            assert self.alive, f"the worker exited {self.poll()}:\n{self.output()}"
            runs = {run_id: client.get(run_id) for run_id in ids}
            done = all(r.status is not durable.ExecutionStatus.RUNNING for r in runs.values())
            return runs if done else None
        return wait_until(ended, f"{len(ids)} runs to end", timeout=timeout, interval=0.1)

    def stop(self, grace: float = 60.0) -> int:
        """SIGTERM, and the exit code once it has drained: a worker draining its runs on a
        busy machine gets longer than the kit's default before it is SIGKILLed."""
        return super().stop(grace)


def effects_count(effects: Path) -> int:
    """How many step executions the effects logs hold so far."""
    return sum(len(log.read_text().splitlines()) for log in effects.glob("effects-*.log"))


def first_effect_after(effects: Path, moment: float) -> float | None:
    """When the first step execution that began after `moment` (time.time()) began."""
    times = [float(line.split()[4]) for log in effects.glob("effects-*.log")
             for line in log.read_text().splitlines()]
    return min((t for t in times if t > moment), default=None)


def start_all(client: durable.Client, inputs: dict[str, int]) -> None:
    async def start() -> None:
        await asyncio.gather(*(client.start_async(app.chaos, n, id=run_id)
                               for run_id, n in inputs.items()))
    asyncio.run(start())


def signal_all(client: durable.Client, inputs: dict[str, int],
               errors: list[BaseException]) -> None:
    """Send each run its signal while the runs go on: some before they wait (buffered), some
    after, in random order, over a few seconds, 50 at a time (one transaction, most often)."""
    order = list(inputs)
    random.shuffle(order)
    try:
        for i in range(0, len(order), 50):
            futures = [client.store.write(_signal(run_id, app.signal_value(inputs[run_id])))
                       for run_id in order[i:i + 50]]
            for f in futures:
                f.result()
            time.sleep(0.1)
    except BaseException as e:
        errors.append(e)


def _signal(run_id: str, k: int) -> Any:
    payload = json.dumps({"k": k})
    return lambda tx: machine.signal(tx, run_id, "bump", payload, time.time())


Execution = tuple[int, str, float]  # pid, nonce, when it began (time.time())


@dataclass
class Outcome:
    """What the effects say beyond the checks: for the test to assert on or print."""

    executions: dict[tuple[str, str], list[Execution]]  # (run, step) -> every execution
    extra: int  # executions not recorded: steps in flight at a kill, cut, pause or outage
    by_live: list[tuple[tuple[str, str], int, str]]  # of those, by workers never killed


def check(db: str, effects: Path, inputs: dict[str, int], killed: set[int]) -> Outcome:
    """Assert every run succeeded rightly, nothing was recorded twice and no completed step
    ran again (the module docstring); `killed`: the pids of workers the test killed."""
    client = durable.Client(db)
    try:
        runs = {r.run_id: r for r in client.list(limit=len(inputs) + 1)}
    finally:
        client.close()
    assert len(runs) == len(inputs)
    wrong = {run_id: (r.status, r.result) for run_id, r in runs.items()
             if r.status is not durable.ExecutionStatus.SUCCEEDED
             or json.loads(r.result or "null") != app.expected(inputs[run_id])}
    assert not wrong, f"{len(wrong)} runs wrong, e.g. {list(wrong.items())[:5]}"

    sql = Db(db)
    twice = sql.rows(
        "SELECT run_id, op_id, type, count(*) FROM history"
        " WHERE type IN ('StepSucceeded', 'ExecutionSucceeded', 'CallbackSucceeded')"
        " GROUP BY run_id, op_id, type HAVING count(*) > 1")
    assert not twice, f"operations recorded twice: {twice[:5]}"
    recorded = {(run_id, name): (json.loads(result)["nonce"], ended) for run_id, name, result,
                ended in sql.rows("SELECT run_id, name, result, ended_at FROM operations"
                                  " WHERE type = 'STEP' AND status = 'SUCCEEDED'")}
    assert len(recorded) == len(inputs) * app.STEPS

    executions: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for log in effects.glob("effects-*.log"):
        for line in log.read_text().splitlines():
            run_id, i, pid_text, nonce, at_text = line.split()
            executions[(run_id, f"s{i}")].append((int(pid_text), nonce, float(at_text)))
    reran_after_done: list[tuple[tuple[str, str], int, float]] = []
    by_live: list[tuple[tuple[str, str], int, str]] = []
    extra = 0
    for key, (nonce, ended) in recorded.items():
        runs_of = executions[key]
        assert nonce in {n for _, n, _ in runs_of}, f"{key}: its recorded execution left no trace"
        for pid, n, at in runs_of:
            if n == nonce:
                continue
            extra += 1
            if at > ended:
                reran_after_done.append((key, pid, at - ended))
            elif pid not in killed:
                # A live worker whose lease ran out (a stall longer than the lease, a pause,
                # an outage) races its successor; fencing keeps only one record.
                by_live.append((key, pid, f"{at - ended:+.3f}s after it was recorded"))
    assert not reran_after_done, f"completed steps ran again: {reran_after_done[:5]}"
    return Outcome(executions, extra, by_live)


def poisoned_attempts(db: str, inputs: dict[str, int]) -> int:
    """How many attempts failed with the SystemExit chaos_app's poisoned step raises."""
    rows = Db(db).rows("SELECT run_id, details FROM history WHERE type = 'StepFailed'")
    return sum(1 for run_id, details in rows
               if "SystemExit" in str(details) and app.poisoned(inputs[str(run_id)]))
