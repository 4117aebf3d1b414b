"""AWS's durable-execution conformance requirements, run against `durable server`.

The requirements are AWS's own (the `aws-durable-execution-conformance-tests` wheel, pinned by
hash in tests/conformance/requirements.txt and installed by the Makefile): YAML under
`test_requirements/<suite>/` giving each requirement's input, expected status and result, and
expected event history. Their handlers (tests/apps/conformance_functions.py) are written with
AWS's SDK and hosted in one uvicorn process; each is registered as a function of a real
`durable server` and driven through the package's own validator (`validate_description`):
boto3's `lambda` client invokes it (synchronously, or asynchronously with the callback
actions sent as the history shows the callbacks), and the package's history matcher checks
the events. Nothing here decides whether a requirement passed but AWS's code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.apps.serverless_kit import lambda_client, start_function_host, start_server

conformance = pytest.importorskip(
    "aws_durable_execution_conformance_tests",
    reason="AWS's conformance requirements are installed by `make .venv/.installed` "
           "(tests/conformance/requirements.txt)")
from aws_durable_execution_conformance_tests.history import load_yaml_file  # noqa: E402
from aws_durable_execution_conformance_tests.sam import Invoker  # noqa: E402
from aws_durable_execution_conformance_tests.validate import (  # noqa: E402
    DescriptionResult,
    validate_description,
)

from durable.invoke.push import FunctionSpec, register  # noqa: E402
from durable.store import open_store  # noqa: E402
from tests.apps.conformance_functions import HANDLERS  # noqa: E402

REQUIREMENTS = Path(conformance.__file__).parent / "test_requirements"
SUITES = ("step", "wait", "child", "callback", "invoke", "wait_for_condition",
          "wait_for_callback", "parallel", "map")
"""The suites run. Not `plugin` (SDK plugins, not the backend's contract)."""
CLOUDWATCH = "checks the function's CloudWatch Logs (ExpectedLogs), which only AWS has"
EXCLUDED: dict[str, str] = {
    "1.7": CLOUDWATCH,
    "1.17": CLOUDWATCH,
    "1.18": CLOUDWATCH,
    "3.11": CLOUDWATCH,
    "3.17": CLOUDWATCH,
}
"""Requirements not run, and why."""


def requirement_id(path: Path) -> str:
    return path.stem.replace("-", ".")


def requirements() -> list[Path]:
    def order(p: Path) -> list[int]:
        return [int(n) for n in re.findall(r"\d+", p.stem)]
    return [p for suite in SUITES
            for p in sorted((REQUIREMENTS / suite).glob("*.yaml"), key=order)]


def function_of(path: Path) -> str:
    return f"req-{path.stem}"


class ServerInvoker(Invoker):
    """AWS's invoker (boto3's Lambda Invoke, qualified `$LATEST`), with the functions named as
    they are registered on the server rather than looked up in a CloudFormation stack."""

    def __init__(self, client: Any) -> None:
        super().__init__(stack_name="durable-server", lambda_client=client)

    def _resolve_function(self, logical_id: str) -> str:
        return logical_id


@pytest.fixture(scope="module")
def invoker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInvoker]:
    tmp = tmp_path_factory.mktemp("conformance")
    db = f"sqlite:///{tmp}/durable.db"
    server = start_server(tmp, db)
    try:
        host = start_function_host(tmp, "tests.apps.conformance_functions:app", server.url)
    except Exception:
        server.stop()
        raise
    try:
        store = open_store(db)
        try:
            for name in HANDLERS:
                register(store, FunctionSpec(name, url=f"{host.url}/{name}"))
        finally:
            store.close()
        yield ServerInvoker(lambda_client(server.url))
    finally:
        host.stop()
        server.stop()


def test_every_requirement_has_a_handler_or_a_reason() -> None:
    ids = {requirement_id(p) for p in requirements()}
    handled = {name.removeprefix("req-").replace("-", ".") for name in HANDLERS
               if name.startswith("req-")}
    assert not handled & set(EXCLUDED), "a requirement both handled and excluded"
    assert ids - set(EXCLUDED) == handled & ids, sorted(ids - set(EXCLUDED) - handled)
    for rid in EXCLUDED:
        assert rid in ids, f"{rid} is excluded but is no requirement"


def run(invoker: ServerInvoker, path: Path, tmp: Path) -> DescriptionResult:
    result: DescriptionResult = validate_description(
        function_name=function_of(path), description_id=path.stem, test_file=str(path),
        invoker=invoker, tmp_dir=str(tmp), region="us-east-1",
        aws_clients={"lambda": invoker._get_lambda_client()},  # type: ignore[arg-type]
        output_dir=str(tmp))
    return result


def test_conformance_requirements_pass(invoker: ServerInvoker, tmp_path: Path) -> None:
    """Every applicable requirement, run concurrently (most wait on timers and retry delays);
    the excluded ones must fail for their reason and are not run."""
    todo = [p for p in requirements() if requirement_id(p) not in EXCLUDED]
    for path in todo:
        assert not load_yaml_file(str(path)).get("ExpectedLogs"), f"{path} needs {CLOUDWATCH}"
    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(lambda p: run(invoker, p, tmp_path), todo))
    failed = {r.description_id: r.errors for r in results if not r.passed}
    assert not failed, "\n".join(f"{rid}: {errors}" for rid, errors in sorted(failed.items()))
