"""`temporalio.service.TLSConfig` under its name, so connection code that builds one (or gets one
from `envconfig`) keeps working. Durable's client reads its store directly, with the database's
own TLS settings in its URL, so `Client.connect(tls=...)` accepts it and has nothing to apply it
to (see `durable.temporal.client.Client.connect`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TLSConfig"]


@dataclass(frozen=True)
class TLSConfig:
    server_root_ca_cert: bytes | None = None
    domain: str | None = None
    client_cert: bytes | None = None
    client_private_key: bytes | None = None
    verification_server_name: str | None = None
