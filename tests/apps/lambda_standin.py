"""A local stand-in for AWS Lambda's Invoke API, for tests/test_lambda_target.py: a real HTTP
server that checks each request's SigV4 signature as Lambda does, then runs the function.

`POST /2015-03-31/functions/{name}/invocations` ({name}: a name, `name:qualifier` or ARN)
recomputes the signature from the request with botocore's own signer (`SigV4Auth`) and the
credentials in its environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); a signature that
does not match is refused with Lambda's 403 InvalidSignatureException. A qualifier other than
$LATEST or the alias `live` is Lambda's 404. The functions are `durable.lambda_handler`s run
in-process, checkpointing to the durable server their own AWS_ENDPOINT_URL_LAMBDA names, as
they would on Lambda; one that raises is Lambda's "Unhandled" function error.
`STANDIN_THROTTLE=N`: the first N invocations get Lambda's 429. Every invocation leaves a line
in STANDIN_LOG: `<function> <qualifier> <outcome>`.

Run it with `uvicorn tests.apps.lambda_standin:app`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import traceback
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import durable
from durable import Context, workflow
from durable.invoke.contract import function_parts
from tests.apps.outage_functions import effect

QUALIFIERS = ("$LATEST", "live")
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                   r" ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})")


@workflow(name="sleeper")
async def sleeper(ctx: Context, pause: float) -> list[str]:
    first = await ctx.step(effect, "before", name="before")
    await ctx.sleep(pause)
    return [first, await ctx.step(effect, "after", name="after")]


@workflow(name="fails")
async def fails(ctx: Context) -> None:
    await ctx.step(effect, "tried", name="tried")
    raise ValueError("the workflow's own failure")


@workflow(name="speaker")
async def speaker(ctx: Context, words: list[str]) -> int:
    """Streams `words` to `tokens` from inside its step, as a model call streams tokens."""
    def say() -> int:
        for word in words:
            ctx.stream("tokens").write(word)
        return len(words)
    return await ctx.step(say, name="say")


def crashes(event: Any, context: Any) -> Any:
    raise RuntimeError("the function crashed")


FUNCTIONS = {"sleeper": durable.lambda_handler(sleeper), "fails": durable.lambda_handler(fails),
             "speaker": durable.lambda_handler(speaker), "crashes": crashes}
throttled = [0]


def log(function: str, qualifier: str, outcome: str) -> None:
    with open(os.environ["STANDIN_LOG"], "a") as f:
        f.write(f"{function} {qualifier} {outcome}\n")


def aws_error(status: int, code: str, message: str) -> Response:
    """An error as Lambda's REST-JSON protocol answers it (botocore reads the header)."""
    return JSONResponse({"Type": "User", "message": message}, status_code=status,
                        headers={"x-amzn-ErrorType": code})


def signature_problem(request: Request, body: bytes) -> str | None:
    """Why the request's SigV4 signature is not valid for our credentials (None: it is)."""
    found = _AUTH.fullmatch(request.headers.get("authorization", ""))
    if found is None:
        return "Missing or malformed Authorization header"
    key, day, region, service, signed, given = found.groups()
    if key != os.environ["AWS_ACCESS_KEY_ID"]:
        return f"The security token included in the request is invalid: unknown key {key}"
    timestamp = request.headers.get("x-amz-date", "")
    if service != "lambda" or not timestamp.startswith(day):
        return f"Credential should be scoped to a valid date and service lambda: {found[0]}"
    url = request.url.scheme + "://" + request.headers["host"] + request.scope["raw_path"].decode()
    if request.url.query:
        url += "?" + request.scope["query_string"].decode()
    headers = {name: request.headers.get(name, "") for name in signed.split(";")}
    aws_request = AWSRequest(method=request.method, url=url, headers=headers, data=body)
    aws_request.context["timestamp"] = timestamp
    signer = SigV4Auth(Credentials(key, os.environ["AWS_SECRET_ACCESS_KEY"]), "lambda", region)
    expected = signer.signature(
        signer.string_to_sign(aws_request, signer.canonical_request(aws_request)), aws_request)
    if not hmac.compare_digest(expected, given):
        return ("The request signature we calculated does not match the signature you "
                "provided. Check your AWS Secret Access Key and signing method.")
    return None


async def invoke(request: Request) -> Response:
    name, own_qualifier, _ = function_parts(request.path_params["name"])  # a name or an ARN
    body = await request.body()
    qualifier = request.query_params.get("Qualifier") or own_qualifier or "$LATEST"
    problem = signature_problem(request, body)
    if problem is not None:
        log(name, qualifier, "bad-signature")
        return aws_error(403, "InvalidSignatureException", problem)
    if name not in FUNCTIONS or qualifier not in QUALIFIERS:
        log(name, qualifier, "not-found")
        return aws_error(404, "ResourceNotFoundException",
                         f"Function not found: arn:aws:lambda:us-east-1:123456789012:function:"
                         f"{name}:{qualifier}")
    if throttled[0] < int(os.environ.get("STANDIN_THROTTLE", "0")):
        throttled[0] += 1
        log(name, qualifier, "throttled")
        return aws_error(429, "TooManyRequestsException", "Rate Exceeded.")
    try:
        answer = await asyncio.to_thread(FUNCTIONS[name], json.loads(body), None)
    except Exception as e:
        log(name, qualifier, "unhandled")
        return JSONResponse({"errorMessage": str(e), "errorType": type(e).__name__,
                             "stackTrace": traceback.format_tb(e.__traceback__)},
                            headers={"X-Amz-Function-Error": "Unhandled"})
    log(name, qualifier, "ok")
    return JSONResponse(answer, headers={"X-Amz-Executed-Version": qualifier})


app = Starlette(routes=[Route("/2015-03-31/functions/{name}/invocations", invoke,
                              methods=["POST"])])
