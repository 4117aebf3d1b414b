"""Prometheus metrics, scraped from the real endpoints after real runs: `durable worker
--metrics-port` and `durable server`'s /metrics."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

import durable
from durable.engine import machine
from tests.apps import metrics_app as app
from tests.kit import DURABLE, Subprocess, free_port, wait_until

APP = "tests/apps/metrics_app.py"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    text = httpx.get(url, headers=headers, timeout=30).raise_for_status().text
    samples: Samples = {(s.name, frozenset(s.labels.items())): s.value
                        for family in text_string_to_metric_families(text)
                        for s in family.samples}
    for family in text_string_to_metric_families(text):  # families with no sample yet too
        samples.setdefault((f"family:{family.name}", frozenset()), 0.0)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def start_runs(client: durable.Client, n: int) -> durable.Client:
    for i in range(n):
        client.start(app.metered, i, id=f"m{i}")
        client.start(app.queued, i, id=f"q{i}")
    return client


def orphan(client: durable.Client) -> None:
    """A run leased to a worker that died at once: its lease runs out and it is taken over."""
    client.start(app.metered, 99, id="orphan")
    now = client.clock()
    client.store.write_sync(lambda tx: machine.claim(tx, "ghost:1:dead", now, 1, 0.01,
                                                     ["metered"]))


def all_ended(client: durable.Client, n: int) -> bool:
    return all(r.status is not durable.ExecutionStatus.RUNNING for r in client.list(limit=100)
               ) and len(client.list(limit=100)) == n


def test_worker_metrics_count_runs_steps_takeovers_and_admission(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'w.db'}"
    client = durable.Client(db)
    orphan(client)
    start_runs(client, 3)
    port = free_port()
    worker = Subprocess([DURABLE, "worker", APP, "--db", db, "--metrics-port", str(port),
                         "--log-format", "json"], tmp_path / "worker.log")
    try:
        wait_until(lambda: all_ended(client, 7), lambda: worker.output()[-3000:])
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
    finally:
        worker.stop()
        client.close()
    assert value(samples, "durable_runs_started_total", workflow="metered") == 4
    assert value(samples, "durable_runs_ended_total", workflow="metered",
                 status="SUCCEEDED") == 4
    assert value(samples, "durable_runs_ended_total", workflow="queued", status="SUCCEEDED") == 3
    assert value(samples, "durable_step_duration_seconds_count", workflow="metered",
                 step="flaky", outcome="retried") == 4  # each run's first attempt
    assert value(samples, "durable_step_duration_seconds_count", workflow="metered",
                 step="flaky", outcome="succeeded") == 4
    assert value(samples, "durable_lease_takeovers_total", workflow="metered") == 1
    assert value(samples, "durable_queue_admission_wait_seconds_count", queue="metered-q") == 3
    assert value(samples, "durable_queue_depth", queue="metered-q") == 0
    assert value(samples, "durable_checkpoint_seconds_count", workflow="queued") >= 3
    assert ("durable_timers_due", frozenset()) in samples

    dashboard = json.loads((Path(__file__).parents[1] / "docs" / "grafana-dashboard.json")
                           .read_text())
    used = {re.sub(r"_(bucket|count|sum|total)$", "", name)
            for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"durable_[a-z_]+", target["expr"])}
    served = {name.removeprefix("family:") for name, _ in samples if name.startswith("family:")}
    assert used <= served, used - served

    records = [json.loads(line) for line in worker.output().splitlines()
               if line.startswith("{")]
    retried = [r for r in records if "retrying" in r["message"]]
    assert len(retried) == 4 and retried[0]["workflow"] == "metered"
    assert retried[0]["step"] == "flaky" and retried[0]["attempt"] == 1
    assert retried[0]["run_id"] in {"m0", "m1", "m2", "orphan"} and retried[0]["operation"]
    assert any(r.get("lost_worker") == "ghost:1:dead" and r["run_id"] == "orphan"
               for r in records)
    assert sum(1 for r in records if r.get("queue") == "metered-q") == 3


def test_server_metrics_show_the_store_and_its_worker(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    token = "metrics-token-0123456789"
    port = free_port()
    client = start_runs(durable.Client(db), 2)
    server = Subprocess([DURABLE, "server", "--port", str(port), "--worker", APP, "--db", db],
                        tmp_path / "server.log", env={"PATH": "/usr/bin:/bin",
                                                      "DURABLE_TOKEN": token})
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        server.wait_answering(url)
        assert httpx.get(url, timeout=30).status_code == 401
        wait_until(lambda: all_ended(client, 4), lambda: server.output()[-3000:])
        samples = scrape(url, {"Authorization": f"Bearer {token}"})
    finally:
        server.stop()
        client.close()
    assert value(samples, "durable_runs_ended_total", workflow="metered", status="SUCCEEDED") == 2
    assert value(samples, "durable_runs_started_total", workflow="queued") == 2
    assert value(samples, "durable_step_duration_seconds_count", workflow="queued", step="echo",
                 outcome="succeeded") == 2
    assert value(samples, "durable_queue_running", queue="metered-q") == 0


def test_durable_run_prints_only_its_result_on_stdout(tmp_path: Path) -> None:
    """Spans from the OTel console exporter and JSON log records go to stderr."""
    done = subprocess.run(
        [DURABLE, "run", f"{APP}:metered", "--input", "7", "--json", "--log-format", "json",
         "--db", f"sqlite:///{tmp_path / 'r.db'}"], capture_output=True, text=True,
        env={**os.environ, "OTEL_TRACES_EXPORTER": "console"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == 7
    assert '"name": "durable.step flaky"' in done.stderr  # the spans went to stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith('{"ts"')]
    assert any(r["message"].endswith("metered 7") and r["workflow"] == "metered"
               for r in records)
