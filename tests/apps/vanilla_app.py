"""Workflows over examples/automation/bank_api.py for tests/test_crash_vanilla.py: a `durable=False`
transfer (one step, so a worker killed inside it runs it again from the top), and an auto one
with a durable sleep between its calls."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import durable

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "automation"))
import bank_api  # found through the path above, as the example finds it


@durable.workflow(durable=False)
def quick_transfer(transaction_id: str, withdraw_account: str, deposit_account: str,
                   amount: int) -> dict[str, int]:
    bank_api.withdraw_from_account_route(transaction_id, withdraw_account, amount)
    bank_api.deposit_to_account_route(transaction_id, deposit_account, amount)
    return bank_api.balances()


@durable.workflow(auto=True, external=["bank_api"])
def transfer_later(withdraw_account: str, deposit_account: str, amount: int,
                   delay: float) -> str:
    transaction_id = bank_api.get_transaction_id()
    bank_api.withdraw_from_account_route(transaction_id, withdraw_account, amount)
    time.sleep(delay)  # durable: the worker may die meanwhile
    bank_api.deposit_to_account_route(transaction_id, deposit_account, amount)
    return transaction_id
