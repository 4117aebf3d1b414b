"""Temporal-style code on Durable: the commonly used part of the Temporal Python SDK's API
under the same names, so code written for Temporal runs with only its imports changed.

    from durable.temporal import activity, workflow        # was: from temporalio import ...
    from durable.temporal.client import Client             # was: from temporalio.client ...
    from durable.temporal.common import RetryPolicy        # was: from temporalio.common ...
    from durable.temporal import run                       # the serverless entry

See examples/temporal_style/README.md ("Coming from Temporal") for what maps to what and what is
not supported; unsupported parts are refused when the workflow class is defined.
"""

from typing import Any

from durable.sdk.workflow import Workflow
from durable.temporal import activity, client, common, exceptions, workflow
from durable.temporal._definition import DEFN_ATTR, Definition, definition_of
from durable.temporal.serverless import run, run_async

__all__ = ["activity", "client", "common", "durable_workflow", "exceptions", "run",
           "run_async", "workflow", "workflow_behind"]


def durable_workflow(workflow_class: object) -> Workflow[..., Any]:
    """The Durable workflow behind a @workflow.defn class (or its run method, or its name): for
    `durable.run`, `durable.Worker`, `durable.testing.TestEnvironment` and the command line."""
    return definition_of(workflow_class).durable


def workflow_behind(obj: object) -> Workflow[..., Any] | None:
    """The Durable workflow behind `obj` if it is a @workflow.defn class or its run method; None
    for anything else, including the subclasses and instances that inherit the class's mark:
    what the command line's target loading asks of every object in a module."""
    defn = getattr(obj, DEFN_ATTR, None)
    if isinstance(defn, Definition) and (obj is defn.cls or obj is defn.run_fn):
        return defn.durable
    return None
