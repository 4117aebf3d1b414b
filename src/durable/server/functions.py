"""The functions API under /api/functions: what `durable functions add`, `ls` and `rm` do.

Registering here refuses what could not be invoked (a bad URL, ARN or region, Lambda without
boto3 on this server) with a 400 that says why, as the CLI refuses it with exit 2.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Response

from durable.invoke.push import FunctionSpec, check, register, unregister
from durable.server import observe
from durable.server.deps import ServerDep
from durable.server.errors import ERROR_RESPONSES, ApiError
from durable.server.schemas import Function, FunctionRegistration, FunctionStatus

router = APIRouter(prefix="/api/functions", tags=["functions"], responses=ERROR_RESPONSES)

Name = Annotated[str, Path(max_length=64, description="The function's name: the workflow "
                           "name of its runs")]


@router.get("", response_model=list[FunctionStatus])
def list_functions(state: ServerDep) -> list[FunctionStatus]:
    """The registered functions, by name, each with how invoking it went over the last day:
    invocations, failures to run, the latest of each."""
    return [observe.function_status(row) for row in observe.functions(state)]


@router.put("/{name}", response_model=Function)
def put_function(name: Name, body: FunctionRegistration, state: ServerDep) -> Function:
    """Register function `name`, or replace it; servers pick it up at once, and its parked
    runs get another try."""
    spec = FunctionSpec(name, **body.model_dump())
    check(spec, state.client.store, state.client.clock)
    register(state.client.store, spec)
    return Function(**dataclasses.asdict(spec))


@router.delete("/{name}", status_code=204, response_class=Response)
def delete_function(name: Name, state: ServerDep) -> Response:
    """Unregister function `name`; its runs wait until it is registered again."""
    if not unregister(state.client.store, name):
        raise ApiError(404, "function_not_found", f"no function {name!r}; GET /api/functions "
                       "lists them")
    return Response(status_code=204)
