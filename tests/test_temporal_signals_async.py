"""durable.temporal: async signal handlers, handlers set at run time, dynamic handlers, and
asyncio's tasks and primitives in workflow code, with the semantics Temporal documents.

Temporal runs an async signal handler as a task of the workflow (it may await an activity or put
on an asyncio.Queue), keeps a signal that arrives before its handler exists until workflow code
sets one (`workflow.set_signal_handler`), and passes names without a handler to the dynamic
handler as `(name, Sequence[RawValue])`. Workflow code may create tasks and use asyncio.Lock,
Event, Queue and Semaphore; timeouts are durable timers. Each test checks what Temporal gives for
the same code and that a replay of the stored history takes the same path.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable.temporal import activity, durable_workflow, workflow
from durable.temporal.client import Client
from durable.temporal.common import RawValue
from durable.temporal.exceptions import WorkflowQueryFailedError
from durable.temporal.serverless import run_async
from durable.testing import TestEnvironment
from tests.test_temporal_workflows import load_example

CALLS: Counter[str] = Counter()


@activity.defn
async def shout(word: str) -> str:
    CALLS[word] += 1
    return word.upper()


@workflow.defn
class LateHandlers:
    """Sets its handlers only after a durable timer: what arrives before waits for them."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.others: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await asyncio.sleep(60)
        workflow.set_signal_handler("add", self.add)
        workflow.set_dynamic_signal_handler(self.other)
        workflow.set_query_handler("words", lambda: list(self.words))
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.words + self.others

    async def add(self, word: str) -> None:
        self.words.append(await workflow.execute_activity(
            shout, word, start_to_close_timeout=timedelta(seconds=5)))

    def other(self, name: str, args: Sequence[RawValue]) -> None:
        if name == "finish":
            self.done = True
        else:
            volume = workflow.payload_converter().from_payload(args[0].payload, int)
            self.others.append(f"{name}={volume}")

    @workflow.query
    def count(self) -> int:
        return len(self.words)


@workflow.defn
class ActivityCollector:
    """A declared async handler awaiting an activity, as Temporal's samples write one."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.done = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.words

    @workflow.signal
    async def add(self, word: str) -> None:
        self.words.append(await workflow.execute_activity(
            shout, word, start_to_close_timeout=timedelta(seconds=5)))

    @workflow.signal
    def finish(self) -> None:
        self.done = True


@workflow.defn
class Orchestra:
    """Tasks, a semaphore, an event a signal sets, a queue, and waits bounded by durable
    timers: asyncio as Temporal's workflow code uses it."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.slots = asyncio.Semaphore(2)
        self.lock = asyncio.Lock()
        self.results: asyncio.Queue[str] = asyncio.Queue()
        self.running = 0
        self.most_at_once = 0

    @workflow.run
    async def run(self, words: list[str]) -> dict[str, Any]:
        await self.go.wait()
        tasks = [asyncio.create_task(self.play(w)) for w in words]
        done, pending = await workflow.wait(tasks, timeout=timedelta(seconds=30))
        collected = [await self.results.get() for _ in range(self.results.qsize())]
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=5)
            timed_out = False
        except TimeoutError:
            timed_out = True
        gathered = await asyncio.gather(*tasks)
        return {"done_in_time": len(done), "pending": len(pending), "gathered": gathered,
                "first": sorted(collected), "timed_out": timed_out,
                "most_at_once": self.most_at_once}

    async def play(self, word: str) -> str:
        async with self.slots:
            async with self.lock:
                self.running += 1
                self.most_at_once = max(self.most_at_once, self.running)
            if word.startswith("slow"):
                await asyncio.sleep(120)
            loud = await workflow.execute_activity(
                shout, word, start_to_close_timeout=timedelta(seconds=5))
            self.running -= 1
        await self.results.put(loud)
        return loud

    @workflow.signal
    async def start(self) -> None:
        self.go.set()


async def replays_cleanly(env: TestEnvironment, wf: Any, run_id: str) -> bool:
    """`durable replay`'s check: the stored history against the code, nothing executed."""
    [checked] = await asyncio.to_thread(env.client.replay, [wf], [run_id])
    return checked.divergence is None


# -- the sample ---------------------------------------------------------------------------------

async def test_the_message_passing_sample_prints_what_it_prints_under_temporal(
        any_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    """Its own main(): a worker in `async with`, async handlers (a Queue put, an activity), a
    dynamic signal and query, a task under a Lock, a query set at run time."""
    monkeypatch.setenv("TEMPORAL_ADDRESS", any_db)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", "/nonexistent/temporal.toml")
    sample = load_example("message_passing")
    await asyncio.wait_for(sample.main(), 60)
    assert capsys.readouterr().out.splitlines() == [
        "Results: ['Hello, user1', 'Hello, user2', 'Hello, Dr. Dr Who', 'shout: hey']",
        "Greeted: 3",
        "no query 'anything' here",
    ]


# -- handlers set at run time, dynamic handlers ---------------------------------------------------

async def test_signals_before_their_handler_is_set_are_delivered_in_order_once_it_is() -> None:
    wf = durable_workflow(LateHandlers)
    CALLS.clear()
    async with TestEnvironment(wf) as env:
        client = Client(env.client)
        handle = await client.start_workflow(LateHandlers.run, id="late", task_queue="q")
        await env.settle()
        for word in ("one", "two"):
            await handle.signal("add", word)
        await handle.signal("volume", 11)
        await env.settle()
        assert await handle.query(LateHandlers.count) == 0  # buffered, no handler yet
        with pytest.raises(WorkflowQueryFailedError, match=r"'words'.*known queries: \[count\]"):
            await handle.query("words")  # set at run time, not yet
        await env.skip(60)
        assert await handle.query("words") == ["ONE", "TWO"]
        await handle.signal("add", "three")
        await handle.signal("finish")
        result = await env.result(env.client.handle("late"))
        assert result == ["ONE", "TWO", "THREE", "volume=11"]
        assert CALLS == {"one": 1, "two": 1, "three": 1}
        assert await replays_cleanly(env, wf, "late")


async def test_async_handlers_run_through_the_serverless_entry(tmp_path: Path) -> None:
    """Each call of the Lambda-style entry does the due work: the handler's activity, once."""
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    CALLS.clear()
    client = Client(db)
    handle = await client.start_workflow(ActivityCollector.run, id="collect", task_queue="q")

    class LambdaContext:
        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    await run_async([ActivityCollector], [shout], LambdaContext(), db=db)
    await handle.signal(ActivityCollector.add, "one")
    await handle.signal(ActivityCollector.add, "two")
    await handle.signal(ActivityCollector.finish)
    summary = await run_async([ActivityCollector], [shout], LambdaContext(), db=db)
    assert summary["completed"] == 1
    assert sorted(await handle.result()) == ["ONE", "TWO"]  # concurrent handlers: any order
    assert CALLS == {"one": 1, "two": 1}
    client.durable.close()


# -- asyncio in workflow code ---------------------------------------------------------------------

async def test_tasks_semaphores_events_and_queues_behave_as_in_temporal_and_replay() -> None:
    wf = durable_workflow(Orchestra)
    CALLS.clear()
    async with TestEnvironment(wf) as env:
        client = Client(env.client)
        handle = await client.start_workflow(Orchestra.run, ["a", "slow-b", "c"], id="orc",
                                             task_queue="q")
        await env.settle()
        assert CALLS == {}  # waiting on the Event: suspended, nothing runs
        await handle.signal(Orchestra.start)
        began = env.now
        result = await env.result(env.client.handle("orc"))
        assert result == {"done_in_time": 2, "pending": 1, "gathered": ["A", "SLOW-B", "C"],
                          "first": ["A", "C"], "timed_out": True, "most_at_once": 2}
        assert env.now - began == pytest.approx(120)  # timers are durable: virtual time
        assert CALLS == {"a": 1, "slow-b": 1, "c": 1}
        assert await replays_cleanly(env, wf, "orc")
