"""Approval chain: a request needs a quorum of approvers. Each approver gets a child workflow
of their own (its own run and history, linked to the parent); the parent waits for the quorum.

Each child issues a callback id and "emails" it (here: writes it to an outbox file); whoever
holds the id approves or rejects:

    durable callback succeed CALLBACK_ID --payload '"ok"'     # approve
    durable callback fail CALLBACK_ID --payload '"too expensive"'

As soon as the quorum is reached the parent decides; the children it no longer needs are
cancelled. If so many reject that the quorum can no longer be reached, the request is rejected.
An approver who does not answer within the timeout counts as a rejection.

Run it:

    durable worker examples/approval_chain.py &
    durable start examples/approval_chain.py:approval_chain \\
        --input '{"request": "laptop", "approvers": ["ann", "bob", "cy"], "quorum": 2}'
    cat .durable/outbox.jsonl         # the callback ids handed to each approver
"""

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from durable import BatchFailed, Completion, Context, workflow

OUTBOX = Path(os.environ.get("APPROVAL_OUTBOX", ".durable/outbox.jsonl"))


@dataclass(frozen=True)
class ApprovalRequest:
    request: str
    approvers: list[str] = field(default_factory=list)
    quorum: int = 1
    timeout_hours: float = 48.0


@dataclass(frozen=True)
class Ask:
    request: str
    approver: str
    timeout_hours: float


def send_approval_email(approver: str, request: str, callback_id: str) -> None:
    """Stands in for an email: the approver receives the id they resolve the callback with."""
    OUTBOX.parent.mkdir(parents=True, exist_ok=True)
    with OUTBOX.open("a") as f:
        f.write(json.dumps({"to": approver, "request": request, "callback_id": callback_id}) + "\n")


@workflow
async def ask_approver(ctx: Context, ask: Ask) -> str:
    """One approver's decision: returns their note when they approve; raises when they reject
    (the callback fails) or do not answer in time (WaitTimeout)."""
    note = await ctx.wait_for_callback(
        lambda callback_id: send_approval_email(ask.approver, ask.request, callback_id),
        name=f"approval:{ask.approver}", timeout=timedelta(hours=ask.timeout_hours))
    return f"{ask.approver}: {note}"


@workflow
async def approval_chain(ctx: Context, req: ApprovalRequest) -> dict[str, object]:
    asks = [ctx.invoke(ask_approver, Ask(req.request, a, req.timeout_hours))
            for a in req.approvers]
    policy = Completion(min_successful=req.quorum,
                        tolerated_failures=len(req.approvers) - req.quorum)
    try:
        votes = await ctx.gather(*asks, completion=policy)
    except BatchFailed as e:
        return {"request": req.request, "approved": False,
                "rejections": [err.message for err in e.result.errors]}
    return {"request": req.request, "approved": True, "approvals": votes.results}
