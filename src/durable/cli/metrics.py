"""`durable worker --metrics-port`: Prometheus metrics over HTTP from a thread of the worker."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import REGISTRY, start_http_server

from durable.client import Client
from durable.engine.metrics import StoreCollector
from durable.errors import UsageError
from durable.model.queues import ServedQueue


def serve_metrics(client: Client, queues: Sequence[ServedQueue], host: str, port: int) -> None:
    """This process's metrics and the store's (read through `client` at each scrape), on
    http://host:port/metrics until the process exits."""
    REGISTRY.register(StoreCollector(lambda: client.metrics(queues)))
    try:
        start_http_server(port, addr=host)
    except OSError as e:
        raise UsageError(f"cannot serve metrics on {host} port {port}: {e.strerror or e}; "
                         "choose another --metrics-port") from None
