"""`GET /metrics`: Prometheus's text format, for a scraper (behind the token, like the API).

This process's own counters and histograms (engine/metrics.py: the worker of `--worker`, the
functions it invokes), then what the store holds, read through the client at each scrape.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from durable.engine import metrics
from durable.engine.worker import served_queues
from durable.server.deps import ServerDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text exposition format"}})
async def scrape(state: ServerDep) -> Response:
    """Runs started and ended, step and checkpoint timings, failed invocations, lease
    takeovers, queue depth and admission waits, timers due."""
    snapshot = await state.client.metrics_async(served_queues(state.workflows.values()))
    stored = CollectorRegistry()
    stored.register(metrics.StoreCollector(lambda: snapshot))
    return Response(generate_latest(REGISTRY) + generate_latest(stored),
                    media_type=CONTENT_TYPE_LATEST)
