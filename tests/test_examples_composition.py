"""The composition examples, driven on the virtual clock: fan-out and the approval chain."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from durable.model import ExecutionStatus
from durable.testing import TestEnvironment

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fanout = load("fanout")
chain = load("approval_chain")


async def test_fanout_enriches_a_thousand_records_tolerating_the_malformed():
    async with TestEnvironment(fanout.enrich_batch) as env:
        out = await env.run(fanout.enrich_batch, fanout.Batch(count=1000, max_concurrency=16))
    assert out["enriched"] == 990
    assert out["failed"] == [i for i in range(1000) if i % 97 == 96]
    assert out["reason"] == "ALL_COMPLETED"


async def test_fanout_fails_when_more_records_are_malformed_than_tolerated():
    async with TestEnvironment(fanout.enrich_batch) as env:
        handle = env.start(fanout.enrich_batch,
                           fanout.Batch(count=100, broken_every=10, tolerated_failures=5))
        with pytest.raises(Exception, match="items failed"):
            await env.result(handle)


@pytest.fixture
def outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "outbox.jsonl"
    monkeypatch.setattr(chain, "OUTBOX", path)
    return path


def mails(outbox: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    return {m["to"]: m["callback_id"] for m in lines}


async def test_approval_chain_reaches_quorum_and_cancels_the_approver_not_needed(outbox):
    async with TestEnvironment(chain.approval_chain, chain.ask_approver) as env:
        req = chain.ApprovalRequest("laptop", ["ann", "bob", "cy"], quorum=2)
        handle = env.start(chain.approval_chain, req)
        await env.settle()
        ids = mails(outbox)
        assert sorted(ids) == ["ann", "bob", "cy"]
        env.complete_callback(ids["ann"], "fine")
        env.complete_callback(ids["cy"], "go ahead")
        out = await env.result(handle)
        assert out == {"request": "laptop", "approved": True,
                       "approvals": ["ann: fine", "cy: go ahead"]}
        children = env.client.list(workflow=chain.ask_approver.name)
        bob = next(c for c in children if c.status is not ExecutionStatus.SUCCEEDED)
        await env.settle()
        assert env.get(bob.run_id).status is ExecutionStatus.STOPPED


async def test_approval_chain_rejects_when_quorum_becomes_unreachable(outbox):
    async with TestEnvironment(chain.approval_chain, chain.ask_approver) as env:
        req = chain.ApprovalRequest("yacht", ["ann", "bob", "cy"], quorum=2, timeout_hours=24)
        handle = env.start(chain.approval_chain, req)
        await env.settle()
        env.fail_callback(mails(outbox)["ann"], "too expensive")
        out = await env.result(handle)  # bob and cy never answer: both time out after a day
        assert out["approved"] is False
        assert len(out["rejections"]) >= 2
