"""`durable server` keeps an idle client connection open past uvicorn's default 5 s: a client
reusing its pooled connection then (boto3 sending a callback's success a few seconds after
its heartbeat) must not have the server close it under the request."""

from __future__ import annotations

import http.client
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.apps.serverless_kit import start_server

PATH = "/2025-12-01/functions/none/durable-executions"


def test_an_idle_connection_is_still_served_after_uvicorns_default_keep_alive(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, f"sqlite:///{tmp_path}/durable.db")
    try:
        url = urlsplit(server.url)
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        conn.request("GET", PATH)
        first = conn.getresponse()
        first.read()
        sock = conn.sock
        time.sleep(6)  # the idleness itself is what is tested: past uvicorn's default 5 s
        conn.request("GET", PATH)
        second = conn.getresponse()
        second.read()
        assert conn.sock is sock, "the connection was reopened"
        assert second.status == first.status
        conn.close()
    finally:
        server.stop()
