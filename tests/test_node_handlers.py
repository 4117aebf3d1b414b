"""Handlers written with AWS's TypeScript SDK run unmodified on `durable server`.

`durable functions add NAME --node FILE[:EXPORT]` has the server host them with the machine's
node (src/durable/invoke/node_host.cjs). The SDK, @aws/durable-execution-sdk-js, is installed
with npm into a temporary directory (kept between runs, by version); the handlers
(tests/apps/node/handlers.js) are copied beside it and registered through the CLI. Some are
written for AWS's conformance requirements and checked by AWS's own validator and history
matcher, as tests/test_aws_conformance.py checks the Python ones; the others are invoked
through boto3's `lambda` client and their histories read through AWS's API.

Without node the module skips, saying so; under CI=true it fails instead.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable.invoke.node import NodeHost
from durable.invoke.push import FunctionSpec, check, register
from durable.store import open_store
from tests.apps.serverless_kit import (
    Service,
    history,
    lambda_client,
    start_server,
    wait_status,
)
from tests.kit import DURABLE, ROOT, stopping, wait_until

SDK = "@aws/durable-execution-sdk-js"
SDK_VERSION = "2.4.0"
HANDLERS = ROOT / "tests" / "apps" / "node" / "handlers.js"
REQUIREMENTS = ("1.1", "1.3", "1.14", "2.1", "3.1", "3.6", "3.10", "3.12", "4.1", "4.6",
                "6.1", "6.5", "8.1", "9.1", "9.15")
"""AWS's conformance requirements the JavaScript handlers are written for: steps with retries,
waits, child contexts, callbacks, wait_for_condition, parallel and map. (AWS's invoke suite is
held back for the Python handlers too, tests/test_aws_conformance.py says why; invoke is
checked below by its history.) Not 1.11: its 1 s retry falls due while AWS's TypeScript SDK may
still wait for a checkpoint's answer on a loaded machine, and the SDK then retries within the same
invocation, so the history lacks the InvocationCompleted the requirement expects between the
attempts (the README's TypeScript section says so); 1.14's retries, 2 s and more apart, cover
retries here."""
SUITES = {"1": "step", "2": "wait", "3": "child", "4": "callback", "6": "wait_for_condition",
          "8": "parallel", "9": "map"}
SCENARIOS = ("doubler", "invoker", "gated")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the TypeScript handlers", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


NODE = shutil.which("node")
if NODE is None:
    _unavailable("node is not on PATH: the TypeScript handler tests need Node.js")


def sdk_modules() -> Path:
    """node_modules with AWS's SDK, installed once per version into the temporary directory
    (into a scratch directory first, then moved, so an interrupted install is not reused)."""
    cache = Path(tempfile.gettempdir()) / f"durable-node-sdk-{SDK_VERSION}"
    modules = cache / "node_modules"
    if (modules / SDK / "package.json").is_file():
        return modules
    npm = shutil.which("npm")
    if npm is None:
        _unavailable("npm is not on PATH: it installs AWS's TypeScript SDK for these tests")
    scratch = Path(tempfile.mkdtemp(prefix=f"durable-node-sdk-{SDK_VERSION}-"))
    (scratch / "package.json").write_text('{"name": "durable-node-tests", "private": true}')
    done = subprocess.run([str(npm), "install", "--no-audit", "--no-fund", "--loglevel=error",
                           f"{SDK}@{SDK_VERSION}"], cwd=scratch, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"npm install {SDK}@{SDK_VERSION}: {done.stderr}"
    try:
        scratch.rename(cache)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(scratch, ignore_errors=True)
    return modules


@dataclass
class Stack:
    """A `durable server` with the handlers registered, and a boto3 client for it."""

    tmp: Path
    db: str
    server: Service
    handlers: Path
    client: Any


def add(db: str, name: str, target: str, cwd: Path,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DURABLE, "functions", "add", name, "--node", target, "--db", db],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("node")
    handlers = tmp / "app"
    handlers.mkdir()
    shutil.copy(HANDLERS, handlers / "handlers.js")
    (handlers / "node_modules").symlink_to(sdk_modules())
    db = f"sqlite:///{tmp}/durable.db"
    names = {f"req-{r.replace('.', '-')}": f"req_{r.replace('.', '_')}" for r in REQUIREMENTS}
    names.update({name: name for name in SCENARIOS})
    store = open_store(db)
    try:  # checked as `durable functions add` checks them (the CLI's own test is below)
        for name, export in names.items():
            spec = FunctionSpec(name, node=f"{handlers / 'handlers.js'}:{export}")
            check(spec, store, time.time)
            register(store, spec)
    finally:
        store.close()
    server = start_server(tmp, db)
    with stopping(server):
        yield Stack(tmp, db, server, handlers, lambda_client(server.url))


def test_aws_conformance_requirements_pass_with_typescript_handlers(stack: Stack,
                                                                    tmp_path: Path) -> None:
    from tests.test_aws_conformance import REQUIREMENTS as YAML
    from tests.test_aws_conformance import ServerInvoker, run

    paths = [YAML / SUITES[rid.partition(".")[0]] / f"{rid.replace('.', '-')}.yaml"
             for rid in REQUIREMENTS]
    invoker = ServerInvoker(stack.client)
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        results = list(pool.map(lambda p: run(invoker, p, tmp_path), paths))
    failed = {r.description_id: r.errors for r in results if not r.passed}
    assert not failed, "\n".join(f"{rid}: {errors}" for rid, errors in sorted(failed.items()))
    # 3.12's handler exited its host for real; the server started another for the retry
    assert "function req-3-12: restarting its node host (it exited)" in stack.server.output()


def payload(details: dict[str, Any], key: str) -> Any:
    return json.loads(details[key]["Payload"])


def test_a_typescript_handler_invokes_another_and_both_histories_show_it(stack: Stack) -> None:
    answer = stack.client.invoke(FunctionName="invoker",
                                 Payload=json.dumps({"n": 20, "target": "doubler"}))
    assert "FunctionError" not in answer, answer
    assert json.loads(answer["Payload"].read()) == 41
    arn = answer["DurableExecutionArn"]
    events = history(stack.client, arn)
    kinds = [e["EventType"] for e in events]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded"
    started = next(e for e in events if e["EventType"] == "ChainedInvokeStarted")
    details = started["ChainedInvokeStartedDetails"]
    assert (started["Name"], details["FunctionName"]) == ("call-doubler", "doubler")
    assert payload(details, "Input") == {"n": 20}
    done = next(e for e in events if e["EventType"] == "ChainedInvokeSucceeded")
    assert payload(done["ChainedInvokeSucceededDetails"], "Result") == 40
    step = next(e for e in events if e["EventType"] == "StepSucceeded")
    assert (step["Name"], payload(step["StepSucceededDetails"], "Result")) == ("plus-one", 41)
    child = history(stack.client, details["DurableExecutionArn"])
    doubled = next(e for e in child if e["EventType"] == "StepSucceeded")
    assert (doubled["Name"], payload(doubled["StepSucceededDetails"], "Result")) == ("double", 40)


def test_a_typescript_handler_checkpoints_to_a_server_that_requires_a_token(
        stack: Stack, tmp_path: Path) -> None:
    token = "node-host-token-0123456789"
    db = f"sqlite:///{tmp_path}/durable.db"
    store = open_store(db)
    try:
        register(store, FunctionSpec("req-1-1", node=f"{stack.handlers / 'handlers.js'}:req_1_1"))
    finally:
        store.close()
    server = start_server(tmp_path, db, DURABLE_TOKEN=token)
    with stopping(server):
        import boto3
        from botocore.config import Config
        client = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id=token, aws_secret_access_key="x",
                              config=Config(retries={"max_attempts": 0}))
        answer = client.invoke(FunctionName="req-1-1", Payload=json.dumps("token"))
        assert "FunctionError" not in answer, answer
        assert json.loads(answer["Payload"].read()) == "Hello, token!"


def effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


def node_host_of(server: Service, function: str) -> str:
    """The URL of the node host `server` started for `function`, from its log."""
    def logged() -> str | None:
        for line in server.output().splitlines():
            if f"function {function}: node host for" in line:
                return line.rsplit(" at ", 1)[1].split()[0].strip("\"',}")
        return None
    found: str = wait_until(logged, f"the server to log the node host of {function}")
    return found


def refuses(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.TransportError:
        return True
    return False


@pytest.mark.crash
def test_a_server_killed_during_a_typescript_handler_resumes_it_with_each_step_done_once(
        stack: Stack, tmp_path: Path) -> None:
    fx, gate = tmp_path / "effects", tmp_path / "gate"
    answer = stack.client.invoke(FunctionName="gated", InvocationType="Event",
                                 Payload=json.dumps({"effects": str(fx), "gate": str(gate)}))
    arn = answer["DurableExecutionArn"]
    # Killed while the handler runs step `slow`, after step `one` was checkpointed.
    wait_until(lambda: effects(fx)["slow-started"] == 1, "step slow to start", interval=0.05)
    host = node_host_of(stack.server, "gated")
    stack.server.kill()
    wait_until(lambda: refuses(host), "the node host to end with its server", interval=0.05)
    gate.touch()
    back = start_server(stack.tmp, stack.db)
    with stopping(back):
        client = lambda_client(back.url)
        done = wait_status(client, arn)
        assert done["Status"] == "SUCCEEDED", done
        assert json.loads(done["Result"]) == "done"
        # `slow` was interrupted, so it ran again (at least once); what finished ran once.
        assert effects(fx) == {"one": 1, "slow-started": 2, "slow": 1, "three": 1}
        kinds = Counter((e["EventType"], e.get("Name")) for e in history(client, arn))
        assert kinds[("StepSucceeded", "one")] == kinds[("StepSucceeded", "slow")] == 1
        assert kinds[("StepSucceeded", "three")] == 1
        assert kinds[("WaitSucceeded", None)] == 1


# -- registration errors and the host's own contract (no SDK needed) ---------------------------

PLAIN = """
exports.handler = async (event) => ({ Status: "SUCCEEDED", Result: JSON.stringify(event) });
exports.broken = async () => { throw new TypeError("it broke"); };
exports.notAFunction = 3;
"""


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain.js"
    path.write_text(PLAIN)
    return path


@pytest.mark.parametrize(("target", "said"), [
    ("missing.js", "is not a file"),
    ("plain.js:nope", 'has no function export "nope" (its function exports: handler, broken)'),
    ("plain.js:notAFunction", 'has no function export "notAFunction"'),
])
def test_adding_a_node_handler_that_cannot_load_exits_2_saying_why(
        plain: Path, tmp_path: Path, target: str, said: str) -> None:
    done = add(f"sqlite:///{tmp_path}/d.db", "fn", target, tmp_path)
    assert done.returncode == 2, done
    assert said in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_adding_a_node_handler_without_node_exits_2_saying_what_to_install(
        plain: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = add(f"sqlite:///{tmp_path}/d.db", "fn", "plain.js", tmp_path, env)
    assert done.returncode == 2, done
    assert "--node needs node on this machine's PATH" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_node_handler_registers_with_its_absolute_path_and_default_export(
        plain: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/d.db"
    assert add(db, "fn", "plain.js", tmp_path).returncode == 0
    listed = subprocess.run([DURABLE, "functions", "ls", "--json", "--db", db],
                            capture_output=True, text=True, check=True)
    (fn,) = json.loads(listed.stdout)
    assert (fn["node"], fn["handler"], fn["url"]) == (f"{plain}:handler", None, None)


def test_the_node_host_answers_as_the_python_host_does(plain: Path) -> None:
    host = NodeHost("fn", f"{plain}:handler", "http://127.0.0.1:1", None)
    try:
        assert httpx.get(host.url).json() == {"functions": ["fn"]}
        for path in ("/", "/fn", "/2015-03-31/functions/fn/invocations"):
            answer = httpx.post(host.url + path, json={"x": 1})
            assert answer.status_code == 200
            assert answer.headers["x-amz-executed-version"] == "$LATEST"
            assert answer.json() == {"Status": "SUCCEEDED", "Result": '{"x":1}'}
        other = httpx.post(f"{host.url}/other", json={})
        assert other.status_code == 404
        assert other.headers["x-amzn-errortype"] == "ResourceNotFoundException"
        bad = httpx.post(host.url, content=b"{nope")
        assert bad.status_code == 400
        assert bad.json()["errorType"] == "InvalidRequestContentException"
    finally:
        host.stop()
    broken = NodeHost("fn", f"{plain}:broken", "http://127.0.0.1:1", None)
    try:
        answer = httpx.post(broken.url, json={})
        assert answer.status_code == 200 and answer.headers["x-amz-function-error"] == "Unhandled"
        assert answer.json()["errorType"] == "TypeError"
        assert answer.json()["errorMessage"] == "it broke"
    finally:
        broken.stop()
    assert not broken.alive() and refuses(broken.url)


def test_a_node_host_ends_when_the_process_that_started_it_dies(plain: Path,
                                                                tmp_path: Path) -> None:
    code = ("import sys, time; from durable.invoke.node import NodeHost; "
            f"h = NodeHost('fn', {str(plain) + ':handler'!r}, 'http://127.0.0.1:1', None); "
            "print(h.url, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        assert parent.stdout is not None
        url = parent.stdout.readline().strip()
        assert httpx.get(url).status_code == 200
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: refuses(url), "the orphaned node host to exit", interval=0.05)
    finally:
        parent.kill()
        parent.wait()
