"""AWS Lambda as a function target: `durable server` invokes it through Lambda's Invoke API.

The request is boto3's `lambda` client's `Invoke`, so everything AWS's SDKs honour applies: the
standard credential chain (environment, profiles, SSO, instance and container roles), the
region chain, and `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` for a Lambda stand-in. The
payload is the same invocation envelope an HTTP function gets; the function checkpoints back to
the server it reaches by its own `AWS_ENDPOINT_URL_LAMBDA` (Lambda passes no headers through).

boto3 blocks, so each Invoke runs on a thread of the function's own pool, sized to the
invocations it may have in flight: a Lambda invocation may last minutes, and on the event
loop's default pool a few of them would starve every other `to_thread` of the server. boto3
rather than botocore's signer over httpx because the client also resolves endpoints
(partitions, FIPS, the endpoint variables), refreshes credentials (refreshing may itself block
on STS or an instance role) and parses Lambda's errors: all of that would be rewritten here.
"""

from __future__ import annotations

import asyncio
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from durable.errors import InvocationError, UsageError, requires_extra
from durable.invoke import dataplane
from durable.invoke.contract import ContractError, function_parts, output_from_wire
from durable.model import Checkpointer, ErrorObject, Invocation, InvocationOutput
from durable.store import Store

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")
_QUALIFIER = re.compile(r"\$LATEST|[a-zA-Z0-9_-]{1,128}")
_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class LambdaTarget:
    """A Lambda function to invoke: its name or ARN, the version or alias, the region (given,
    or the ARN's; None: boto3's region chain, e.g. AWS_DEFAULT_REGION, decides)."""

    function: str
    qualifier: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, function: str, qualifier: str | None, region: str | None) -> LambdaTarget:
        """Check what `--lambda`, `--qualifier` and `--region` were given, as Lambda would."""
        try:
            _, own_qualifier, own_region = function_parts(function)
        except ContractError:
            raise UsageError(f"--lambda {function!r} is neither a Lambda function name (letters, "
                             "digits, '-', '_', at most 64) nor a function ARN such as "
                             "arn:aws:lambda:us-east-1:123456789012:function:NAME") from None
        if qualifier is not None and own_qualifier is not None:
            raise UsageError(f"--lambda {function!r} already names qualifier "
                             f"{own_qualifier!r}: drop --qualifier or the ':{own_qualifier}'")
        if qualifier is not None and not _QUALIFIER.fullmatch(qualifier):
            raise UsageError(f"--qualifier {qualifier!r} is not a version or alias: $LATEST, "
                             "a version number or an alias name (letters, digits, '-', '_')")
        if region is not None and own_region is not None and region != own_region:
            raise UsageError(f"--region {region} contradicts the ARN's region {own_region}")
        region = region or own_region
        if region is not None:
            _check_region(region)
        return cls(function, qualifier, region)

    def __str__(self) -> str:
        qualified = self.function + (f":{self.qualifier}" if self.qualifier else "")
        return f"Lambda {qualified}" + (f" in {self.region}" if self.region else "")


def _check_region(region: str) -> None:
    if not _REGION.fullmatch(region):
        raise UsageError(f"--region {region!r} is not an AWS region name, e.g. us-east-1")


def check(target: LambdaTarget) -> None:
    """What only the AWS SDK can tell, checked when a function is registered: boto3 is there,
    a region is known, and it is one Lambda runs in (a server invokes even a region newer than
    its botocore: the partition's endpoint pattern covers it)."""
    region = lambda_client(target, _CONNECT_TIMEOUT, 1).meta.region_name
    import boto3  # type: ignore[import-untyped]  # lambda_client said if it is missing

    sdk = boto3.session.Session()
    known = {r for partition in sdk.get_available_partitions()
             for r in sdk.get_available_regions("lambda", partition)}
    if region not in known:
        raise UsageError(f"region {region!r} is not a region AWS Lambda runs in (or is newer "
                         "than this botocore: upgrade boto3)")


def lambda_client(target: LambdaTarget, timeout: float, pool: int) -> Any:
    """boto3's `lambda` client for `target`; UsageError when boto3 is missing or no region is
    known. It makes one attempt per call: the worker retries, with its own backoff."""
    with requires_extra("aws", "invoking AWS Lambda"):
        import boto3
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import NoRegionError  # type: ignore[import-untyped]
    config = Config(retries={"total_max_attempts": 1}, read_timeout=timeout,
                    connect_timeout=_CONNECT_TIMEOUT, max_pool_connections=pool)
    try:  # a session of its own: boto3's default one may not be shared between threads
        return boto3.session.Session().client("lambda", region_name=target.region,
                                              config=config)
    except NoRegionError:
        raise UsageError(f"{target}: no AWS region; give --region, a function ARN, or set "
                         "AWS_DEFAULT_REGION") from None


class LambdaFunction:
    """Invokes a function through Lambda's Invoke API (RequestResponse), signed by boto3.

    Only the function's own answer counts: a `FunctionError` (it raised, ran out of time or
    memory), a throttle, a refused or failed request and a timeout raise `InvocationError`,
    which is retried, never fails the run."""

    def __init__(self, name: str, target: LambdaTarget, store: Store, timeout: float,
                 pool: int) -> None:
        self.name, self.target, self.store = name, target, store
        self.client = lambda_client(target, timeout, pool)
        self.threads = ThreadPoolExecutor(pool, thread_name_prefix=f"lambda-{name}")

    async def handler(self, inv: Invocation, checkpointer: Checkpointer) -> InvocationOutput:
        envelope = await self.store.awrite(
            lambda tx: dataplane.open_invocation(tx, inv.run_id, inv.token))
        loop = asyncio.get_running_loop()
        response, payload = await loop.run_in_executor(self.threads, self._invoke,
                                                       json.dumps(envelope).encode())
        if response.get("FunctionError"):
            raise self._failed("Function.Error", f"{response['FunctionError']} error, no "
                               f"invocation output: {_lambda_error(payload)}")
        if response.get("StatusCode") != 200:
            raise self._failed("Function.Error", f"Invoke answered {response.get('StatusCode')}")
        try:
            answer = json.loads(payload)
        except ValueError:
            answer = None
        return output_from_wire(answer)

    def _invoke(self, body: bytes) -> tuple[dict[str, Any], bytes]:
        """One Invoke, on a pool thread; botocore's failures become `InvocationError`s."""
        from botocore import exceptions as aws  # type: ignore[import-untyped]
        qualifier = {"Qualifier": self.target.qualifier} if self.target.qualifier else {}
        try:
            response: dict[str, Any] = self.client.invoke(
                FunctionName=self.target.function, InvocationType="RequestResponse",
                Payload=body, **qualifier)
            return response, response["Payload"].read()
        except aws.ClientError as e:
            error, meta = e.response.get("Error", {}), e.response.get("ResponseMetadata", {})
            status, code = meta.get("HTTPStatusCode"), error.get("Code", "")
            kind = ("Function.Throttled" if status == 429 or code == "TooManyRequestsException"
                    else "Function.Error")
            raise self._failed(kind, f"Invoke refused (HTTP {status}) {code}: "
                               f"{error.get('Message', '')}"[:600]) from None
        except aws.ReadTimeoutError as e:
            raise self._failed("Function.TimedOut", f"no answer in time: {e}") from None
        except (aws.ConnectionError, aws.HTTPClientError) as e:  # incl. closed without answer
            raise self._failed("Function.Unreachable", f"could not invoke it: {e}") from None
        except aws.NoCredentialsError:
            raise self._failed("Function.Misconfigured", "no AWS credentials: set them as "
                               "for any AWS SDK (AWS_PROFILE, AWS_ACCESS_KEY_ID, a role)"
                               ) from None
        except aws.BotoCoreError as e:
            raise self._failed("Function.Error", f"{type(e).__name__}: {e}") from None

    def _failed(self, kind: str, what: str) -> InvocationError:
        return InvocationError(ErrorObject(kind, f"function {self.name!r} ({self.target}): "
                                                 f"{what}"))


def _lambda_error(payload: bytes) -> str:
    """`errorType: errorMessage` from Lambda's error payload, else the payload's start."""
    try:
        doc = json.loads(payload)
        return f"{doc['errorType']}: {doc['errorMessage']}"[:600]
    except (ValueError, KeyError, TypeError):
        return payload[:600].decode(errors="replace")
