"""A property-based fuzz of the control API from its own OpenAPI schema (schemathesis): for
every operation, generated requests, both fitting the schema and not, never get a 5xx, and
every response matches what the schema documents (status code, content type, body). Bounded
(a few examples per operation and mode) so the whole fuzz takes seconds.

Not checked: that every schema-valid request is accepted. The schema cannot say which steps a
run has or what input each workflow takes, so e.g. a rerun from a step the run never had is a
documented 400 even though its body fits the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from tests.serverkit import Server

TOKEN = "fuzz-token-for-the-fuzz"
EXAMPLES = 8
OURS = ("/api/", "/hooks/")
"""The control API and webhooks; other routers (the AWS contract) are tested by their owners."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("fuzz"), TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def schema(server: Server) -> schemathesis.BaseSchema:
    raw = httpx.get(f"{server.url}/openapi.json", headers=server.headers).json()
    return schemathesis.openapi.from_dict(raw)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_never_errors_and_matches_its_schema(schema: schemathesis.BaseSchema,
                                                 server: Server, mode: GenerationMode) -> None:
    operations = [op for result in schema.get_all_operations()
                  if (op := result.ok()).path.startswith(OURS)]  # type: ignore[union-attr]
    assert len(operations) >= 12
    fuzzed = 0
    for operation in operations:
        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(base_url=server.url, headers=server.headers, timeout=30,
                                   excluded_checks=[positive_data_acceptance])
        try:
            check()
            fuzzed += 1
        except Unsatisfiable:  # nothing in it can be made invalid, e.g. no parameters at all
            assert mode is GenerationMode.NEGATIVE, operation.label
    assert fuzzed >= len(operations) // 2
