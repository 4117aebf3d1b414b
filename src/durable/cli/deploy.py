"""`durable deploy`: what it takes to run a workflow on AWS's own durable-functions backend.

`durable deploy sam TARGET` writes an AWS SAM template for a Lambda durable function whose
handler is the `durable.lambda_handler(...)` the workflow's module exports. The template is
text with a fixed layout rather than a serialised dict, so that it can carry comments saying
what each setting does for a durable function; every value in it goes through `json.dumps`,
and a JSON string is a valid YAML scalar, so no input can break its syntax.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from durable.cli.options import json_option
from durable.cli.render import echo_done
from durable.cli.targets import load_workflow, module_of
from durable.errors import UsageError
from durable.sdk.workflow import Workflow

# The managed runtimes that run Python durable functions (AWS Lambda developer guide,
# "Supported runtimes for durable functions").
RUNTIMES = ("python3.13", "python3.14")
# Lambda's own bounds: a function name, an invocation's timeout and memory, and DurableConfig's
# ExecutionTimeout (a 366-day year) and RetentionPeriodInDays.
FUNCTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_INVOCATION_SECONDS = 900
MAX_EXECUTION_SECONDS = 366 * 24 * 3600
ALIAS = "live"


@dataclass(frozen=True)
class SamFunction:
    """Everything the template says about the one function it declares."""

    name: str
    handler: str
    code_uri: str
    runtime: str
    memory: int
    timeout: int
    execution_timeout: int
    retention_days: int
    description: str

    @property
    def logical_id(self) -> str:
        """A CloudFormation logical id (alphanumeric) derived from the function's name."""
        return "".join(part[:1].upper() + part[1:] for part in re.split(r"[-_]", self.name))

    def template(self) -> str:
        q = json.dumps
        return f"""\
# An AWS SAM template for the Durable workflow {q(self.description)}, written by
# `durable deploy sam`. Build and deploy it with `sam build && sam deploy --guided`.
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: {q(f"Durable workflow {self.description} as a Lambda durable function")}

Resources:
  {self.logical_id}:
    Type: AWS::Serverless::Function
    Properties:
      # Durable's own `invoke` of a child workflow calls the durable function of that name.
      FunctionName: {q(self.name)}
      CodeUri: {q(self.code_uri)}
      Handler: {q(self.handler)}
      Runtime: {q(self.runtime)}
      MemorySize: {self.memory}
      # One invocation: it replays the run, runs steps until the workflow ends or waits.
      Timeout: {self.timeout}
      # Lambda invokes durable functions by a qualified ARN: a version or this alias.
      AutoPublishAlias: {ALIAS}
      # Makes Lambda invoke the handler with durable executions' envelope and keep their
      # checkpoints; SAM then gives the role it creates AWSLambdaBasicDurableExecutionRolePolicy
      # (lambda:CheckpointDurableExecution, lambda:GetDurableExecutionState, logs).
      DurableConfig:
        ExecutionTimeout: {self.execution_timeout}
        RetentionPeriodInDays: {self.retention_days}

Outputs:
  {self.logical_id}Alias:
    Description: Invoke this (with a durable execution name) to start a run
    Value: !Ref {self.logical_id}.Alias
"""


def sam_function(target: str, *, name: str | None, code_uri: str | None, output: Path,
                 runtime: str, memory: int, timeout: int, execution_timeout: int,
                 retention_days: int) -> SamFunction:
    """The function TARGET's workflow becomes, its paths relative to where `output` goes."""
    wf = load_workflow(target)
    module = module_of(target)
    attr = _handler_attribute(module, wf, target)
    name = name or wf.name
    if not FUNCTION_NAME.fullmatch(name):
        raise UsageError(f"{name!r} is not a Lambda function name (1-64 letters, digits, - "
                         "and _); choose one with --name")
    module_file = _module_file(module, target)
    root = Path(code_uri).resolve() if code_uri else _import_root(module, module_file)
    if not root.is_dir():
        raise UsageError(f"--code-uri {code_uri!r} is not a directory")
    return SamFunction(
        name=name, handler=f"{_module_path(module_file, root, target)}.{attr}",
        code_uri=Path(os.path.relpath(root, output.resolve().parent)).as_posix(),
        runtime=runtime, memory=memory, timeout=timeout, execution_timeout=execution_timeout,
        retention_days=retention_days, description=wf.name)


def _handler_attribute(module: ModuleType, wf: Workflow[..., Any], target: str) -> str:
    """The name under which the module exports `durable.lambda_handler(wf)`: Lambda imports the
    module and calls that attribute, so it has to exist in the code that is deployed."""
    for attr, obj in vars(module).items():
        if callable(obj) and getattr(obj, "workflow", None) is wf:
            return attr
    ref = target.partition(":")[0]
    raise UsageError(f"{ref!r} exports no Lambda handler for workflow {wf.name!r}; add "
                     f"`handler = durable.lambda_handler({wf.fn.__name__})` to it")


def _module_file(module: ModuleType, target: str) -> Path:
    file = getattr(module, "__file__", None)
    if file is None:
        raise UsageError(f"{target!r} is not in a file that could be deployed")
    return Path(file).resolve()


def _import_root(module: ModuleType, file: Path) -> Path:
    """The directory the module is imported from: its file, up one level per dotted part."""
    depth = module.__name__.count(".") + (file.name == "__init__.py")
    return file.parents[depth]


def _module_path(file: Path, root: Path, target: str) -> str:
    """The dotted module name Lambda's Python runtime imports from `root` to reach `file`."""
    try:
        relative = file.with_suffix("").relative_to(root)
    except ValueError:
        raise UsageError(f"{target!r} ({file}) is not inside --code-uri {root}; the code "
                         "deployed must contain it") from None
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    if not parts or not all(part.isidentifier() for part in parts):
        raise UsageError(f"{relative} cannot be imported as a Python module from {root}; "
                         "choose --code-uri so that the path is one")
    return ".".join(parts)


# -- the command --------------------------------------------------------------------------------

@click.group()
def deploy() -> None:
    """Describe a workflow for a cloud's deployment tools."""


@deploy.command("sam")
@click.argument("target")
@click.option("--name", metavar="NAME", help="The Lambda function's name "
              "[default: the workflow's name].")
@click.option("--runtime", type=click.Choice(RUNTIMES), default=RUNTIMES[0], show_default=True)
@click.option("--memory", type=click.IntRange(128, 10240), default=512, show_default=True,
              metavar="MB", help="Memory of the function, in MB.")
@click.option("--timeout", type=click.IntRange(1, MAX_INVOCATION_SECONDS),
              default=MAX_INVOCATION_SECONDS, show_default=True, metavar="SECONDS",
              help="The longest one invocation may take.")
@click.option("--execution-timeout", type=click.IntRange(1, MAX_EXECUTION_SECONDS),
              default=7 * 24 * 3600, show_default=True, metavar="SECONDS",
              help="The longest a run may take, waits included (DurableConfig).")
@click.option("--retention-days", type=click.IntRange(1, 90), default=14, show_default=True,
              metavar="DAYS", help="How long Lambda keeps an ended run's history.")
@click.option("--code-uri", metavar="DIR", help="The directory deployed as the function's "
              "code [default: the one TARGET's module is imported from].")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("template.yaml"), show_default=True,
              help="Where to write the template.")
@json_option
def sam(target: str, name: str | None, runtime: str, memory: int, timeout: int,
        execution_timeout: int, retention_days: int, code_uri: str | None,
        output: Path, as_json: bool) -> None:
    """Write an AWS SAM template running TARGET as a Lambda durable function.

    TARGET's module must export `durable.lambda_handler(workflow)`: that is the handler."""
    fn = sam_function(target, name=name, code_uri=code_uri, output=output, runtime=runtime,
                      memory=memory, timeout=timeout, execution_timeout=execution_timeout,
                      retention_days=retention_days)
    try:
        output.write_text(fn.template())
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from None
    code = (output.parent / fn.code_uri).resolve()
    echo_done(as_json, {"template": str(output), "function": fn.name, "handler": fn.handler,
                        "code_uri": fn.code_uri},
              f"wrote {output}: function {fn.name}, handler {fn.handler}, code {fn.code_uri}")
    if "durable-serverless" not in _requirements(code):
        click.echo(f"note: `sam build` installs what {code / 'requirements.txt'} lists; "
                   "add durable-serverless to it", err=True)
    click.echo(f"next: sam build -t {output} && sam deploy --guided", err=True)


def _requirements(code: Path) -> str:
    try:
        return (code / "requirements.txt").read_text()
    except OSError:
        return ""
