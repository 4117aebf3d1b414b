"""Nightly report: a scheduled workflow that turns yesterday's sales into a report file.

Every night at 02:00 UTC each worker serving this file fires the schedule's tick; the engine makes
that one run however many workers there are, with run id `nightly_report@<tick ISO>`. The run
receives its tick, so it reports on the day before the tick, not on whatever day it happens to
execute: a run retried after a crash, or caught up after an outage, still reports on its own day.

Its steps are checkpointed like any others: the sales file is read once, the summary computed
once, and the report written by an idempotent step (to a temporary file, then renamed), so a
worker killed in the middle leaves either no report or the whole one, and the next worker
finishes the job. `missed="run_once"`: if no worker ran at 02:00 (a long outage), the first one to
start afterwards produces the latest missed report rather than none.

Run it:

    durable worker examples/nightly_report.py                   # waits for 02:00 UTC
    NIGHTLY_CRON='* * * * *' durable worker examples/nightly_report.py   # a report every minute
    durable schedules examples/nightly_report.py                # next fire time, last tick
    python examples/nightly_report.py                           # demo data, one report now

Files (environment variables, defaults relative to the working directory): `NIGHTLY_DATA`, the
sales, a JSON list of `{"day": "YYYY-MM-DD", "region": ..., "amount": ...}`
(`.durable/sales.json`; missing means no sales); `NIGHTLY_REPORTS`, the directory the reports go
to, one `<day>.json` each (`.durable/reports`).
"""

import json
import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import durable
from durable import Context, step, workflow

CRON = os.environ.get("NIGHTLY_CRON", "0 2 * * *")


def data_path() -> Path:
    return Path(os.environ.get("NIGHTLY_DATA", ".durable/sales.json"))


def reports_dir() -> Path:
    return Path(os.environ.get("NIGHTLY_REPORTS", ".durable/reports"))


@dataclass(frozen=True)
class Sale:
    day: str
    region: str
    amount: float


@dataclass(frozen=True)
class Summary:
    day: str
    orders: int
    total: float
    by_region: dict[str, float]


@step
def load_sales(day: str) -> list[Sale]:
    """The day's sales from the data file. A step, so a replay reuses what was read then
    instead of reading a file that may have changed since."""
    path = data_path()
    if not path.exists():
        return []
    return [Sale(**row) for row in json.loads(path.read_text()) if row["day"] == day]


@step
def summarize(day: str, sales: list[Sale]) -> Summary:
    by_region: dict[str, float] = defaultdict(float)
    for sale in sales:
        by_region[sale.region] += sale.amount
    return Summary(day, len(sales), round(sum(s.amount for s in sales), 2),
                   {region: round(total, 2) for region, total in sorted(by_region.items())})


@step
def write_report(summary: Summary) -> str:
    """Write `<day>.json` whole or not at all: a temporary file renamed over the target, so a
    crash mid-write and the step's re-run leave one complete report."""
    directory = reports_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{summary.day}.json"
    partial = target.with_suffix(".json.partial")
    partial.write_text(json.dumps(asdict(summary), indent=2, sort_keys=True))
    partial.replace(target)
    return str(target)


@workflow(schedule=CRON, timezone="UTC", missed="run_once")
async def nightly_report(ctx: Context, tick: datetime) -> str:
    """Report on the day before `tick`; return the report's path."""
    day = (tick.astimezone(UTC) - timedelta(days=1)).date().isoformat()
    ctx.logger.info("building the report for %s", day)
    sales = await load_sales(day)
    summary = await summarize(day, sales)
    return await write_report(summary)


def _demo_sales(day: date) -> list[dict[str, object]]:
    regions = ["north", "south", "east"]
    return [{"day": day.isoformat(), "region": regions[i % 3], "amount": 10.0 * (i + 1)}
            for i in range(7)]


if __name__ == "__main__":
    now = datetime.now(UTC)
    if not data_path().exists():
        data_path().parent.mkdir(parents=True, exist_ok=True)
        data_path().write_text(json.dumps(_demo_sales((now - timedelta(days=1)).date())))
    print(durable.run(nightly_report, now))  # a run by hand, outside the schedule
