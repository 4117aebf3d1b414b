"""Processes for the serverless tests: `durable server` and function hosts under uvicorn, each in
its own subprocess on 127.0.0.1, as they would run in production."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DURABLE = str(Path(sys.executable).with_name("durable"))
DUMMY_AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up in {timeout}s")


class Proc:
    """A subprocess with its log file; stopped with SIGTERM then SIGKILL."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, url: str) -> None:
        self.log = log
        self.url = url
        self.handle = log.open("wb")
        self.proc = subprocess.Popen(args, env=env, stdout=self.handle,
                                     stderr=subprocess.STDOUT, cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_up(self, path: str = "/") -> Proc:
        try:
            wait_http(self.url + path, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"did not start: {self.log.read_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.handle.close()

    def rss_kib(self) -> int:
        """Resident memory of the process (Linux /proc)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DURABLE_"))}
    base["PYTHONPATH"] = f"{ROOT}{os.pathsep}{base.get('PYTHONPATH', '')}"
    return {**base, **DUMMY_AWS, **extra}


def start_server(tmp: Path, db: str, **extra: str) -> Proc:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc([DURABLE, "server", "--port", str(port), "--db", db],
                env(DURABLE_PUBLIC_URL=url, **extra), tmp / f"server-{port}.log",
                url).wait_up("/2025-12-01/functions/none/durable-executions")


def start_function_host(tmp: Path, app: str, backend: str, **extra: str) -> Proc:
    """uvicorn serving `app`; the functions in it reach the backend by AWS_ENDPOINT_URL_LAMBDA
    only (and dummy credentials, which the SDK's boto3 client wants)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    return Proc([sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level",
                 "warning", "--no-access-log"],
                env(AWS_ENDPOINT_URL_LAMBDA=backend, **extra), tmp / f"fn-{port}.log",
                url).wait_up("/")


def register(db: str, name: str, url: str, *extra: str) -> None:
    subprocess.run([DURABLE, "functions", "add", name, "--url", url, "--db", db, *extra],
                   check=True, capture_output=True, cwd=ROOT)


def lambda_client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config
    return boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 0}, read_timeout=120))


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            p.stop()


def wait_status(client: Any, arn: str, timeout: float = 60.0,
                statuses: tuple[str, ...] = ("SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED")
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got: dict[str, Any] = client.get_durable_execution(DurableExecutionArn=arn)
        if got["Status"] in statuses or time.monotonic() > deadline:
            return got
        time.sleep(0.2)
