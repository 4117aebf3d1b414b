"""The data plane of the AWS durable-execution contract, as store transactions.

A function invoked over the contract holds a checkpoint token instead of a Python checkpointer.
Each function here runs inside one `Tx`, on top of the engine's state machine:

- `start_execution` starts a run under an execution name (Invoke's X-Amz-Durable-Execution-Name),
  idempotent by name: the names are the contract's, the engine knows runs by id only.
- `open_invocation` mints the token for an invocation the engine just leased, and builds the
  invocation envelope (the first page of the run's state).
- `checkpoint` accepts a batch of updates only with the newest token (rotation: each answer
  carries a new one, and the old one stops working) of the invocation that still holds the
  run's lease (fencing: `machine.checkpoint` checks the lease token). It answers with the
  operations changed since the previous answer, including those the engine changed meanwhile
  (a wait that fell due, a callback that arrived), so a function polling for a short wait sees it
  end within the same invocation. A retried request (same ClientToken and token) gets the same
  answer again without being applied twice.
- `get_state` pages through the run's operations for a function whose envelope was cut short.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from durable.engine import machine, streams
from durable.errors import StaleToken, UsageError
from durable.invoke.contract import (
    INVALID_TOKEN,
    MAX_UPDATES,
    PAUSED,
    ChildResolver,
    ContractError,
    NotFound,
    Wire,
    decode_token,
    encode_token,
    execution_arn,
    execution_operation,
    function_name,
    operation_to_wire,
    output_from_wire,
    update_from_wire,
)
from durable.model import (
    ChildStart,
    ErrorObject,
    Operation,
    RunInfo,
)
from durable.model.streams import StreamChunk
from durable.store.contract import CheckpointTokenRow
from durable.store.tx import Tx

ENVELOPE_BYTES = 5 * 1024 * 1024
"""Operations the invocation envelope carries before the rest is left to GetDurableExecutionState
(the testing emulator's DEFAULT_MAX_INVOCATION_PAGE_BYTES is the same 5 MB)."""
STATE_PAGE_ITEMS = 100
"""GetDurableExecutionState's default page size; MaxItems may ask for up to 1000."""


def run_of(tx: Tx, run_id: str) -> RunInfo:
    run = tx.get_run(run_id)
    if run is None:
        raise NotFound(f"Durable execution {run_id!r} does not exist")
    return run


def name_of(tx: Tx, run: RunInfo) -> str:
    """The execution name: given at Invoke, else the run id."""
    return tx.execution_name(run.run_id) or run.run_id


def arn_of(tx: Tx, run: RunInfo) -> str:
    return execution_arn(run.workflow, name_of(tx, run), run.run_id)


def state(tx: Tx, run: RunInfo, millis: bool) -> list[Wire]:
    """The run's operations in the order they began, the EXECUTION operation first."""
    return [execution_operation(run, name_of(tx, run), millis),
            *(operation_to_wire(op, millis) for op in tx.operations(run.run_id))]


def _page(ops: Sequence[Wire], start: int, max_bytes: int,
          max_items: int | None) -> tuple[list[Wire], str | None]:
    """Operations from index `start`, at least one, within the byte and item budgets; the
    marker is the index to continue from."""
    out: list[Wire] = []
    size = 0
    for i in range(start, len(ops)):
        item = len(json.dumps(ops[i]))
        if out and (size + item > max_bytes or (max_items is not None and len(out) >= max_items)):
            return out, str(i)
        out.append(ops[i])
        size += item
    return out, None


# -- execution names ----------------------------------------------------------------------------

class ExecutionConflict(UsageError):
    """An execution name is taken by an execution of the same function with another input."""


def start_execution(tx: Tx, function: str, name: str, input: str | None, now: float,
                    timeout: float | None = None) -> tuple[RunInfo, bool]:
    """Start a run of `function` under the execution name `name` (AWS's Invoke with
    X-Amz-Durable-Execution-Name); returns (run, created). Idempotent by name: the same name
    with the same input is the same run, with another input an `ExecutionConflict`.
    `timeout` (seconds) is the execution timeout: the run ends TIMED_OUT when it passes."""
    run_id = uuid.uuid4().hex
    if not tx.insert_execution(run_id, function, name):
        existing = tx.execution_named(function, name)
        run = tx.get_run(existing) if existing is not None else None
        assert run is not None
        if not machine.same_input(run.input, input):
            raise ExecutionConflict(
                f"execution {name!r} of function {function!r} was already started with another "
                "input; use another execution name, or the same input to get that execution")
        return run, False
    run, _ = machine.start_run(tx, run_id, function, input, now)
    if timeout is not None:
        tx.update_run(run_id, timeout_at=now + timeout)
        run = replace(run, timeout_at=now + timeout)
    return run, True


# -- invocation ---------------------------------------------------------------------------------

def open_invocation(tx: Tx, run_id: str, fence: int) -> Wire:
    """Mint the checkpoint token of the invocation holding lease `fence`, and the envelope:
    `{DurableExecutionArn, CheckpointToken, InitialExecutionState{Operations, NextMarker},
    UpdatedOperationIds}` (execution.py, DurableExecutionInvocationInput.from_json_dict), with
    timestamps in epoch milliseconds. UpdatedOperationIds lists what changed since the
    previous invocation last heard from the server."""
    run = run_of(tx, run_id)
    prior = tx.get_checkpoint_token(run_id)
    updated = tx.operations_changed_since(run_id, prior.watermark) if prior else []
    nonce = secrets.token_hex(16)
    tx.put_checkpoint_token(CheckpointTokenRow(run_id, fence, nonce,
                                               tx.history_watermark(run_id)))
    page, marker = _page(state(tx, run, millis=True), 0, ENVELOPE_BYTES, None)
    return {"DurableExecutionArn": arn_of(tx, run), "CheckpointToken": encode_token(run_id, nonce),
            "InitialExecutionState": {"Operations": page, "NextMarker": marker or ""},
            "UpdatedOperationIds": updated}


def _current(tx: Tx, run_id: str, token: str) -> tuple[CheckpointTokenRow, str]:
    """The token row of the invocation `token` belongs to, and the token's nonce."""
    token_run, nonce = decode_token(token)
    if token_run != run_id:
        raise ContractError(f"{INVALID_TOKEN}: it belongs to another durable execution")
    row = tx.get_checkpoint_token(run_id)
    if row is None:
        # A run this server has never seen is not a stale token (which would end the
        # invocation quietly): the function was sent another server's address.
        run_of(tx, run_id)
        raise ContractError(f"{INVALID_TOKEN}: no invocation of this execution holds it")
    return row, nonce


def _stale(reason: str) -> ContractError:
    return ContractError(f"{INVALID_TOKEN}: {reason}; this invocation may not checkpoint any "
                         "more (the execution was invoked again, ended, or was stopped)")


def checkpoint(tx: Tx, run_id: str, token: str, updates: Any, client_token: str | None,
               now: float, chunks: Sequence[StreamChunk] = ()) -> str:
    """CheckpointDurableExecution: apply `updates` (the request's `Updates`, as sent) and
    answer `{CheckpointToken, NewExecutionState{Operations}}` with timestamps in seconds, as
    JSON text: the text stored for a retry is the one sent, encoded once.
    `chunks` (Durable's `DurableStreamChunks`) are appended first, fenced like the updates
    (`streams.write_chunks`): a step's chunks are kept before its outcome, and none of an
    invocation that no longer holds the run.
    An EXECUTION update (the SDK's way to end a run whose result is too large to return) ends
    the run; the answer then has no token, which tells the SDK the execution is complete."""
    row, nonce = _current(tx, run_id, token)
    if (client_token and row.client_token == client_token and row.prior_nonce == nonce
            and row.response is not None):
        return row.response  # a retry of the last accepted request
    if nonce != row.nonce:
        raise _stale("a newer token was issued")
    if not isinstance(updates, list):
        raise ContractError("Updates must be a list of operation updates")
    if len(updates) > MAX_UPDATES:
        raise ContractError(f"a checkpoint takes at most {MAX_UPDATES} updates, got "
                            f"{len(updates)}: send them in several checkpoints")
    ends = [u for u in updates if isinstance(u, Mapping) and u.get("Type") == "EXECUTION"]
    if len(ends) > 1 or (ends and updates[-1] is not ends[-1]):
        raise ContractError("an EXECUTION update must be the last of its checkpoint, and "
                            "there can be only one")
    children: list[tuple[str, float]] = []
    resolve = _child_resolver(tx, run_id, children)
    parsed = [update_from_wire(u, resolve) for u in updates[:len(updates) - len(ends)]]
    try:
        # Its fence check also tells that the run is still RUNNING: the run is read again
        # only to say why a checkpoint is refused.
        streams.write_chunks(tx, run_id, row.fence, chunks)
        result = machine.checkpoint(tx, run_id, row.fence, parsed, now)
    except StaleToken:
        run = run_of(tx, run_id)
        if not run.status.live:
            raise _stale(f"the execution has ended ({run.status.value})") from None
        raise _stale("another invocation holds the execution now") from None
    except machine.InvalidCheckpoint as e:
        raise ContractError(str(e)) from None
    for child_id, timeout in children:
        tx.update_run(child_id, timeout_at=now + timeout)
    touched = {op.id for op in result.operations}
    if ends:
        machine.finish_invocation(tx, run_id, row.fence, _end_output(ends[0]), now, 0.0)
    else:
        # A short wait or retry ends in this answer. The function may still have decided to
        # suspend on it: wake the run, so such an invocation is followed by another at once.
        if machine.advance_due(tx, run_id, now):
            tx.wake(run_id, now)
    changed = [*touched, *(i for i in tx.operations_changed_since(run_id, row.watermark)
                           if i not in touched)]
    ops = [op for op in (tx.get_operation(run_id, i) for i in changed) if op is not None]
    new_nonce = secrets.token_hex(16)
    answer: Wire = {"NewExecutionState": {"Operations": [operation_to_wire(op, False)
                                                   for op in _in_order(ops)]}}
    if not ends:
        answer["CheckpointToken"] = encode_token(run_id, new_nonce)
    if result.paused:  # not AWS's: its SDK ignores the member, Durable's holds (host.py)
        answer[PAUSED] = True
    text = json.dumps(answer)
    tx.put_checkpoint_token(CheckpointTokenRow(
        run_id, row.fence, new_nonce, tx.history_watermark(run_id), client_token, nonce,
        text if client_token else None))
    return text


def _in_order(ops: list[Operation]) -> list[Operation]:
    """Parents before children, else as found: the SDK files each operation under its parent."""
    return sorted(ops, key=lambda op: op.parent_id is not None)


def _end_output(update: Mapping[str, Any]) -> Any:
    """An EXECUTION SUCCEED/FAIL update as the invocation output it stands for."""
    if update.get("Action") == "SUCCEED":
        return output_from_wire({"Status": "SUCCEEDED", "Result": update.get("Payload")})
    if update.get("Action") == "FAIL":
        return output_from_wire({"Status": "FAILED", "Error": update.get("Error") or {}})
    raise ContractError("an EXECUTION update's Action must be SUCCEED or FAIL")


def _child_resolver(tx: Tx, run_id: str, children: list[tuple[str, float]]) -> ChildResolver:
    """A CHAINED_INVOKE target is a registered function: its child run has an id derived from
    the parent's run and operation (a replayed START finds the same child), and the function's
    execution timeout; any other target fails the operation as AWS does."""
    def resolve(op_id: str, target: str, payload: str | None) -> ChildStart | ErrorObject:
        name = function_name(target)
        spec = next((f for f in tx.functions() if f[0] == name), None)
        if spec is None:
            return ErrorObject("ResourceNotFoundException",
                               f"Function not found: {target} (register it with "
                               f"`durable functions add {name} --url URL`)")
        child_id = uuid.uuid5(uuid.NAMESPACE_URL, f"durable:{run_id}/{op_id}").hex
        if spec[3]:
            children.append((child_id, spec[3]))
        return ChildStart(child_id, name, payload)
    return resolve


def get_state(tx: Tx, run_id: str, token: str, marker: str | None,
              max_items: int | None) -> Wire:
    """GetDurableExecutionState: one page of operations, timestamps in seconds."""
    row, nonce = _current(tx, run_id, token)
    if nonce != row.nonce:
        raise _stale("a newer token was issued")
    try:
        start = int(marker) if marker else 0
    except ValueError:
        raise ContractError(f"Marker {marker!r} is not one this server issued") from None
    if max_items is not None and not 0 <= max_items <= 1000:
        raise ContractError(f"MaxItems must be from 0 to 1000, got {max_items}")
    ops = state(tx, run_of(tx, run_id), millis=False)
    if not 0 <= start <= len(ops):
        raise ContractError(f"Marker {marker!r} is past the end of the execution's state")
    page, next_marker = _page(ops, start, ENVELOPE_BYTES, max_items or STATE_PAGE_ITEMS)
    answer: Wire = {"Operations": page}
    if next_marker is not None:
        answer["NextMarker"] = next_marker
    return answer
