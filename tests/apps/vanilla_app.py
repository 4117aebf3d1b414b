"""A `durable=False` workflow over examples/automation/bank_api.py, for tests/test_crash_vanilla.py:
the whole transfer is one step, so a worker killed inside it runs it again from the top."""

from __future__ import annotations

import sys
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
