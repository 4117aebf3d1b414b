"""Invoice: a run fixed in place. Its supplier's rate API is down, so `fetch_rate` fails and is
retried every 30 seconds; rather than wait, or start the invoice again, an operator pauses the
run, records the rate they got by phone as the step's result, and resumes it. The same run goes
on: its replay returns the edited rate, and `bill` runs with it. The history says who edited
what, and when.

Run it (the README's "Pause, edit and resume" has the API and web UI forms too):

    durable server --worker examples/invoice.py &
    durable start examples/invoice.py:invoice --input '"acme"' --id inv-1
    durable pause inv-1
    durable edit inv-1 fetch_rate --result 0.9
    durable resume inv-1
    durable result inv-1 --wait
"""

from durable import Context, RetryPolicy, step, workflow

AMOUNT = 100.0


@step(retry=RetryPolicy(max_attempts=100, initial_interval=30.0, backoff=1.0, jitter=0))
def fetch_rate(customer: str) -> float:
    raise ConnectionError(f"the supplier's rate API is down (rate for {customer!r})")


@step
def bill(customer: str, rate: float) -> dict[str, object]:
    return {"customer": customer, "rate": rate, "total": round(AMOUNT * rate, 2)}


@workflow
async def invoice(ctx: Context, customer: str) -> dict[str, object]:
    rate = await fetch_rate(customer)
    receipt: dict[str, object] = await bill(customer, rate)
    return receipt
