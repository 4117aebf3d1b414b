"""Temporal workflow updates on Durable, with workflows written as Temporal's documentation
writes them (imports changed only): sync and async handlers, validators, update handles and
stages, update ids, update-with-start, `workflow.all_handlers_finished`, embedded and through
the serverless entry, on both stores.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import IntEnum
from pathlib import Path

import pytest

from durable import ExecutionStatus
from durable.errors import UsageError
from durable.temporal import activity, workflow
from durable.temporal._definition import definition_of
from durable.temporal.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowUpdateFailedError,
    WorkflowUpdateStage,
)
from durable.temporal.common import WorkflowIDConflictPolicy
from durable.temporal.exceptions import ApplicationError
from durable.temporal.serverless import run_async
from durable.temporal.service import RPCError, RPCStatusCode
from durable.temporal.worker import Worker
from tests.test_temporal_workflows import load_example

HANG_GUARD = 60.0  # a hang fails the test instead of the suite; never reached when it works

NI_HAO = "你好\N{FULLWIDTH COMMA}世界"

CALLS: list[str] = []
"""Each call of `call_greeting_service`, to count how often an update's activity ran."""


class Language(IntEnum):
    ARABIC = 1
    CHINESE = 2
    ENGLISH = 3
    FRENCH = 4
    HINDI = 5
    PORTUGUESE = 6
    SPANISH = 7


@dataclass
class ApproveInput:
    name: str


@activity.defn
async def call_greeting_service(to_language: Language) -> str | None:
    CALLS.append(to_language.name)
    greetings = {Language.ARABIC: "مرحبا بالعالم", Language.CHINESE: NI_HAO,
                 Language.ENGLISH: "Hello, world", Language.FRENCH: "Bonjour, monde",
                 Language.HINDI: "नमस्ते दुनिया", Language.SPANISH: "¡Hola mundo"}
    return greetings.get(to_language)


@workflow.defn
class LanguageGreetingWorkflow:
    """Temporal's message-passing introduction sample (its asyncio.Lock left out), renamed from
    GreetingWorkflow: greeting.py's workflow, loaded in the same test process, has that name."""

    def __init__(self) -> None:
        self.approved_for_release = False
        self.approver_name: str | None = None
        self.greetings = {Language.CHINESE: NI_HAO, Language.ENGLISH: "Hello, world"}
        self.language = Language.ENGLISH

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(
            lambda: self.approved_for_release and workflow.all_handlers_finished())
        return self.greetings[self.language]

    @workflow.query
    def get_languages(self) -> list[Language]:
        return list(self.greetings)

    @workflow.query
    def get_language(self) -> Language:
        return self.language

    @workflow.signal
    def approve(self, input: ApproveInput) -> None:
        self.approved_for_release = True
        self.approver_name = input.name

    @workflow.update
    def set_language(self, language: Language) -> Language:
        # 👉 An Update handler can mutate the Workflow state and return a value.
        previous_language, self.language = self.language, language
        return previous_language

    @set_language.validator
    def validate_language(self, language: Language) -> None:
        if language not in self.greetings:
            # 👉 In an Update validator you raise any exception to reject the Update.
            raise ValueError(f"{language.name} is not supported")

    @workflow.update
    async def set_language_using_activity(self, language: Language) -> Language:
        # 👉 This update handler is async, so it can execute an activity.
        if language not in self.greetings:
            greeting = await workflow.execute_activity(
                call_greeting_service, language, start_to_close_timeout=timedelta(seconds=10))
            if greeting is None:
                # 👉 An update validator cannot be async, so cannot be used to check that the
                # remote call_greeting_service supports the requested language. Raising
                # ApplicationError will fail the Update, but the WorkflowExecutionUpdateAccepted
                # event will still be added to history.
                raise ApplicationError(
                    f"Greeting service does not support {language.name}")
            self.greetings[language] = greeting
        previous_language, self.language = self.language, language
        return previous_language


async def _served(db: str, *workflows: type) -> tuple[Client, Worker]:
    client = Client(db)
    return client, Worker(client, task_queue="greeting-tq", workflows=list(workflows),
                          activities=[call_greeting_service])


async def test_the_hello_update_sample_prints_what_temporal_prints(
        any_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", any_db)
    sample = load_example("hello_update")
    await asyncio.wait_for(sample.main(), HANG_GUARD)
    assert capsys.readouterr().out == ("Update Result: Workflow status updated\n"
                                       "Workflow Result: Hello, World!\n")


async def test_sync_and_async_updates_return_values_and_change_what_the_workflow_returns(
        any_db: str) -> None:
    client, worker = await _served(any_db, LanguageGreetingWorkflow)
    async with worker:
        handle = await client.start_workflow(LanguageGreetingWorkflow.run, id="greeting",
                                             task_queue="greeting-tq")
        previous = await asyncio.wait_for(handle.execute_update(
            LanguageGreetingWorkflow.set_language, Language.CHINESE), HANG_GUARD)
        assert previous is Language.ENGLISH
        assert await handle.query(LanguageGreetingWorkflow.get_language) == Language.CHINESE
        previous = await asyncio.wait_for(handle.execute_update(
            LanguageGreetingWorkflow.set_language_using_activity, Language.ARABIC), HANG_GUARD)
        assert previous is Language.CHINESE
        await handle.signal(LanguageGreetingWorkflow.approve, ApproveInput(name=""))
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == "مرحبا بالعالم"
    client.durable.close()


async def test_a_rejected_update_never_runs_and_leaves_the_workflow_as_it_was(
        any_db: str) -> None:
    """The validator's exception reaches the caller as the cause of WorkflowUpdateFailedError;
    the handler never ran, the run's state is unchanged, and the run goes on taking updates."""
    client, worker = await _served(any_db, LanguageGreetingWorkflow)
    async with worker:
        handle = await client.start_workflow(LanguageGreetingWorkflow.run, id="reject",
                                             task_queue="greeting-tq")
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await asyncio.wait_for(
                handle.execute_update(LanguageGreetingWorkflow.set_language, Language.FRENCH,
                                      id="to-french"), HANG_GUARD)
        assert isinstance(failed.value.cause, ApplicationError)
        assert failed.value.cause.type == "ValueError"
        assert failed.value.cause.message == "FRENCH is not supported"
        assert await handle.query(LanguageGreetingWorkflow.get_language) == Language.ENGLISH
        stages = await client._update_stages("reject", "to-french")
        assert [stage["stage"] for _, stage in stages] == ["rejected"]
        # the id of a rejected update is free: sent again once it would pass, it is accepted
        await handle.execute_update(LanguageGreetingWorkflow.set_language_using_activity,
                                    Language.FRENCH)
        assert await handle.execute_update(LanguageGreetingWorkflow.set_language, Language.CHINESE,
                                           id="to-french") is Language.FRENCH
        await handle.signal(LanguageGreetingWorkflow.approve, ApproveInput(name="me"))
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == NI_HAO
    client.durable.close()


async def test_a_handler_raising_application_error_fails_the_update_not_the_workflow(
        any_db: str) -> None:
    client, worker = await _served(any_db, LanguageGreetingWorkflow)
    async with worker:
        handle = await client.start_workflow(LanguageGreetingWorkflow.run, id="fail-update",
                                             task_queue="greeting-tq")
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await asyncio.wait_for(handle.execute_update(
                LanguageGreetingWorkflow.set_language_using_activity, Language.PORTUGUESE),
                HANG_GUARD)
        assert isinstance(failed.value.cause, ApplicationError)
        assert failed.value.cause.message == "Greeting service does not support PORTUGUESE"
        await handle.signal(LanguageGreetingWorkflow.approve, ApproveInput(name="me"))
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == "Hello, world"
    client.durable.close()


async def test_start_update_returns_once_accepted_and_an_update_id_is_one_update(
        any_db: str) -> None:
    """The same id sent twice (and a handle fetched by id) is one update: its activity ran
    once, and every caller gets its result."""
    CALLS.clear()
    client, worker = await _served(any_db, LanguageGreetingWorkflow)
    async with worker:
        handle = await client.start_workflow(LanguageGreetingWorkflow.run, id="ids",
                                             task_queue="greeting-tq")
        update = await asyncio.wait_for(handle.start_update(
            LanguageGreetingWorkflow.set_language_using_activity, Language.HINDI, id="to-hindi",
            wait_for_stage=WorkflowUpdateStage.ACCEPTED), HANG_GUARD)
        assert update.id == "to-hindi" and update.workflow_id == "ids"
        again = await handle.start_update(LanguageGreetingWorkflow.set_language_using_activity,
                                          Language.HINDI, id="to-hindi",
                                          wait_for_stage=WorkflowUpdateStage.COMPLETED)
        assert await asyncio.wait_for(update.result(), HANG_GUARD) is Language.ENGLISH
        assert await again.result() is Language.ENGLISH
        fetched = handle.get_workflow_update_handle("to-hindi", result_type=Language)
        assert await fetched.result() is Language.ENGLISH
        await handle.signal(LanguageGreetingWorkflow.approve, ApproveInput(name="me"))
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == "नमस्ते दुनिया"
    assert CALLS == ["HINDI"]
    client.durable.close()


@workflow.defn
class ShoppingCart:
    """An update-with-start workflow as Temporal's docs write one: the first item starts the
    cart, later ones go to the running cart."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked_out = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(
            lambda: self.checked_out and workflow.all_handlers_finished())
        return self.items

    @workflow.update
    async def add_item(self, item: str) -> int:
        await asyncio.sleep(0.05)  # a durable timer: the handler is unfinished meanwhile
        self.items.append(item)
        return len(self.items)

    @workflow.signal
    def checkout(self) -> None:
        self.checked_out = True


@workflow.defn
class Impatient:
    """Returns as soon as it is told to, without waiting for its update handlers."""

    def __init__(self) -> None:
        self.stop = False
        self.started: list[str] = []

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.stop)
        return self.started

    @workflow.update
    async def slow(self, name: str) -> str:
        info = workflow.current_update_info()
        assert info is not None
        # before its first await: seen by queries, kept on replay
        self.started.append(f"{info.name}:{info.id}:{name}")
        await asyncio.sleep(3600)
        return name

    @workflow.query
    def names(self) -> list[str]:
        return self.started

    @workflow.signal
    def finish(self) -> None:
        self.stop = True


async def test_update_with_start_starts_the_workflow_or_uses_the_running_one(
        any_db: str) -> None:
    client, worker = await _served(any_db, ShoppingCart)
    async with worker:
        def start_op() -> WithStartWorkflowOperation[list[str]]:
            return WithStartWorkflowOperation(
                ShoppingCart.run, id="cart-ada", task_queue="greeting-tq",
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)

        first = start_op()
        count = await asyncio.wait_for(client.execute_update_with_start_workflow(
            ShoppingCart.add_item, "apples", start_workflow_operation=first), HANG_GUARD)
        assert count == 1
        second = start_op()
        update = await client.start_update_with_start_workflow(
            ShoppingCart.add_item, "pears", start_workflow_operation=second,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        cart = await second.workflow_handle()
        assert cart.id == (await first.workflow_handle()).id == "cart-ada"
        await cart.signal(ShoppingCart.checkout)  # all_handlers_finished holds the run
        assert await asyncio.wait_for(cart.result(), HANG_GUARD) == ["apples", "pears"]
        assert await update.result() == 2
    client.durable.close()


async def test_updates_to_a_finished_or_missing_workflow_raise_rpc_errors(any_db: str) -> None:
    client, worker = await _served(any_db, ShoppingCart)
    async with worker:
        cart = await client.start_workflow(ShoppingCart.run, id="done-cart",
                                           task_queue="greeting-tq")
        await cart.signal(ShoppingCart.checkout)
        assert await asyncio.wait_for(cart.result(), HANG_GUARD) == []
        with pytest.raises(RPCError, match="already completed") as ended:
            await cart.execute_update(ShoppingCart.add_item, "late")
        assert ended.value.status is RPCStatusCode.NOT_FOUND
        missing = client.get_workflow_handle_for(ShoppingCart.run, "no-such-cart")
        with pytest.raises(RPCError, match="not found"):
            await missing.execute_update(ShoppingCart.add_item, "x")
        with pytest.raises(UsageError, match="has no update handler 'remove_item'"):
            await cart.execute_update("remove_item", "x")
        with pytest.raises(ValueError, match="ADMITTED"):
            await cart.start_update(ShoppingCart.add_item, "x",
                                    wait_for_stage=WorkflowUpdateStage.ADMITTED)
    client.durable.close()


async def test_updates_through_the_serverless_entry(tmp_path: Path) -> None:
    """No worker between calls: the caller's wait spans serverless invocations, each of which
    does the work due (taking the update, running its handler's activity)."""
    db = f"sqlite:///{tmp_path / 'durable.db'}"
    client = Client(db)
    handle = await client.start_workflow(LanguageGreetingWorkflow.run, id="lambda",
                                         task_queue="greeting-tq")
    caller = asyncio.ensure_future(handle.execute_update(
        LanguageGreetingWorkflow.set_language_using_activity, Language.SPANISH))
    calls = 0
    while not caller.done() and calls < 50:
        await run_async([LanguageGreetingWorkflow], [call_greeting_service], db=db)
        calls += 1
        await asyncio.wait([caller], timeout=0.05)  # the caller reads what the call wrote
    assert await asyncio.wait_for(caller, HANG_GUARD) is Language.ENGLISH
    await handle.signal(LanguageGreetingWorkflow.approve, ApproveInput(name="me"))
    await run_async([LanguageGreetingWorkflow], [call_greeting_service], db=db)
    assert client.durable.get("lambda").status is ExecutionStatus.SUCCEEDED
    assert await handle.result() == "¡Hola mundo"
    client.durable.close()


async def test_a_workflow_ending_before_its_handler_fails_the_update_and_says_so(
        any_db: str, caplog: pytest.LogCaptureFixture) -> None:
    """A query sees what the accepted handler did before its first await; the run then ends
    with the handler still waiting: the worker warns, the caller gets
    WorkflowUpdateFailedError."""
    client, worker = await _served(any_db, Impatient)
    async with worker:
        handle = await client.start_workflow(Impatient.run, id="impatient",
                                             task_queue="greeting-tq")
        update = await asyncio.wait_for(handle.start_update(
            Impatient.slow, "nap", id="nap-1", wait_for_stage=WorkflowUpdateStage.ACCEPTED),
            HANG_GUARD)
        assert await handle.query(Impatient.names) == ["slow:nap-1:nap"]
        with caplog.at_level(logging.WARNING):
            await handle.signal(Impatient.finish)
            assert await asyncio.wait_for(handle.result(), HANG_GUARD) == ["slow:nap-1:nap"]
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await asyncio.wait_for(update.result(), HANG_GUARD)
        assert isinstance(failed.value.cause, ApplicationError)
        assert failed.value.cause.type == "AcceptedUpdateCompletedWorkflow"
    assert any("update handlers are still running (update ids: nap-1)" in r.getMessage()
               for r in caplog.records)
    client.durable.close()


@workflow.defn
class Mailroom:
    """An async signal handler waiting on what an update handler does after its activity: the
    run returns only once both have finished."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.stamped = False
        self.closed = False

    @workflow.run
    async def run(self) -> list[str]:
        await workflow.wait_condition(lambda: self.closed and workflow.all_handlers_finished())
        return self.log

    @workflow.signal
    async def post(self, item: str) -> None:
        await workflow.wait_condition(lambda: self.stamped)
        self.log.append(f"posted {item}")

    @workflow.update
    async def stamp(self, item: str) -> int:
        await asyncio.sleep(0.05)  # a durable timer: the close below arrives meanwhile
        await workflow.execute_activity(call_greeting_service, Language.FRENCH,
                                        start_to_close_timeout=timedelta(seconds=10))
        self.stamped = True
        self.log.append(f"stamped {item}")
        return len(self.log)

    @stamp.validator
    def validate_stamp(self, item: str) -> None:
        if not item:
            raise ValueError("nothing to stamp")

    @workflow.signal
    def close(self) -> None:
        self.closed = True


async def test_all_handlers_finished_waits_for_async_signal_and_update_handlers(
        any_db: str) -> None:
    client, worker = await _served(any_db, Mailroom)
    async with worker:
        handle = await client.start_workflow(Mailroom.run, id="mailroom",
                                             task_queue="greeting-tq")
        await handle.signal(Mailroom.post, "a")
        with pytest.raises(WorkflowUpdateFailedError):
            await asyncio.wait_for(handle.execute_update(Mailroom.stamp, ""), HANG_GUARD)
        stamping = await asyncio.wait_for(handle.start_update(
            Mailroom.stamp, "b", wait_for_stage=WorkflowUpdateStage.ACCEPTED), HANG_GUARD)
        await handle.signal(Mailroom.close)
        assert await asyncio.wait_for(handle.result(), HANG_GUARD) == ["stamped b", "posted a"]
        assert await stamping.result() == 1
    client.durable.close()


def test_update_definitions_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(UsageError, match="must not be `async`"):
        class AsyncValidator:
            @workflow.update
            def set_value(self, value: int) -> None: ...

            @set_value.validator
            async def check(self, value: int) -> None: ...

    with pytest.raises(UsageError, match="dynamic update handlers"):
        workflow.update(dynamic=True)

    @workflow.defn(name="NamedUpdates")
    class NamedUpdates:
        @workflow.run
        async def run(self) -> None: ...

        @workflow.update(name="set-value",
                         unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
        def set_value(self, value: int) -> None: ...

    defn = definition_of(NamedUpdates)
    assert defn.update_name(NamedUpdates.set_value) == defn.update_name("set-value") == (
        "set-value")
    with pytest.raises(UsageError, match="its update handlers: set-value"):
        defn.update_name("set_value")
