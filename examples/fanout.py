"""Fan-out: process a batch of 1,000 records in parallel, a bounded number at a time, and
tolerate a few bad ones instead of failing the whole batch.

`ctx.map` runs one checkpointed step per item. Each item lives in its own scope, so after a crash
only the items that had not finished run again, whatever order they finished in; the
`max_concurrency` bound holds across restarts; the completion policy decides how many failures
are acceptable and the decision is recorded, so a replay decides the same.

Run it:

    python examples/fanout.py
    durable run examples/fanout.py:enrich_batch --input '{"count": 1000, "max_concurrency": 16}'

Input (every field optional): `count` (records, default 1000), `max_concurrency` (default 16),
`tolerated_failures` (default 20), `broken_every` (every n-th record is malformed, default 97).
"""

import hashlib
from dataclasses import dataclass

import durable
from durable import Completion, Context, RetryPolicy, workflow


@dataclass(frozen=True)
class Batch:
    count: int = 1000
    max_concurrency: int = 16
    tolerated_failures: int = 20
    broken_every: int = 97


@dataclass(frozen=True)
class Record:
    id: int
    malformed: bool


class MalformedRecord(ValueError):
    """Retrying will not help: the record itself is bad."""


async def enrich(record: Record) -> str:
    """Stands in for a per-record API call: returns a fingerprint of the record."""
    if record.malformed:
        raise MalformedRecord(f"record {record.id} is malformed")
    return hashlib.sha256(str(record.id).encode()).hexdigest()[:12]


@workflow
async def enrich_batch(ctx: Context, batch: Batch) -> dict[str, object]:
    every = batch.broken_every
    records = [Record(i, every > 0 and i % every == every - 1) for i in range(batch.count)]
    result = await ctx.map(
        enrich, records, max_concurrency=batch.max_concurrency,
        completion=Completion.tolerate(failures=batch.tolerated_failures),
        retry=RetryPolicy(max_attempts=3, initial_interval=0.2,
                          non_retryable=(MalformedRecord,)))
    failed = [item.index for item in result.items if item.status == "FAILED"]
    ctx.logger.info("enriched %d records, %d malformed", result.succeeded, len(failed))
    return {"enriched": result.succeeded, "failed": failed,
            "sample": result.results[:3], "reason": result.completion_reason}


if __name__ == "__main__":
    print(durable.run(enrich_batch, Batch()))
