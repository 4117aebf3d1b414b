"""`temporalio.service`'s names that Temporal code imports: `TLSConfig`, and `RPCError` with its
status codes, which the client raises where Temporal's frontend would answer an RPC with an
error (an update sent to a workflow that does not exist or has ended).

Durable's client reads its store directly, with the database's own TLS settings in its URL, so
`Client.connect(tls=...)` accepts a `TLSConfig` and has nothing to apply it to (see
`durable.temporal.client.Client.connect`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["RPCError", "RPCStatusCode", "TLSConfig"]


@dataclass(frozen=True)
class TLSConfig:
    server_root_ca_cert: bytes | None = None
    domain: str | None = None
    client_cert: bytes | None = None
    client_private_key: bytes | None = None
    verification_server_name: str | None = None


class RPCStatusCode(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RPCError(Exception):
    """What Temporal's client raises for a refused RPC; `status` says why."""

    def __init__(self, message: str, status: RPCStatusCode, raw_grpc_status: bytes = b"") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.raw_grpc_status = raw_grpc_status
