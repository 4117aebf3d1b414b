"""What every route of `durable server` shares: the client, the loaded workflows, the token.

Routers reach it with the `ServerDep` dependency (or `request.app.state.durable`), so a router
added to `app.ROUTERS` needs nothing else from the app. Routes act on runs only through the
`client` and take every time from its clock, so a server built on a `durable.testing`
environment's client runs on that environment's virtual clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from durable.client import Client
from durable.sdk.workflow import Workflow


@dataclass(slots=True)
class ServerState:
    client: Client
    workflows: dict[str, Workflow[..., Any]] = field(default_factory=dict)
    token: str | None = None
    wait_limit: float = 30.0
    """Longest a request may wait for a run to end (result long-poll, webhook `?wait=true`)."""
    public_url: str | None = None
    """Where functions reach this server, to checkpoint to (None: learned from requests)."""


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.durable
    return state


ServerDep = Annotated[ServerState, Depends(get_state)]
