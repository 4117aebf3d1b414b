"""JavaScript durable handlers (AWS's TypeScript SDK) hosted by the server with the machine's node.

`durable functions add NAME --node FILE[:EXPORT]` registers one. The server runs the host script
shipped beside this module (node_host.cjs, node builtins only) as a child process on a free
loopback port, and invokes it as it invokes any --url function (push.HttpFunction): the host
speaks the same invocation contract as Durable's Python host. The handler's SDK checkpoints
where the host's environment points its Lambda client (AWS_ENDPOINT_URL_LAMBDA: this server),
with this server's token as its access key when the server requires one.

The host is started at the first invocation, and again after it died or the server's address
changed; it ends with the server, even a killed one: it exits when its stdin (a pipe the server
holds) closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from durable.errors import InvocationError, UsageError
from durable.model import Checkpointer, ErrorObject, Invocation, InvocationOutput, WorkflowHandler

log = logging.getLogger("durable.functions")

HOST_SCRIPT = Path(__file__).with_name("node_host.cjs")
DEFAULT_EXPORT = "handler"
START_TIMEOUT = 30.0
"""Longest a host may take to load the handler module and listen."""
CHECK_TIMEOUT = 60.0
_EXPORT = re.compile(r"[A-Za-z_$][\w$]*")


def parse(target: str) -> tuple[str, str]:
    """FILE[:EXPORT] as (file, export); the export defaults to `handler`."""
    file, sep, export = target.rpartition(":")
    if sep and file and _EXPORT.fullmatch(export):
        return file, export
    return target, DEFAULT_EXPORT


def resolve(target: str) -> str:
    """FILE[:EXPORT] with FILE made absolute (the server may run elsewhere than the CLI)."""
    file, export = parse(target)
    return f"{Path(file).resolve()}:{export}"


def node_binary() -> str:
    found = shutil.which("node")
    if found is None:
        raise UsageError("--node needs node on this machine's PATH (Node.js 22 or later, as "
                         "AWS's @aws/durable-execution-sdk-js asks): install it, or run the "
                         "handler under a host of your own and register it with --url")
    return found


def check(function: str, target: str) -> None:
    """Load the handler as the server's host will, so that a missing node, file or export is
    refused at registration rather than logged by the server later."""
    file, _ = parse(target)
    if not Path(file).is_absolute():
        raise UsageError(f"function {function!r}: --node {target!r} must be an absolute path")
    if not Path(file).is_file():
        raise UsageError(f"function {function!r}: --node {file!r} is not a file")
    try:
        done = subprocess.run([node_binary(), str(HOST_SCRIPT), target, "--check"],
                              capture_output=True, text=True, timeout=CHECK_TIMEOUT,
                              stdin=subprocess.DEVNULL, cwd=Path(file).parent)
    except subprocess.TimeoutExpired:
        raise UsageError(f"function {function!r}: loading {file} with node did not finish "
                         f"within {CHECK_TIMEOUT:g} s") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"node exited {done.returncode}"])[-1]
        raise UsageError(f"function {function!r}: {reason}")


class NodeHost:
    """One running host process for one function; `url` is where it listens."""

    def __init__(self, name: str, target: str, endpoint: str, token: str | None) -> None:
        file, _ = parse(target)
        ready_read, ready_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [node_binary(), str(HOST_SCRIPT), target, "--name", name,
                 "--ready-fd", str(ready_write)],
                stdin=subprocess.PIPE, pass_fds=(ready_write,), cwd=Path(file).parent,
                env=_environment(endpoint, token))
        finally:
            os.close(ready_write)
        self.endpoint = endpoint
        try:
            self.url = _ready(ready_read, self.process)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_read)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()


def _environment(endpoint: str, token: str | None) -> dict[str, str]:
    """The host's environment: the server's, with the handler's Lambda client pointed at this
    server. AWS's SDK signs its calls and wants credentials and a region to do so; the server
    reads only the access key, which must be its token when it requires one."""
    env = dict(os.environ)
    env["AWS_ENDPOINT_URL_LAMBDA"] = endpoint
    if token is not None:
        env["AWS_ACCESS_KEY_ID"] = token
    env.setdefault("AWS_ACCESS_KEY_ID", "durable")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "durable")
    env.setdefault("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1"))
    return env


def _ready(fd: int, process: subprocess.Popen[bytes]) -> str:
    """The URL the host prints on its ready pipe once listening."""
    deadline = time.monotonic() + START_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise OSError(f"the node host did not listen within {START_TIMEOUT:g} s")
        readable, _, _ = select.select([fd], [], [], min(left, 0.5))
        chunk = os.read(fd, 4096) if readable else b""
        if readable and not chunk:  # closed without a line: the host exited
            raise OSError(f"the node host exited ({process.wait()}) before listening; "
                          "its output is in the server's log")
        data += chunk
    url: str = json.loads(data.partition(b"\n")[0])["listening"]
    return url


class NodeFunction:
    """A --node function: its host process, started when first needed, invoked through
    `via(url)` (the server's HTTP invoker for a function at that URL)."""

    def __init__(self, name: str, target: str, endpoint: Callable[[], str | None],
                 token: str | None, via: Callable[[str], WorkflowHandler]) -> None:
        self.name, self.target, self.endpoint, self.token, self.via = (
            name, target, endpoint, token, via)
        self.host: NodeHost | None = None
        self._starting = asyncio.Lock()

    async def handler(self, inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        return await self.via(await self._host_url())(inv, checkpointer)

    async def _host_url(self) -> str:
        endpoint = self.endpoint()
        if endpoint is None:  # the host's SDK would have nowhere to checkpoint to
            raise InvocationError(ErrorObject(
                "Server.AddressUnknown", f"this server does not know the URL function "
                f"{self.name!r} reaches it by, to checkpoint to: run it with `durable server`, "
                "or give create_app public_url= (or set DURABLE_PUBLIC_URL)"))
        async with self._starting:
            host = self.host
            if host is not None and host.alive() and host.endpoint == endpoint:
                return host.url
            if host is not None:
                log.warning("function %s: restarting its node host (%s)", self.name,
                            "it exited" if not host.alive() else "the server's address changed")
                await asyncio.to_thread(host.stop)
            try:
                self.host = await asyncio.to_thread(NodeHost, self.name, self.target,
                                                    endpoint, self.token)
            except (OSError, UsageError) as e:
                self.host = None
                raise InvocationError(ErrorObject(
                    "Function.Unreachable", f"function {self.name!r}: cannot start its node "
                    f"host for {self.target}: {e}")) from None
            log.info("function %s: node host for %s at %s", self.name, self.target,
                     self.host.url)
            return self.host.url

    def close(self) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
