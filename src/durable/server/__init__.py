"""`durable server`: the HTTP control API, webhooks and web UI over a Durable store."""

from durable.server.app import ROUTERS, Mount, create_app

__all__ = ["ROUTERS", "Mount", "create_app"]
