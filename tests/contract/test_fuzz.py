"""Property-based contract test of the REST API against its OpenAPI document (schemathesis).

Every operation of generated/openapi.json is called on the live test server with data that fits the schema
(positive) and with data that violates it (negative). The API must never answer 5xx, every 4xx must carry the
Hyphen error body (`{"error": str, "message": str}`, README "Conventions"), and schema-violating input must be
rejected with a 4xx.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import negative_data_rejection

from tests.conftest import ServerInfo

OPENAPI = Path(__file__).resolve().parents[2] / "generated" / "openapi.json"
# HYPHAE_FUZZ_EXAMPLES=N: a longer, randomized hunt (by hand); CI runs the same 25 examples per operation every time.
_EXAMPLES = os.environ.get("HYPHAE_FUZZ_EXAMPLES", "")
FUZZ_SETTINGS = settings(
    max_examples=int(_EXAMPLES or 25),
    derandomize=not _EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)


def _schema(mode: GenerationMode) -> schemathesis.BaseSchema:
    # Streams never end on their own (the org's live feed), so a fuzzer reading whole bodies would hang on them;
    # tests/server/test_run_events.py covers them.
    schema = schemathesis.openapi.from_path(OPENAPI).exclude(path="/events").exclude(path="/runs/{run_id}/events")
    schema.config.generation.update(modes=[mode], with_security_parameters=False)
    return schema


positive = _schema(GenerationMode.POSITIVE)
negative = _schema(GenerationMode.NEGATIVE)


def hyphen_error_body(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Any 4xx is JSON with string `error` and `message` (and, if present, a string `code`)."""
    if not 400 <= response.status_code < 500:
        return None
    if response.content == b"Invalid HTTP request received.":
        return None  # not HTTP at all (e.g. an empty Transfer-Encoding): uvicorn refuses it before the app runs
    request = f"{case.method.upper()} {case.formatted_path} -> {response.status_code}"
    media_type = response.headers.get("content-type", [""])[0]
    assert media_type.startswith("application/json"), f"{request}: error media type is {media_type!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        raise AssertionError(f"{request}: error body is not JSON: {response.content[:200]!r}") from None
    assert isinstance(body, dict), f"{request}: error body is not an object: {body!r}"
    for key in ("error", "message"):
        assert isinstance(body.get(key), str), f"{request}: error body lacks string {key!r}: {body!r}"
    assert isinstance(body.get("code", ""), str), f"{request}: error `code` is not a string: {body!r}"
    return None


def _call(case: Case[Any], server: ServerInfo, org: str, *, rejects_invalid: bool) -> None:
    checks: list[CheckFunction] = [not_a_server_error, hyphen_error_body]
    if rejects_invalid:
        checks.append(negative_data_rejection)
    case.call_and_validate(base_url=server.http_url, headers={"X-Org-Id": org}, checks=checks, timeout=30)


@positive.parametrize()
@FUZZ_SETTINGS
def test_valid_requests_never_answer_5xx(case: Case[Any], server: ServerInfo, org: str) -> None:
    _call(case, server, org, rejects_invalid=False)


@negative.parametrize()
@FUZZ_SETTINGS
def test_invalid_requests_answer_4xx(case: Case[Any], server: ServerInfo, org: str) -> None:
    # A multipart form cannot say every schema violation: an array-typed field is sent as one part per element, so
    # an empty array is no part at all and the "invalid" form is a valid one. Uploads still must never answer 5xx
    # and must answer the error shape; their refusals are tested in tests/server/test_documents.py.
    _call(case, server, org, rejects_invalid=case.media_type != "multipart/form-data")
