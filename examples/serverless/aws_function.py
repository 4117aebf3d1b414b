"""A durable function written with AWS's SDK (aws-durable-execution-sdk-python), unchanged,
hosted over HTTP so that `durable server` can run it locally:

    AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:8777 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x \
    AWS_DEFAULT_REGION=us-east-1 uvicorn examples.serverless.aws_function:app --port 9001
    durable functions add process-order --url http://127.0.0.1:9001/process_order
"""

from __future__ import annotations

from typing import Any

from aws_durable_execution_sdk_python.config import Duration
from aws_durable_execution_sdk_python.context import DurableContext, durable_step
from aws_durable_execution_sdk_python.execution import durable_execution
from aws_durable_execution_sdk_python.types import StepContext

import durable


@durable_step
def validate(step_context: StepContext, order_id: str) -> dict[str, Any]:
    return {"order": order_id, "valid": True}


@durable_execution
def process_order(event: dict[str, Any], context: DurableContext) -> dict[str, Any]:
    checked = context.step(validate(event["order_id"]), name="validate")
    context.wait(Duration.from_seconds(3), name="cool-off")
    callback = context.create_callback(name="shipping")
    shipped = callback.result()
    return {**checked, "shipping": shipped}


app = durable.serve(process_order)
