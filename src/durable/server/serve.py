"""Running the server app with uvicorn, as `durable server` does."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn

from durable.errors import DurableError, UsageError
from durable.sdk.workflow import Workflow
from durable.server.app import DEFAULT_MAX_BODY, create_app
from durable.server.auth import TOKEN, check_secret
from durable.store import open_store

KEEP_ALIVE_SECONDS = 75
"""How long an idle client connection stays open: longer than clients leave theirs idle
between requests (AWS's load balancers keep 60 s for the same reason)."""

if TYPE_CHECKING:  # the CLI's console: rich's, or its plain stand-in when rich is not installed
    from rich.console import Console


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_url(host: str, port: int, given: str | None) -> str:
    """Where functions reach this server: `given` (a proxy, another host's view), else the
    address it binds; a wildcard bind is reached on loopback from this host."""
    if given:
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
            raise UsageError(f"--public-url {given!r} is not an http(s) URL such as "
                             "https://durable.example.com or http://10.0.0.5:8777")
        return given.rstrip("/")
    if port == 0:
        raise UsageError("--port 0 picks a port the functions cannot be told in advance: give "
                         "a port, or --public-url with the address they reach the server by")
    if host in ("0.0.0.0", "::", "[::]", ""):
        host = "127.0.0.1"
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve(host: str, port: int, workflows: list[Workflow[..., Any]], db: str | None,
          token: str | None, insecure: bool, console: Console, *,
          allowed_hosts: Sequence[str] = (), max_body: int = DEFAULT_MAX_BODY,
          public: str | None = None, retention: float | None = None) -> None:
    """Serve until SIGINT/SIGTERM. Without a token, binding beyond loopback would hand every
    run and action to anyone on the network: refused unless `insecure` says it is meant. A weak
    token is refused before anything opens. The name bound to is one the server answers to,
    with `allowed_hosts` (`create_app`). Functions checkpoint to `public` (`public_url`). Runs
    ended over `retention` seconds ago are deleted in the background."""
    url = public_url(host, port, public)
    if token is not None:
        check_secret(token, TOKEN)
    if token is None and not is_loopback(host) and not insecure:
        raise UsageError(f"refusing to serve on {host} without a token: anyone who can reach "
                         "it could read and control every run. Set DURABLE_TOKEN (or --token), "
                         "bind to 127.0.0.1, or pass --insecure if the network is trusted")
    listening = _listen(host, port)
    try:
        store = open_store(db)
    except BaseException:
        listening.close()
        raise
    try:
        app = create_app(store, token=token, workflows=workflows,
                         allowed_hosts=[host, *allowed_hosts], max_body=max_body,
                         public_url=url, retention=retention)
        shown = f"[{host}]" if ":" in host else host
        console.print(f"durable server on http://{shown}:{listening.getsockname()[1]} "
                      f"(functions reach it at {url}; database {store.url}; "
                      f"{'token required' if token else 'no token'}; "
                      f"serving {', '.join(wf.name for wf in workflows) or 'no workflows'}); "
                      "Ctrl-C stops")
        # log_config=None: uvicorn's records go through the logging the command set up.
        # Keep-alive past uvicorn's 5 s: clients (boto3's pool, function hosts checkpointing)
        # reuse a connection after a few seconds idle, and one the server closes just as the
        # client sends fails that request ("connection closed before a valid response").
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None,
                                               access_log=False,
                                               timeout_keep_alive=KEEP_ALIVE_SECONDS))
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises Ctrl-C again once it
            server.run(sockets=[listening])  # has shut down; it was the way to stop: exit 0
        if not server.started:
            raise DurableError("the server did not start; the log above says why")
    finally:
        listening.close()
        store.close()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here rather than by uvicorn, which logs why it cannot bind
    and exits 3: a port in use (another server left running, most often) or an address this
    machine does not have is bad input, told in one line that says what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY only on connections of a socket
    # that says it is TCP. Without it an answer's body waits behind the ACK of its headers,
    # which the client delays: 40 ms a request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is already in use (another durable "
                             "server?): stop what listens there, or choose another port with "
                             "--port") from None
        raise UsageError(f"cannot listen on {host} port {port}: {e.strerror or e}; choose "
                         "another --host or --port") from None
    return sock
