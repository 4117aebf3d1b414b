"""AWS Lambda as a function target (`durable functions add NAME --lambda ...`): `durable server`
invokes through Lambda's Invoke API, signed by boto3, here against a local stand-in
(tests/apps/lambda_standin.py) that checks the SigV4 signature with botocore's own signer, as
Lambda does. The server reaches the stand-in by AWS_ENDPOINT_URL_LAMBDA only; the functions in
it checkpoint back to the server by theirs. What the function answers decides the run; what
Lambda refuses (a bad signature, a throttle, a function that crashed) is retried, never FAILED.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import durable
from durable.model.streams import StreamKind
from tests.apps.serverless_kit import DURABLE, Service, env, start_server
from tests.kit import ROOT, free_port, stopping, wait_until
from tests.test_serverless_outage import effects, ended, run_doc

STANDIN = "tests.apps.lambda_standin:app"


@dataclass
class Lambda:
    """A `durable server` invoking functions in a Lambda stand-in, and what they left."""

    server: Service
    db: str
    log: Path  # the stand-in's invocations: `<function> <qualifier> <outcome>`
    effects: Path

    def add(self, name: str, *options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DURABLE, "functions", "add", name, *options, "--db", self.db],
                              capture_output=True, text=True, cwd=ROOT, env=env())

    def start(self, workflow: str, data: Any) -> str:
        answer = httpx.post(f"{self.server.url}/api/runs",
                            json={"workflow": workflow, "input": data})
        assert answer.status_code == 201, answer.text
        run_id: str = answer.json()["run_id"]
        return run_id

    def invocations(self) -> list[tuple[str, str, str]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(f, q, outcome) for f, q, outcome in (line.split(" ") for line in lines)]


@pytest.fixture
def lambda_env(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lambda]:
    """Server and stand-in; an indirect parameter `{"server": {...}, "standin": {...}}` adds
    to their environments."""
    server_extra = getattr(request, "param", {}).get("server", {})
    standin_extra = getattr(request, "param", {}).get("standin", {})
    db = f"sqlite:///{tmp_path}/durable.db"
    port = free_port()
    standin_url = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, db, AWS_ENDPOINT_URL_LAMBDA=standin_url, **server_extra)
    log, fx = tmp_path / "standin.log", tmp_path / "effects.log"
    try:
        standin = Service([sys.executable, "-m", "uvicorn", STANDIN, "--port", str(port),
                           "--log-level", "warning", "--no-access-log"],
                          env(AWS_ENDPOINT_URL_LAMBDA=server.url, STANDIN_LOG=str(log),
                              OUTAGE_EFFECTS=str(fx), **standin_extra),
                          tmp_path / "standin-out.log", standin_url)
        standin.wait_answering(f"{standin_url}/")
    except BaseException:
        server.stop()
        raise
    with stopping(server, standin):
        yield Lambda(server, db, log, fx)


def failing(lam: Lambda, run_id: str) -> dict[str, Any]:
    """The run's invocation failure once it shows, the run never FAILED meanwhile."""
    def shown() -> dict[str, Any] | None:
        doc = run_doc(lam.server.url, run_id)
        assert doc["status"] == "RUNNING", doc
        failure: dict[str, Any] | None = doc["invocation_failure"]
        return failure if failure and failure["attempts"] >= 2 else None
    found: dict[str, Any] = wait_until(shown, f"run {run_id} to show its invocation failure",
                                       interval=0.1)
    return found


def test_a_workflow_with_a_durable_sleep_completes_through_lambda_s_invoke_api(
        lambda_env: Lambda) -> None:
    added = lambda_env.add("sleeper", "--lambda", "sleeper", "--qualifier", "live")
    assert added.returncode == 0, added.stderr
    assert "function sleeper -> Lambda sleeper:live" in added.stdout
    run_id = lambda_env.start("sleeper", 0.3)
    done = ended(lambda_env.server.url, run_id)
    assert done["status"] == "SUCCEEDED", done
    assert done["result"] == ["before", "after"]
    assert effects(lambda_env.effects) == {"before": 1, "after": 1}
    calls = lambda_env.invocations()
    assert len(calls) >= 2  # one before the sleep, one after it
    assert set(calls) == {("sleeper", "live", "ok")}  # signed right, the qualifier honoured


def test_a_lambda_functions_step_body_streams_to_the_server_that_invoked_it(
        lambda_env: Lambda) -> None:
    added = lambda_env.add("speaker", "--lambda", "speaker")
    assert added.returncode == 0, added.stderr
    words = ["tokens", "from", "lambda"]
    run_id = lambda_env.start("speaker", words)
    assert ended(lambda_env.server.url, run_id)["status"] == "SUCCEEDED"
    client = durable.Client(lambda_env.db)
    try:
        entries = list(client.stream(run_id, "tokens", follow=False))
    finally:
        client.close()
    assert [e.data for e in entries] == words
    assert {(e.kind, e.attempt) for e in entries} == {(StreamKind.VALUE, 1)}


def test_a_full_function_arn_with_its_region_is_invoked_by_it(lambda_env: Lambda) -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:sleeper"
    assert lambda_env.add("sleeper", "--lambda", arn).returncode == 0
    done = ended(lambda_env.server.url, lambda_env.start("sleeper", 0.0))
    assert done["status"] == "SUCCEEDED", done
    assert {c[1] for c in lambda_env.invocations()} == {"$LATEST"}


@pytest.mark.parametrize("lambda_env", [{"server": {"AWS_SECRET_ACCESS_KEY": "not-the-key"}}],
                         indirect=True)
def test_a_wrongly_signed_invoke_is_refused_and_the_run_shows_it_running(
        lambda_env: Lambda) -> None:
    assert lambda_env.add("sleeper", "--lambda", "sleeper").returncode == 0
    run_id = lambda_env.start("sleeper", 0.0)
    failure = failing(lambda_env, run_id)
    assert failure["error"]["type"] == "Function.Error"
    assert "HTTP 403" in failure["error"]["message"]
    assert "InvalidSignatureException" in failure["error"]["message"]
    assert "signature we calculated does not match" in failure["error"]["message"]
    assert {c[2] for c in lambda_env.invocations()} == {"bad-signature"}
    assert effects(lambda_env.effects) == {}


def test_a_function_error_is_retried_while_the_workflow_s_own_failure_fails_the_run(
        lambda_env: Lambda) -> None:
    assert lambda_env.add("crashes", "--lambda", "crashes").returncode == 0
    assert lambda_env.add("fails", "--lambda", "fails").returncode == 0
    crashing, failing_run = lambda_env.start("crashes", None), lambda_env.start("fails", None)
    done = ended(lambda_env.server.url, failing_run)
    assert done["status"] == "FAILED" and done["error"]["type"] == "ValueError", done
    assert done["error"]["message"] == "the workflow's own failure"
    failure = failing(lambda_env, crashing)
    assert failure["error"]["type"] == "Function.Error"
    assert "Unhandled error" in failure["error"]["message"]
    assert "RuntimeError: the function crashed" in failure["error"]["message"]
    assert Counter(c[0] for c in lambda_env.invocations() if c[2] == "unhandled")["crashes"] >= 2


def test_an_unknown_qualifier_is_retried_showing_lambda_s_not_found(lambda_env: Lambda) -> None:
    assert lambda_env.add("sleeper", "--lambda", "sleeper", "--qualifier", "v9").returncode == 0
    failure = failing(lambda_env, lambda_env.start("sleeper", 0.0))
    assert "HTTP 404" in failure["error"]["message"]
    assert "ResourceNotFoundException" in failure["error"]["message"]
    assert {c[1:] for c in lambda_env.invocations()} == {("v9", "not-found")}


@pytest.mark.parametrize("lambda_env", [{"standin": {"STANDIN_THROTTLE": "2"}}], indirect=True)
def test_a_throttled_invoke_is_retried_until_the_function_runs(lambda_env: Lambda) -> None:
    assert lambda_env.add("sleeper", "--lambda", "sleeper").returncode == 0
    done = ended(lambda_env.server.url, lambda_env.start("sleeper", 0.0))
    assert done["status"] == "SUCCEEDED", done
    outcomes = [c[2] for c in lambda_env.invocations()]
    assert outcomes[:2] == ["throttled", "throttled"] and set(outcomes[2:]) == {"ok"}
    assert effects(lambda_env.effects) == {"before": 1, "after": 1}


def test_the_api_registers_lists_and_refuses_lambda_functions_as_the_cli_does(
        lambda_env: Lambda) -> None:
    url = f"{lambda_env.server.url}/api/functions"
    put = httpx.put(f"{url}/sleeper", json={"lambda_function": "sleeper",
                                            "lambda_qualifier": "live",
                                            "lambda_region": "eu-west-1", "concurrency": 4})
    assert put.status_code == 200, put.text
    listed = subprocess.run([DURABLE, "functions", "ls", "--json", "--db", lambda_env.db],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    (api,) = httpx.get(url).json()
    health = api.pop("health")  # the API's listing adds how invoking it went lately
    assert [api] == [put.json()] == json.loads(listed.stdout)
    assert (health["invocations"], health["last_ok"]) == (0, None)
    bad = httpx.put(f"{url}/other", json={"lambda_function": "x", "lambda_region": "mars-1"})
    assert bad.status_code == 400, bad.text
    assert "'mars-1' is not an AWS region name" in bad.json()["error"]["message"]
    both = httpx.put(f"{url}/other", json={"lambda_function": "x", "url": "http://h/"})
    assert both.status_code == 400 and "exactly one of" in both.json()["error"]["message"]
    assert httpx.delete(f"{url}/sleeper").status_code == 204
    assert httpx.delete(f"{url}/sleeper").status_code == 404
    assert httpx.get(url).json() == []


@pytest.mark.parametrize(("options", "message"), [
    (["--lambda", "no/slashes"], "is neither a Lambda function name"),
    (["--lambda", "fn", "--region", "moon-1"], "'moon-1' is not an AWS region name"),
    (["--lambda", "fn", "--region", "us-nowhere-9"], "is not a region AWS Lambda runs in"),
    (["--lambda", "arn:aws:lambda:eu-west-1:123456789012:function:fn", "--region", "us-east-1"],
     "contradicts the ARN's region eu-west-1"),
    (["--lambda", "fn:v1", "--qualifier", "v2"], "already names qualifier 'v1'"),
    (["--lambda", "fn", "--qualifier", "not valid"], "is not a version or alias"),
    (["--url", "http://h/", "--qualifier", "v1"], "--qualifier and --region go with --lambda"),
    (["--url", "http://h/", "--lambda", "fn"], "give exactly one of"),
])
def test_functions_add_refuses_a_bad_lambda_target_with_exit_2(
        tmp_path: Path, options: list[str], message: str) -> None:
    done = subprocess.run([DURABLE, "functions", "add", "f", *options,
                           "--db", f"sqlite:///{tmp_path}/d.db"],
                          capture_output=True, text=True, cwd=ROOT, env=env())
    assert done.returncode == 2, done
    assert message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_functions_add_without_a_region_anywhere_says_where_to_give_one(tmp_path: Path) -> None:
    plain = {k: v for k, v in env().items() if k not in ("AWS_REGION", "AWS_DEFAULT_REGION")}
    done = subprocess.run([DURABLE, "functions", "add", "f", "--lambda", "fn",
                           "--db", f"sqlite:///{tmp_path}/d.db"], capture_output=True,
                          text=True, cwd=ROOT, env={**plain, "AWS_CONFIG_FILE": "/nonexistent"})
    assert done.returncode == 2
    assert "no AWS region; give --region, a function ARN, or set AWS_DEFAULT_REGION" in done.stderr


def test_functions_add_lambda_without_boto3_names_the_extra_to_install(tmp_path: Path) -> None:
    # boto3 and botocore unimportable, as in an install without the [aws] extra
    code = ("import sys; sys.modules['boto3'] = sys.modules['botocore'] = None; "
            "from durable.cli import main; sys.exit(main())")
    done = subprocess.run([sys.executable, "-c", code, "functions", "add", "f", "--lambda",
                           "fn", "--region", "us-east-1", "--db", f"sqlite:///{tmp_path}/d.db"],
                          capture_output=True, text=True, cwd=ROOT, env=env())
    assert done.returncode == 2, done
    assert done.stderr == ("error: function 'f': invoking AWS Lambda needs the aws extra: "
                           "pip install 'durable-serverless[aws]'\n")
