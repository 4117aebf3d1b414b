"""`durable deploy sam`: the AWS SAM template it writes passes cfn-lint as written, translates
with AWS's own SAM translator (aws-sam-translator, what CloudFormation's transform runs) into a
durable Lambda function whose role may checkpoint, and that translation passes cfn-lint too.
The handler it names, imported from its CodeUri the way Lambda's Python runtime imports it, runs
the workflow on AWS's durable-functions emulator. Bad targets and options exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cfnlint.api as cfnlint_api
import pytest
from cfnlint.decode.decode import decode_str

from tests.kit import DURABLE, ROOT, Procs
from tests.readmekit import AWS_LAMBDA, SERVERLESS_README, Shell, run_section

EXAMPLE = "examples/serverless/app.py:checkout"
DURABLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicDurableExecutionRolePolicy"


def deploy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DURABLE, "deploy", "sam", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def written(path: Path) -> tuple[str, dict[str, Any]]:
    text = path.read_text()
    template, errors = decode_str(text)
    assert not errors, errors
    assert template is not None
    return text, dict(template)


def lint(text: str) -> list[str]:
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in cfnlint_api.lint(text)]


def translate(template: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's view of the template: CodeUri pointed at S3 as `sam package` does,
    then AWS::Serverless-2016-10-31 applied by AWS's translator (no AWS account needed)."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    packaged = json.loads(json.dumps(template))
    for resource in packaged["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://deploy-bucket/function.zip"
    translated: dict[str, Any] = Translator(
        None, Parser(), boto_session=boto3.Session(region_name="us-east-1")).translate(
            packaged, {}, get_managed_policy_map=dict)
    return translated


def of_type(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in template["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize(("options", "expected"), [
    ((), {"FunctionName": "checkout", "Runtime": "python3.13", "MemorySize": 512,
          "Timeout": 900, "DurableConfig": {"ExecutionTimeout": 604800,
                                            "RetentionPeriodInDays": 14}}),
    (("--name", "checkout-prod", "--runtime", "python3.14", "--memory", "1024", "--timeout",
      "60", "--execution-timeout", "3600", "--retention-days", "3"),
     {"FunctionName": "checkout-prod", "Runtime": "python3.14", "MemorySize": 1024,
      "Timeout": 60, "DurableConfig": {"ExecutionTimeout": 3600, "RetentionPeriodInDays": 3}}),
])
def test_template_lints_and_translates_to_a_durable_function_allowed_to_checkpoint(
        tmp_path: Path, options: tuple[str, ...], expected: dict[str, Any]) -> None:
    out = tmp_path / "template.yaml"
    done = deploy(EXAMPLE, "--output", str(out), *options)
    assert done.returncode == 0, done.stderr
    text, template = written(out)
    assert lint(text) == []

    function = of_type(template, "AWS::Serverless::Function")[0]["Properties"]
    assert function["Handler"] == "app.handler"
    assert (out.parent / function["CodeUri"]).resolve() == ROOT / "examples" / "serverless"

    cloudformation = translate(template)
    [lambda_fn] = of_type(cloudformation, "AWS::Lambda::Function")
    assert {k: lambda_fn["Properties"][k] for k in expected} == expected
    assert lambda_fn["Properties"]["Handler"] == "app.handler"
    [role] = of_type(cloudformation, "AWS::IAM::Role")
    assert DURABLE_POLICY in role["Properties"]["ManagedPolicyArns"]
    [alias] = of_type(cloudformation, "AWS::Lambda::Alias")
    assert alias["Properties"]["Name"] == "live"
    assert lint(json.dumps(cloudformation)) == []


def test_the_lint_refuses_a_wrong_durable_config(tmp_path: Path) -> None:
    """The checks above can fail: cfn-lint knows DurableConfig's properties on the SAM template
    (its SAM schema has no bounds) and Lambda's bounds on the translated one."""
    out = tmp_path / "template.yaml"
    assert deploy(EXAMPLE, "--output", str(out)).returncode == 0
    text = out.read_text().replace("ExecutionTimeout:", "ExecutionTimeOut:")
    assert any("ExecutionTimeOut" in found for found in lint(text))
    _, template = written(out)
    durable_config = of_type(template, "AWS::Serverless::Function")[0]["Properties"][
        "DurableConfig"]
    durable_config["ExecutionTimeout"] = 31622401
    assert any("31622401" in found for found in lint(json.dumps(translate(template))))


HANDLER_ON_LAMBDA = """
import importlib, json, sys
from aws_durable_execution_sdk_python_testing import DurableFunctionTestRunner

module, _, attr = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module), attr)
with DurableFunctionTestRunner(handler=handler) as runner:
    arn = runner.run_async(input=sys.argv[2], execution_timeout=60)
    callback = runner.wait_for_callback(arn, name="approval", timeout=30)
    runner.send_callback_success(callback, json.dumps("approve").encode())
    done = runner.wait_for_result(arn, timeout=30)
print(json.dumps({"status": done.status.value, "result": json.loads(done.result)}))
"""


def test_the_handler_it_names_runs_the_workflow_on_awss_emulator(tmp_path: Path) -> None:
    out = tmp_path / "template.yaml"
    assert deploy(EXAMPLE, "--output", str(out)).returncode == 0
    function = of_type(written(out)[1], "AWS::Serverless::Function")[0]["Properties"]
    code = (out.parent / function["CodeUri"]).resolve()
    # As Lambda's runtime does: the code directory first on sys.path, the working directory
    # and nothing of this repository besides (`-I`: no PYTHONPATH, no script directory).
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(code)!r})\n"
         + HANDLER_ON_LAMBDA, function["Handler"],
         json.dumps({"id": "17", "sku": "book", "quantity": 1, "amount": 25})],
        capture_output=True, text=True, cwd=code, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["status"] == "SUCCEEDED"
    assert answer["result"]["payment"] == "charge-17-25"


def test_code_uri_sets_where_the_handler_module_is_imported_from(tmp_path: Path) -> None:
    out = tmp_path / "template.yaml"
    done = deploy(EXAMPLE, "--code-uri", ".", "--output", str(out))
    assert done.returncode == 0, done.stderr
    function = of_type(written(out)[1], "AWS::Serverless::Function")[0]["Properties"]
    assert function["Handler"] == "examples.serverless.app.handler"
    assert (out.parent / function["CodeUri"]).resolve() == ROOT


WORKFLOW_ONLY = """
from durable import workflow

@workflow(name="orders.sync")
async def sync(ctx, x: int) -> int:
    return x
"""


@pytest.mark.parametrize(("target", "options", "says"), [
    ("nowhere/app.py:checkout", (), "no such file"),
    ("examples/serverless/app.py:reserve", (), "not a workflow"),
    ("{tmp}/jobs.py:sync", (), "add `handler = durable.lambda_handler(sync)`"),
    ("{tmp}/named.py:sync", (), "not a Lambda function name"),
    (EXAMPLE, ("--code-uri", "{tmp}"), "is not inside --code-uri"),
    (EXAMPLE, ("--code-uri", "{tmp}/missing"), "is not a directory"),
    (EXAMPLE, ("--retention-days", "91"), "--retention-days"),
    (EXAMPLE, ("--runtime", "python3.12"), "--runtime"),
])
def test_a_target_or_option_lambda_cannot_run_exits_2_saying_why(
        tmp_path: Path, target: str, options: tuple[str, ...], says: str) -> None:
    (tmp_path / "jobs.py").write_text(WORKFLOW_ONLY)
    (tmp_path / "named.py").write_text(
        WORKFLOW_ONLY + "\nimport durable\nhandler = durable.lambda_handler(sync)\n")
    out = tmp_path / "out" / "template.yaml"
    out.parent.mkdir()
    done = deploy(target.format(tmp=tmp_path), *(o.format(tmp=tmp_path) for o in options),
                  "--output", str(out))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert says in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(("readme", "code_dir"), [
    (AWS_LAMBDA, "."),                          # the user's app.py where they run it
    (SERVERLESS_README, "examples/serverless"),  # the example, from the repository's root
])
def test_the_readmes_deploy_commands_write_a_template_that_validates(
        tmp_path: Path, readme: Path, code_dir: str) -> None:
    code = tmp_path / code_dir
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "examples" / "serverless" / "app.py", code / "app.py")
    with Procs(tmp_path) as procs:
        skipped = run_section(readme, "Deploy to AWS Lambda", Shell(tmp_path, procs),
                              skip=lambda command: command.startswith(("sam ", "aws ")),
                              then={})
    assert [command.split()[0] for command in skipped] == ["sam", "aws"]  # need AWS itself

    text, template = written(code / "template.yaml")
    assert lint(text) == []
    assert lint(json.dumps(translate(template))) == []
    function = of_type(template, "AWS::Serverless::Function")[0]["Properties"]
    assert function["Handler"] == "app.handler"
    assert (code / function["CodeUri"]).resolve() == code.resolve()
    assert "durable-serverless" in (code / "requirements.txt").read_text()
