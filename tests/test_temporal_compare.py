"""The same workflow code under Temporal's own SDK and under Durable: same results, same activity
calls.

No Temporal server can run here (temporalio's test and dev servers are binaries it downloads).
What does run offline is the part of temporalio that gives workflow code its semantics: the
workflow instance, Temporal's deterministic asyncio event loop, which turns activations (start,
activity resolved, timer fired, signal, query) into commands. `MiniTemporal` below plays the
server's part for it, in process: it runs activities locally when scheduled, fires timers on a
virtual clock, and delivers signals and queries as activations. That uses temporalio internals
(`temporalio.worker._workflow_instance`), so if a temporalio version changes them the test skips
saying so, and tests/test_temporal_workflows.py still checks the documented semantics.

The example files are loaded twice: as written (importing durable.temporal), and with only their
import lines rewritten to temporalio's.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import io
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from durable.temporal import durable_workflow
from durable.temporal._definition import DEFINITIONS
from durable.temporal.client import Client
from durable.testing import TestEnvironment

temporalio = pytest.importorskip("temporalio", reason="temporalio is not installed: "
                                 "`pip install temporalio` to compare with Temporal's own SDK")

EXAMPLES = Path(__file__).parent.parent / "examples" / "temporal_style"
IMPORTS = {
    "from durable.temporal import activity, workflow": "from temporalio import activity, workflow",
    "from durable.temporal import workflow": "from temporalio import workflow",
    "from durable.temporal.serverless import run": "run = None",
    "from durable.temporal.client import Client": "from temporalio.client import Client",
    "from durable.temporal.client import Client, WorkflowFailureError":
        "from temporalio.client import Client, WorkflowFailureError",
    "from durable.temporal.client import Client, WorkflowFailureError, WorkflowUpdateFailedError":
        "from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError",
    "from durable.temporal.common import WorkflowIDConflictPolicy":
        "from temporalio.common import WorkflowIDConflictPolicy",


    "from durable.temporal.exceptions import CancelledError":
        "from temporalio.exceptions import CancelledError",
    "from durable.temporal.common import RetryPolicy": "from temporalio.common import RetryPolicy",
    "from durable.temporal.worker import Worker": "from temporalio.worker import Worker",
    "from durable.temporal.envconfig import ClientConfig":
        "from temporalio.envconfig import ClientConfig",
    "from durable.temporal.common import RawValue": "from temporalio.common import RawValue",
}


@pytest.fixture(autouse=True)
def examples_unloaded_after() -> Iterator[None]:
    """The examples `load` loads again, under names of their own, leave sys.modules and the
    Temporal-style definitions after each test, whatever order modules run in: their durable
    flavour re-defines the examples' workflows, and tests/test_temporal_asyncio.py finds every
    module of workflow code among the definitions."""
    definitions = dict(DEFINITIONS)
    yield
    for name in [n for n in sys.modules if n.startswith("compare_")]:
        del sys.modules[name]
    DEFINITIONS.clear()
    DEFINITIONS.update(definitions)


def load(name: str, flavour: str) -> ModuleType:
    """An example module; for "temporal", with its import lines (and nothing else) rewritten."""
    source = (EXAMPLES / f"{name}.py").read_text()
    if flavour == "temporal":
        lines = [IMPORTS.get(line, line) for line in source.splitlines()]
        assert sum(a != b for a, b in zip(lines, source.splitlines(), strict=True)) >= 1
        assert "durable" not in "\n".join(line for line in lines if line.startswith("from"))
        source = "\n".join(lines)
    module = ModuleType(f"compare_{flavour}_{name}")
    module.__file__ = str(EXAMPLES / f"{name}.py")
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module


class MiniTemporal:
    """Drives temporalio workflow instances the way Temporal's core would, without a server."""

    def __init__(self, workflows: list[type], activities: list[Callable[..., Any]]) -> None:
        from temporalio import activity as t_activity
        from temporalio import workflow as t_workflow
        from temporalio.converter import DataConverter
        from temporalio.worker._workflow_instance import (
            UnsandboxedWorkflowRunner,
            WorkflowInstanceDetails,
        )

        self._details = WorkflowInstanceDetails
        self._runner = UnsandboxedWorkflowRunner()
        self.defns = {d.name: d for d in map(t_workflow._Definition.must_from_class, workflows)}
        self.activities = {t_activity._Definition.must_from_callable(a).name: a
                           for a in activities}
        self.converter = DataConverter.default
        self.now = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        self.timers: list[tuple[float, int, str, int]] = []
        self.runs: dict[str, dict[str, Any]] = {}
        self.activity_calls: Counter[str] = Counter()
        self._order = 0

    # -- the server's side -------------------------------------------------------------------
    def start(self, workflow: type, args: list[Any], id: str, parent: tuple[str, int] | None
              = None) -> None:
        from temporalio import workflow as t_workflow
        from temporalio.bridge.proto import workflow_activation as wa
        from temporalio.common import Priority, TypedSearchAttributes

        defn = t_workflow._Definition.must_from_class(workflow)
        start = datetime.fromtimestamp(self.now, UTC)
        info = t_workflow.Info(
            attempt=1, continued_run_id=None, cron_schedule=None, execution_timeout=None,
            first_execution_run_id=id, headers={}, namespace="default",
            original_execution_run_id=id, parent=None, root=None, raw_memo={},
            retry_policy=None, run_id=id, run_timeout=None,
            search_attributes={}, start_time=start, workflow_start_time=start,
            task_queue="q", task_timeout=start - start,
            typed_search_attributes=TypedSearchAttributes.empty, workflow_id=id,
            workflow_type=defn.name, priority=Priority.default)
        async def create(details: Any) -> Any:  # the worker creates instances on its loop
            return self._runner.create_instance(details)
        instance = asyncio.run(create(self._details(
            payload_converter_factory=self.converter._new_payload_converter,
            failure_converter_class=self.converter.failure_converter_class,
            interceptor_classes=[], defn=defn, info=info, randomness_seed=7,
            extern_functions={}, disable_eager_activity_execution=True,
            worker_level_failure_exception_types=[], patch_activation_callback=None,
            last_completion_result=temporalio.api.common.v1.Payloads(), last_failure=None)))
        self.runs[id] = {"instance": instance, "jobs": [], "result": None, "done": False,
                         "parent": parent, "queries": {}, "updates": {},
                         "workflow": workflow}
        init = wa.InitializeWorkflow(workflow_type=defn.name, workflow_id=id,
                                     arguments=self.converter.payload_converter.to_payloads(args),
                                     randomness_seed=7)
        self.runs[id]["jobs"].append(wa.WorkflowActivationJob(initialize_workflow=init))

    def signal(self, id: str, name: str, *args: Any) -> None:
        from temporalio.bridge.proto import workflow_activation as wa
        self.runs[id]["jobs"].append(wa.WorkflowActivationJob(signal_workflow=wa.SignalWorkflow(
            signal_name=name, input=self.converter.payload_converter.to_payloads(list(args)))))

    def query(self, id: str, name: str, *args: Any) -> Any:
        from temporalio.bridge.proto import workflow_activation as wa
        self.settle()  # as Temporal: a query waits for the workflow task in flight
        query_id = uuid.uuid4().hex
        job = wa.WorkflowActivationJob(query_workflow=wa.QueryWorkflow(
            query_id=query_id, query_type=name,
            arguments=self.converter.payload_converter.to_payloads(list(args))))
        self._activate(id, [job])
        return self.runs[id]["queries"].pop(query_id)

    def update(self, id: str, name: str, *args: Any, update_id: str) -> list[tuple[str, Any]]:
        """Send an update and settle: the stages the workflow answered, in order (accepted,
        then completed with its value; or rejected with the failure)."""
        from temporalio.bridge.proto import workflow_activation as wa
        self.runs[id]["updates"][update_id] = []
        self.runs[id]["jobs"].append(wa.WorkflowActivationJob(do_update=wa.DoUpdate(
            id=update_id, protocol_instance_id=update_id, name=name, run_validator=True,
            input=self.converter.payload_converter.to_payloads(list(args)))))
        self.settle()
        return self.runs[id]["updates"][update_id]  # type: ignore[no-any-return]

    def result(self, id: str) -> Any:
        while not self.runs[id]["done"]:
            if not self.settle() and not self._fire_timer():
                raise AssertionError(f"{id} waits on nothing")
        return self.runs[id]["result"]

    def settle(self) -> bool:
        """Deliver every pending activation; True if anything ran."""
        progressed = False
        while pending := [i for i, r in self.runs.items() if r["jobs"] and not r["done"]]:
            for id in pending:
                jobs, self.runs[id]["jobs"] = self.runs[id]["jobs"], []
                self._activate(id, jobs)
                progressed = True
        return progressed

    def _fire_timer(self) -> bool:
        from temporalio.bridge.proto import workflow_activation as wa
        if not self.timers:
            return False
        at, _, id, seq = heapq.heappop(self.timers)
        self.now = max(self.now, at)
        self.runs[id]["jobs"].append(wa.WorkflowActivationJob(fire_timer=wa.FireTimer(seq=seq)))
        return True

    def _activate(self, id: str, jobs: list[Any]) -> None:
        from google.protobuf.timestamp_pb2 import Timestamp
        from temporalio.bridge.proto import workflow_activation as wa

        stamp = Timestamp()
        stamp.FromNanoseconds(int(self.now * 1e9))
        completion = self.runs[id]["instance"].activate(wa.WorkflowActivation(
            run_id=id, timestamp=stamp, is_replaying=False, history_length=1, jobs=jobs))
        if completion.HasField("failed"):
            raise AssertionError(f"workflow task failed: {completion.failed.failure}")
        for command in completion.successful.commands:
            self._command(id, command)

    def _command(self, id: str, command: Any) -> None:
        from temporalio.bridge.proto import activity_result as ar
        from temporalio.bridge.proto import child_workflow as cw
        from temporalio.bridge.proto import workflow_activation as wa

        pc = self.converter.payload_converter
        run = self.runs[id]
        kind = command.WhichOneof("variant")
        if kind in ("schedule_activity", "schedule_local_activity"):
            spec = getattr(command, kind)
            fn = self.activities[spec.activity_type]
            from temporalio import activity as t_activity
            types = t_activity._Definition.must_from_callable(fn).arg_types
            args = pc.from_payloads(list(spec.arguments), types)
            self.activity_calls[spec.activity_type] += 1
            value = fn(*args)
            if inspect.isawaitable(value):
                value = asyncio.run(_awaited(value))
            resolution = ar.ActivityResolution(completed=ar.Success(result=pc.to_payload(value)))
            job = wa.WorkflowActivationJob(resolve_activity=wa.ResolveActivity(
                seq=spec.seq, result=resolution, is_local=kind == "schedule_local_activity"))
            run["jobs"].append(job)
        elif kind == "start_timer":
            self._order += 1
            delay = command.start_timer.start_to_fire_timeout.ToTimedelta().total_seconds()
            heapq.heappush(self.timers, (self.now + delay, self._order, id,
                                         command.start_timer.seq))
        elif kind == "complete_workflow_execution":
            run["done"] = True
            run["result"] = pc.from_payloads([command.complete_workflow_execution.result])[0]
            if run["parent"] is not None:
                parent, seq = run["parent"]
                result = cw.ChildWorkflowResult(completed=cw.Success(
                    result=command.complete_workflow_execution.result))
                self.runs[parent]["jobs"].append(wa.WorkflowActivationJob(
                    resolve_child_workflow_execution=wa.ResolveChildWorkflowExecution(
                        seq=seq, result=result)))
        elif kind == "start_child_workflow_execution":
            spec = command.start_child_workflow_execution
            defn = self.defns[spec.workflow_type]
            self.start(defn.cls, pc.from_payloads(list(spec.input)), spec.workflow_id,
                       parent=(id, spec.seq))
            run["jobs"].append(wa.WorkflowActivationJob(
                resolve_child_workflow_execution_start=wa.ResolveChildWorkflowExecutionStart(
                    seq=spec.seq, succeeded=wa.ResolveChildWorkflowExecutionStartSuccess(
                        run_id=spec.workflow_id))))
        elif kind == "continue_as_new_workflow_execution":  # a new run under the same id
            spec = command.continue_as_new_workflow_execution
            workflow = (self.defns[spec.workflow_type].cls if spec.workflow_type
                        else run["workflow"])
            self.start(workflow, pc.from_payloads(list(spec.arguments)), id, run["parent"])
        elif kind == "respond_to_query":
            answer = command.respond_to_query
            run["queries"][answer.query_id] = pc.from_payloads([answer.succeeded.response])[0]
        elif kind == "update_response":
            answer = command.update_response
            stage = answer.WhichOneof("response")
            value = (pc.from_payloads([answer.completed])[0] if stage == "completed"
                     else answer.rejected if stage == "rejected" else None)
            run["updates"][answer.protocol_instance_id].append((stage, value))
        elif kind in ("set_patch_marker", "cancel_timer"):
            pass
        else:
            raise AssertionError(f"MiniTemporal does not handle the {kind} command")


async def _awaited(value: Any) -> Any:
    return await value


def mini_temporal(workflows: list[type], activities: list[Callable[..., Any]]) -> MiniTemporal:
    try:
        return MiniTemporal(workflows, activities)
    except (ImportError, AttributeError, TypeError) as e:
        pytest.skip(f"this temporalio version's workflow-instance internals differ ({e}); the "
                    "documented-semantics tests in test_temporal_workflows.py still apply")


def counting(module: ModuleType, name: str, calls: Counter[str]) -> None:
    """Count the calls of an activity while keeping its registered name."""
    original = getattr(module, name)

    async def counted(*args: Any) -> Any:
        calls[name] += 1
        value = original(*args)
        return await value if inspect.isawaitable(value) else value
    counted.__name__ = name
    counted.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
    counted.__annotations__ = original.__annotations__
    setattr(module, name, module.activity.defn(name=name)(counted))


def test_greeting_gives_the_same_result_and_activity_calls_under_both() -> None:
    ours, theirs = load("greeting", "durable"), load("greeting", "temporal")
    temporal = mini_temporal([theirs.GreetingWorkflow], [theirs.compose_greeting])
    temporal.start(theirs.GreetingWorkflow, ["Ada"], "greet")
    began = temporal.now
    temporal_result = temporal.result("greet")
    temporal_elapsed = temporal.now - began

    calls: Counter[str] = Counter()
    counting(ours, "compose_greeting", calls)

    async def on_durable() -> tuple[Any, float]:
        wf = durable_workflow(ours.GreetingWorkflow)
        async with TestEnvironment(wf) as env:
            start = env.now
            return await env.run(wf, "Ada", id="greet"), env.now - start
    durable_result, durable_elapsed = asyncio.run(on_durable())

    assert durable_result == temporal_result == ["Hello, Ada!"] * 5
    assert calls == temporal.activity_calls == {"compose_greeting": 5}
    assert durable_elapsed == temporal_elapsed == 150


def test_signals_queries_and_child_workflows_agree_under_both() -> None:
    ours, theirs = load("signals", "durable"), load("signals", "temporal")
    temporal = mini_temporal([theirs.GreetingService, theirs.GreetOne], [theirs.compose])
    svc = theirs.GreetingService
    temporal.start(svc, [], "svc")
    observed_t: list[Any] = []
    temporal.settle()
    observed_t.append(temporal.query("svc", "waiting"))
    temporal.signal("svc", "submit", "Ada")
    observed_t.append(temporal.query("svc", "waiting"))
    observed_t.append(temporal.query("svc", "greetings"))
    for name in ("Grace", "Edsger"):
        temporal.signal("svc", "submit", name)
    temporal.signal("svc", "exit")
    observed_t.append(temporal.result("svc"))
    observed_t.append(temporal.query("svc", "greetings"))

    async def on_durable() -> list[Any]:
        wfs = [durable_workflow(ours.GreetingService), durable_workflow(ours.GreetOne)]
        async with TestEnvironment(*wfs) as env:
            client = Client(env.client)
            handle = await client.start_workflow(ours.GreetingService.run, id="svc",
                                                 task_queue="q")
            seen: list[Any] = []
            await env.settle()
            seen.append(await handle.query("waiting"))
            await handle.signal("submit", "Ada")
            seen.append(await handle.query("waiting"))
            await env.settle()
            seen.append(await handle.query("greetings"))
            for name in ("Grace", "Edsger"):
                await handle.signal("submit", name)
            await handle.signal("exit")
            seen.append(await env.result(env.client.handle("svc")))
            seen.append(await handle.query("greetings"))
            return seen
    assert asyncio.run(on_durable()) == observed_t
    assert observed_t[-1] == ["Hello, Ada!", "Hello, Grace!", "Hello, Edsger!"]
    assert temporal.activity_calls == {"compose": 3}


def test_message_passing_sample_agrees_under_both() -> None:
    """Async signal handlers (a Queue put, an awaited activity), a dynamic signal and query, a
    task under an asyncio.Lock and a query set at run time: same result, same answers."""
    ours, theirs = load("message_passing", "durable"), load("message_passing", "temporal")
    temporal = mini_temporal([theirs.MessagePassingWorkflow], [theirs.lookup_title])
    temporal.start(theirs.MessagePassingWorkflow, [], "mp")
    signals: list[tuple[str, list[Any]]] = [
        ("submit_greeting", ["user1"]), ("submit_greeting", ["user2"]),
        ("submit_titled", ["Dr Who"]), ("shout", ["hey"]), ("exit", [])]
    for name, args in signals:
        temporal.signal("mp", name, *args)
    observed_t = [temporal.result("mp"), temporal.query("mp", "greeted"),
                  temporal.query("mp", "anything")]

    async def on_durable() -> list[Any]:
        wf = durable_workflow(ours.MessagePassingWorkflow)
        async with TestEnvironment(wf) as env:
            handle = await Client(env.client).start_workflow(
                ours.MessagePassingWorkflow.run, id="mp", task_queue="q")
            for name, args in signals:
                await handle.signal(name, args=args)
            return [await env.result(env.client.handle("mp")), await handle.query("greeted"),
                    await handle.query("anything")]
    assert asyncio.run(on_durable()) == observed_t
    assert observed_t[0] == ["Hello, user1", "Hello, user2", "Hello, Dr. Dr Who", "shout: hey"]
    assert temporal.activity_calls == {"lookup_title": 1}


def test_hello_activity_sample_gives_the_same_result_under_both() -> None:
    ours, theirs = load("hello_activity", "durable"), load("hello_activity", "temporal")
    temporal = mini_temporal([theirs.HelloActivityWorkflow], [theirs.compose_greeting])
    temporal.start(theirs.HelloActivityWorkflow, ["World"], "hello")

    async def on_durable() -> Any:
        wf = durable_workflow(ours.HelloActivityWorkflow)
        async with TestEnvironment(wf) as env:
            return await env.run(wf, "World", id="hello")
    assert asyncio.run(on_durable()) == temporal.result("hello") == "Hello, World!"


def test_hello_update_sample_gives_the_same_results_under_both(tmp_path: Path) -> None:
    from durable.temporal.worker import Worker
    from tests.test_temporal_workflows import load_example

    # the sample as other tests load it: defined twice, the later class would take its name
    ours, theirs = load_example("hello_update"), load("hello_update", "temporal")
    temporal = mini_temporal([theirs.HelloUpdateWorkflow], [])
    temporal.start(theirs.HelloUpdateWorkflow, [], "hello")
    temporal.settle()
    stages = temporal.update("hello", "update_workflow_status", update_id="u1")
    assert stages == [("accepted", None), ("completed", "Workflow status updated")]

    async def on_durable() -> tuple[Any, Any]:
        client = Client(f"sqlite:///{tmp_path / 'durable.db'}")
        async with Worker(client, task_queue="q", workflows=[ours.HelloUpdateWorkflow]):
            handle = await client.start_workflow(ours.HelloUpdateWorkflow.run, id="hello",
                                                 task_queue="q")
            update = await handle.execute_update(ours.HelloUpdateWorkflow.update_workflow_status)
            result = await handle.result()
        client.durable.close()
        return update, result
    assert asyncio.run(asyncio.wait_for(on_durable(), 60)) == (
        stages[1][1], temporal.result("hello"))


COUNTER = """
from temporalio import workflow


@workflow.defn(name="CompareCounter")
class CompareCounter:
    def __init__(self) -> None:
        self.total = 0
        self.done = False

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.done and workflow.all_handlers_finished())
        return self.total

    @workflow.update
    def add(self, amount: int) -> int:
        self.total += amount
        return self.total

    @add.validator
    def validate_add(self, amount: int) -> None:
        if amount < 0:
            raise ValueError(f"cannot add {amount}")

    @workflow.signal
    def finish(self) -> None:
        self.done = True
"""
"""One workflow's code, as Temporal's docs write an update with a validator; `counter_workflow`
defines it with either SDK."""


def counter_workflow(flavour: str, tmp_path: Path) -> type:
    source = COUNTER if flavour == "temporal" else COUNTER.replace(
        "from temporalio import workflow", "from durable.temporal import workflow")
    file = tmp_path / f"counter_{flavour}.py"  # a file, so its source can be read back
    file.write_text(source)
    module = ModuleType(f"compare_{flavour}_counter")
    module.__file__ = str(file)
    sys.modules[module.__name__] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module.CompareCounter  # type: ignore[no-any-return]


def test_update_validators_accept_and_reject_as_temporal_does(tmp_path: Path) -> None:
    """The same calls under both: accepted updates return the new total; a rejected one is
    never applied, and its failure carries the validator's exception type and message."""
    from durable.temporal.client import WorkflowUpdateFailedError
    from durable.temporal.exceptions import ApplicationError
    from durable.temporal.worker import Worker

    theirs = counter_workflow("temporal", tmp_path)
    ours = counter_workflow("durable", tmp_path)
    calls = [("a", 5), ("b", -2), ("c", 3)]
    temporal = mini_temporal([theirs], [])
    temporal.start(theirs, [], "counter")
    temporal.settle()
    observed_t: list[Any] = []
    for update_id, amount in calls:
        stages = temporal.update("counter", "add", amount, update_id=update_id)
        last, value = stages[-1]
        observed_t.append(value if last == "completed" else (
            "rejected", value.application_failure_info.type, value.message))
    temporal.signal("counter", "finish")
    observed_t.append(temporal.result("counter"))

    async def on_durable() -> list[Any]:
        client = Client(f"sqlite:///{tmp_path / 'durable.db'}")
        seen: list[Any] = []
        async with Worker(client, task_queue="q", workflows=[ours]):
            handle = await client.start_workflow(ours.run, id="counter", task_queue="q")
            for update_id, amount in calls:
                try:
                    seen.append(await handle.execute_update(ours.add, amount, id=update_id))
                except WorkflowUpdateFailedError as e:
                    assert isinstance(e.cause, ApplicationError)
                    seen.append(("rejected", e.cause.type, e.cause.message))
            await handle.signal(ours.finish)
            seen.append(await handle.result())
        client.durable.close()
        return seen
    assert asyncio.run(asyncio.wait_for(on_durable(), 60)) == observed_t
    assert observed_t == [5, ("rejected", "ValueError", "cannot add -2"), 8, 8]


PROFILES = """
[profile.default]
address = "frontend:7233"
namespace = "orders"
[profile.default.grpc_meta]
Team-Name = "billing"
[profile.cloud]
address = "sqlite:///cloud.db"
api_key = "secret"
[profile.cloud.tls]
server_name = "sni.example"
server_ca_cert_data = "CA"
[profile.plain]
address = "plain:7233"
[profile.plain.tls]
disabled = true
"""

ENVCONFIG_CASES: list[tuple[str, str | None, dict[str, str], dict[str, Any]]] = [
    ("the default profile", None, {}, {}),
    ("a named profile with TLS data and an API key", "cloud", {}, {}),
    ("TLS disabled in the file", "plain", {}, {}),
    ("TEMPORAL_PROFILE picks the profile", None, {"TEMPORAL_PROFILE": "cloud"}, {}),
    ("an empty TEMPORAL_PROFILE means default", None, {"TEMPORAL_PROFILE": ""}, {}),
    ("a profile the file lacks", "nope", {}, {}),
    ("the environment overrides the file", None,
     {"TEMPORAL_ADDRESS": "postgresql://h/db", "TEMPORAL_NAMESPACE": "",
      "TEMPORAL_GRPC_META_MY_KEY": "x", "TEMPORAL_API_KEY": "k"}, {}),
    ("an empty TEMPORAL_ADDRESS drops the address", None, {"TEMPORAL_ADDRESS": ""}, {}),
    ("TEMPORAL_TLS=false", None, {"TEMPORAL_TLS": "false"}, {}),
    ("TEMPORAL_TLS=0", "cloud", {"TEMPORAL_TLS": "0"}, {}),
    ("TEMPORAL_TLS=yes", None, {"TEMPORAL_TLS": "yes"}, {}),
    ("TLS settings from the environment", None,
     {"TEMPORAL_TLS_SERVER_CA_CERT_DATA": "ENVCA", "TEMPORAL_TLS_SERVER_NAME": "n",
      "TEMPORAL_TLS_CLIENT_KEY_DATA": "KEY"}, {}),
    ("disable_env ignores the environment", None, {"TEMPORAL_ADDRESS": "e:1"},
     {"disable_env": True}),
    ("disable_file reads the environment only", "cloud", {"TEMPORAL_ADDRESS": "e:1"},
     {"disable_file": True}),
    ("disabling both is an error", None, {}, {"disable_file": True, "disable_env": True}),
    ("TEMPORAL_CONFIG_FILE locates the file", None, {"TEMPORAL_CONFIG_FILE": "{file}"},
     {"config_file": None}),
    ("a missing file is no configuration", None, {}, {"config_file": "{missing}"}),
]


def _comparable(config: Any) -> Any:
    tls = config.get("tls")
    if tls is not None and not isinstance(tls, bool):  # each SDK's own TLSConfig class
        tls = {k: v for k, v in vars(tls).items() if v is not None}
    return {**config, **({"tls": tls} if "tls" in config else {})}


@pytest.mark.parametrize(("case", "profile", "env", "options"), ENVCONFIG_CASES,
                         ids=[c[0] for c in ENVCONFIG_CASES])
def test_envconfig_loads_what_temporals_sdk_loads(
        tmp_path: Path, case: str, profile: str | None, env: dict[str, str],
        options: dict[str, Any]) -> None:
    from temporalio.envconfig import ClientConfig as TemporalClientConfig

    from durable.temporal.envconfig import ClientConfig

    file = tmp_path / "temporal.toml"
    file.write_text(PROFILES)
    paths = {"{file}": str(file), "{missing}": str(tmp_path / "missing.toml")}
    env = {k: paths.get(v, v) for k, v in env.items()}
    kwargs = {"config_file": str(file), **options}
    if isinstance(kwargs["config_file"], str):
        kwargs["config_file"] = paths.get(kwargs["config_file"], kwargs["config_file"])

    def both(loader: Any) -> tuple[str, Any]:
        try:
            return "ok", _comparable(loader.load_client_connect_config(
                profile, override_env_vars=env, **kwargs))
        except Exception as e:
            return "error", type(e).__name__
    ours, theirs = both(ClientConfig), both(TemporalClientConfig)
    assert ours[0] == theirs[0], (ours, theirs)
    if ours[0] == "ok":
        assert ours == theirs
    else:
        assert ours[1] == "ConfigError"


def test_envconfig_reads_every_profile_as_temporals_sdk_does(tmp_path: Path) -> None:
    from temporalio.envconfig import ClientConfig as TemporalClientConfig

    from durable.temporal.envconfig import ClientConfig

    file = tmp_path / "temporal.toml"
    file.write_text(PROFILES)
    ours = ClientConfig.load(config_source=file, override_env_vars={}).to_dict()
    assert ours == TemporalClientConfig.load(config_source=file, override_env_vars={}).to_dict()
    assert ClientConfig.load(config_source=PROFILES).to_dict() == ours


def test_the_typical_programs_workflows_agree_under_both() -> None:
    """typical.py's order (a signal, queries, an activity by bound method and one by name, a
    child, a patch) and its batches (continue-as-new) under Temporal's workflow instances and
    under Durable: the same answers, results and activity calls."""
    ours, theirs = load("typical", "durable"), load("typical", "temporal")
    bank = theirs.BankActivities(theirs.Bank())
    temporal = mini_temporal(
        [theirs.OrderWorkflow, theirs.ShipOrder, theirs.BatchWorkflow],
        [bank.charge, theirs.send_receipt, theirs.create_label, theirs.process_batch])
    temporal.start(theirs.OrderWorkflow, ["order-1", theirs.Payment("alice", 30)], "order-1")
    observed_t: list[Any] = [temporal.query("order-1", "current_status")]
    temporal.signal("order-1", "approve")
    observed_t += [temporal.result("order-1"), temporal.query("order-1", "current_status")]
    temporal.start(theirs.BatchWorkflow, [0], "batches")
    observed_t.append(temporal.result("batches"))

    async def on_durable() -> list[Any]:
        wfs = [durable_workflow(getattr(ours, name)) for name in
               ("OrderWorkflow", "ShipOrder", "BatchWorkflow")]
        async with TestEnvironment(*wfs) as env:
            from durable.temporal import activity as d_activity

            client = Client(env.client)
            with d_activity.registered([ours.BankActivities(ours.Bank()).charge]):
                order = await client.start_workflow(
                    ours.OrderWorkflow.run, args=["order-1", ours.Payment("alice", 30)],
                    id="order-1", task_queue="q")
                await env.settle()
                seen: list[Any] = [await order.query(ours.OrderWorkflow.current_status)]
                await order.signal(ours.OrderWorkflow.approve)
                seen.append(await env.result(env.client.handle("order-1")))
                seen.append(await order.query(ours.OrderWorkflow.current_status))
                seen.append(await env.run(durable_workflow(ours.BatchWorkflow), 0,
                                          id="batches"))
            return seen
    assert asyncio.run(on_durable()) == observed_t
    assert observed_t == [
        "awaiting approval",
        "charged 30 from alice (balance 70), shipped as TRK-order-1, receipt sent", "done", 60]
    assert temporal.activity_calls == {"charge": 1, "create_label": 1, "send_receipt": 1,
                                       "process_batch": 6}


def test_hello_cancellation_activity_hears_of_its_cancellation_from_heartbeat_under_both(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample's sync activity, cancelled while it heartbeats: under temporalio's
    ActivityEnvironment and under Durable (its workflow cancelled), `activity.heartbeat()`
    raises the flavour's CancelledError and the activity's handler runs once, last."""
    from temporalio.exceptions import CancelledError as TemporalCancelledError
    from temporalio.testing import ActivityEnvironment

    from durable.temporal.exceptions import CancelledError

    def activity_lines(out: str) -> list[str]:
        return [line for line in out.splitlines()
                if line in ("Heartbeating activity", "Activity cancelled")]

    temporal = load("hello_cancellation", "temporal")
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: env.cancel()
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(TemporalCancelledError):
        env.run(temporal.never_complete_activity)
    under_temporal = activity_lines(out.getvalue())

    durable = load("hello_cancellation", "durable")
    assert durable.CancelledError is CancelledError
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"sqlite:///{tmp_path / 'durable.db'}")
    out = io.StringIO()
    with redirect_stdout(out):
        asyncio.run(durable.main("compare-cancellation"))  # waits for the activity's thread
    under_durable = activity_lines(out.getvalue())

    for lines in (under_temporal, under_durable):
        assert lines[-1] == "Activity cancelled" and lines.count("Activity cancelled") == 1
        assert set(lines[:-1]) == {"Heartbeating activity"}
