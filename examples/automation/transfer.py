"""The money transfer from AutoKitteh's "vanilla Python" example, made durable by one decorator.

`transfer` is plain code: no context object, no decorators on the calls. With `auto=True` every
call that leaves the project (here, into `bank_api`, standing in for a bank's SDK) is a step:
its result is recorded, so after a crash the function runs again from the top and each finished
call answers from the record instead of running again. The transaction id is such a result, so a
withdrawal interrupted mid-flight is sent again with the same id, and the bank applies it once.

Run it (the bank's books are at .durable/automation-bank.db):

    durable run examples/automation/transfer.py:transfer \
        --input '["alice", "bob", 2500]'
"""

from bank_api import deposit_to_account_route, get_transaction_id, withdraw_from_account_route

import durable


@durable.workflow(auto=True, external=["bank_api"])
def transfer(withdraw_account: str, deposit_account: str, amount: int) -> str:
    transaction_id = get_transaction_id()
    withdraw_from_account_route(transaction_id, withdraw_account, amount)
    deposit_to_account_route(transaction_id, deposit_account, amount)
    return transaction_id
