"""durable.temporal and asyncio: workflow code gets durable sleep/gather/wait_for, and nothing
else in the process is affected, neither by importing durable.temporal nor by defining or
running a Temporal-style workflow.

The mechanism (src/durable/temporal/_workflow_asyncio.py): `asyncio` is never modified;
`@workflow.defn` binds `_workflow_asyncio` in place of `asyncio`, and of names imported from it,
in the namespaces the class's code runs in, and those functions are asyncio's own unless called
from a running workflow's code. The forms used here are the supported ones.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from durable.temporal import _workflow_asyncio, durable_workflow, workflow
from durable.temporal._definition import DEFINITIONS, DEFN_ATTR
from durable.temporal.exceptions import UnsupportedFeature
from durable.testing import TestEnvironment
from tests.apps import temporal_asyncio_base as base
from tests.apps import temporal_asyncio_forms as forms

STANDARD = {"sleep": asyncio.tasks.sleep, "gather": asyncio.tasks.gather,
            "wait_for": asyncio.tasks.wait_for}
"""asyncio's own functions, from the module that defines them."""


def test_importing_durable_temporal_leaves_asyncio_untouched() -> None:
    """In a fresh interpreter: importing every durable.temporal module, and even defining a
    workflow class, changes none of asyncio's attributes."""
    script = textwrap.dedent("""
        import asyncio, sys
        before = dict(vars(asyncio))
        import durable.temporal
        import durable.temporal.client, durable.temporal.serverless, durable.temporal.worker
        from durable.temporal import workflow
        assert vars(asyncio) == before, "importing durable.temporal changed asyncio"

        @workflow.defn
        class Defined:
            @workflow.run
            async def run(self) -> None:
                await asyncio.sleep(1)

        # this script's own `asyncio` is now the workflow code's; the module itself is not
        assert asyncio is not sys.modules["asyncio"]
        real = sys.modules["asyncio"]
        changed = sorted(k for k, v in vars(real).items() if before.get(k) is not v)
        assert not changed and len(vars(real)) == len(before), f"asyncio changed: {changed}"
        print("untouched")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "untouched"


def test_defining_a_workflow_binds_only_the_namespaces_its_code_runs_in() -> None:
    assert forms.asyncio is _workflow_asyncio and forms.aio is _workflow_asyncio
    assert forms.nap is _workflow_asyncio.sleep
    assert (forms.gather, forms.wait_for) == (_workflow_asyncio.gather, _workflow_asyncio.wait_for)
    assert base.asyncio is _workflow_asyncio  # a base class's module: workflow code too
    # the primitives are asyncio's own classes, extended; everything else is asyncio's object
    assert issubclass(forms.asyncio.Queue, asyncio.Queue) and forms.asyncio.Queue is not (
        asyncio.Queue)
    assert forms.asyncio.CancelledError is asyncio.CancelledError
    assert {n: getattr(asyncio, n) for n in STANDARD} == STANDARD
    # and no module outside workflow code holds anything of _workflow_asyncio
    # Workflow code: every loaded @workflow.defn class's namespaces, also of a class whose
    # name a later definition took over in DEFINITIONS (two copies of one example loaded).
    definitions = [*DEFINITIONS.values(),
                   *(value.__dict__[DEFN_ATTR] for module in list(sys.modules.values())
                     for value in list(vars(module).values())
                     if isinstance(value, type) and DEFN_ATTR in value.__dict__)]
    bound = {id(ns) for d in definitions for ns in d.namespaces}
    ours = {id(_workflow_asyncio), *(id(getattr(_workflow_asyncio, n)) for n in STANDARD)}
    leaked = [f"{name}.{attr}" for name, module in list(sys.modules.items())
              if module is not _workflow_asyncio and id(vars(module)) not in bound
              for attr, value in list(vars(module).items())
              if id(value) in ours and attr != "_workflow_asyncio"]  # not an import of it
    assert leaked == []


@pytest.mark.filterwarnings("error::RuntimeWarning",  # a replayed race closes its loser
                            "error::pytest.PytestUnraisableExceptionWarning")
async def test_every_supported_form_is_durable_in_workflow_code() -> None:
    wf = durable_workflow(forms.EveryForm)
    async with TestEnvironment(wf) as env:
        began = env.now
        out = await asyncio.wait_for(env.run(wf, id="forms"), 60)  # a real sleep would show
        assert out == ["a", "b", "c", "d", "timed out", "timed out", "timed out"]
        assert env.now - began == pytest.approx(1 + 2 + 4 + 8 + 16 + 3 * 32)
        types = [op.type.value for op in env.operations("forms")]
        assert types.count("WAIT") == 5 + 3
    assert forms.late_sleep is _workflow_asyncio.sleep  # bound when the workflow first ran


async def test_plain_and_native_code_get_standard_asyncio_while_a_temporal_workflow_runs(
        ) -> None:
    """With a Temporal-style workflow in flight on this loop (its activity held), a plain
    coroutine and a native @durable.workflow, both in the workflow's own module, really sleep,
    yield, gather and time out; the Temporal workflow's sleep after that is still durable."""
    forms.GATE.update(entered=asyncio.Event(), release=asyncio.Event())
    holding = durable_workflow(forms.Holding)
    async with TestEnvironment(holding, forms.plain_native) as env:
        began = env.now
        held = env.start(holding, id="held")
        native = env.start(forms.plain_native, id="native")
        settling = asyncio.ensure_future(env.settle())
        try:
            await asyncio.wait_for(forms.GATE["entered"].wait(), 30)
            assert await forms.plain_asyncio() == forms.PLAIN_RESULT
            assert await asyncio.wait_for(env.result(native), 30) == forms.PLAIN_RESULT
            assert env.get("held").status.value == "RUNNING"
        finally:
            forms.GATE["release"].set()
            await settling
        assert [op.type.value for op in env.operations("native")] == []  # nothing durable
        assert await env.result(held) == "released"
        assert env.now - began == pytest.approx(3600)
        assert [op.type.value for op in env.operations("held")] == ["STEP", "WAIT"]


def test_asyncio_imported_inside_workflow_code_is_refused() -> None:
    """Such an import binds asyncio's own functions where @workflow.defn cannot reach them:
    the sleep would silently not be durable."""
    with pytest.raises(UnsupportedFeature, match="`import asyncio` inside workflow code"):
        @workflow.defn
        class LocalImport:
            @workflow.run
            async def run(self) -> None:
                import asyncio

                await asyncio.sleep(1)

    with pytest.raises(UnsupportedFeature, match="`from asyncio import sleep` inside"):
        @workflow.defn
        class LocalFromImport:
            @workflow.run
            async def run(self) -> None:
                from asyncio import sleep

                await sleep(1)

    @workflow.defn
    class PassiveImport:  # the passive names are the same objects either way
        @workflow.run
        async def run(self) -> Any:
            from asyncio import CancelledError

            return CancelledError
