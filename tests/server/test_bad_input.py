"""Bad input over REST: every malformed request gets a 4xx in the Hyphen error shape, naming what is wrong.

One table, one test. Each case runs for a fresh org that already holds a workflow named `taken-name`;
`{org}` in headers is that org, `{foreign_workflow}` in a path is a workflow of another org.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
}
AS_ORG = {"X-Org-Id": "{org}", "Content-Type": "application/json"}
TAKEN_NAME = "taken-name"
MAX_BODY_BYTES = 4 * 1024 * 1024  # conftest.make_settings


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _approval(comment: str = "ok?") -> dict[str, Any]:
    return {"type": "PbotApproval", "properties": {"comment": comment}}


def _workflow(*actions: dict[str, Any], name: str = "wf-new") -> bytes:
    return _json({"name": name, "definition": {"actions": list(actions) or [_approval()]}})


HTTP_ACTION = {"action_name": "notify", "kind": "http", "url": "https://example.com/hook", "http_method": "POST"}


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    fragment: str  # expected inside `message`
    extra: dict[str, str | bytes] = field(default_factory=dict)  # further headers, sent as they are


CASES = [
    # --- JSON text
    Case("malformed-json", "POST", "/workflows", AS_ORG, b'{"name": "wf", ', 400, "not valid JSON"),
    Case("trailing-garbage", "POST", "/workflows", AS_ORG, _workflow() + b"}", 400, "not valid JSON"),
    Case("json-array-body", "POST", "/workflows", AS_ORG, b'[{"name": "wf"}]', 400, "must be a JSON object"),
    Case("json-string-body", "POST", "/workflows", AS_ORG, b'"wf"', 400, "must be a JSON object"),
    Case(
        "duplicate-json-keys",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "a", "name": "b", "definition": {"actions": []}}',
        400,
        "duplicate key 'name'",
    ),
    Case(
        "duplicate-keys-nested",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "a", "definition": {"actions": [], "actions": []}}',
        400,
        "duplicate key 'actions'",
    ),
    Case(
        "nan-literal",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "a", "definition": {"actions": [], "metadata": {"x": NaN}}}',
        400,
        "NaN is not valid JSON",
    ),
    Case(
        "infinity-literal",
        "POST",
        "/actions",
        AS_ORG,
        b'{"action_name": "a", "kind": "llm", "template": "t", "temperature": -Infinity}',
        400,
        "-Infinity is not valid JSON",
    ),
    Case(
        "field-path-with-control-characters-and-unicode",  # the path travels in a gRPC trailer (ASCII only)
        "POST",
        "/actions",
        AS_ORG,
        _json(
            {
                "action_name": "a",
                "kind": "http",
                "url": "https://x.y",
                "http_method": "GET",
                "headers": {"ké\u0000y": "v"},
            }
        ),
        400,
        "headers.ké\u0000y: must not contain NUL characters",
    ),
    # --- numbers that are expensive or impossible to convert (int() is quadratic, > 4300 digits refused)
    Case(
        "huge-integer-literal",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "wf", "definition": {"actions": [], "metadata": {"n": ' + b"9" * 5000 + b"}}}",
        400,
        "definition.metadata.n: integer literal has more than 4300 digits",
    ),
    Case(
        "huge-exponent-for-an-int",
        "POST",
        "/actions",
        AS_ORG,
        b'{"action_name": "a", "kind": "http", "url": "https://x.y", "http_method": "GET", "timeout_ms": 1e700000}',
        400,
        "timeout_ms: must be between -2147483648 and 2147483647",
    ),
    Case(
        "signaling-nan-for-a-double",
        "POST",
        "/actions",
        AS_ORG,
        _json({"action_name": "a", "kind": "llm", "template": "t", "temperature": "sNaN"}),
        400,
        "temperature: must be a finite number",
    ),
    Case(
        "huge-integer-in-query",
        "GET",
        "/workflows?page_size=" + "9" * 5000,
        AS_ORG,
        b"",
        400,
        "page_size: must be between -2147483648 and 2147483647",
    ),
    Case(
        "dsl-schedule-every-huge-number",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": {"actions": [_approval()], "schedule": {"every": "9" * 5000 + "m"}}}),
        400,
        "definition.schedule.every: 'every' must look like",
    ),
    Case(  # str.isdigit() is true for "²", which int() refuses: every digit check is ASCII-only
        "dsl-schedule-cron-superscript-digit",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": {"actions": [_approval()], "schedule": {"cron": "² * * * *"}}}),
        400,
        "invalid cron field '²'",
    ),
    Case(
        "approval-step-superscript-digit",
        "POST",
        "/approvals/run-x/²",
        AS_ORG,
        _json({"approved": True}),
        400,
        "step_id: must be the step's index",
    ),
    Case(
        "dsl-regex-nested-too-deeply",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow({**_approval(), "filter": {"condition": {"matches": ["@input.x", "(" * 3000]}}}),
        400,
        "definition.actions[0].filter.condition.matches[1]: the regex of 'matches' is too long",
    ),
    Case("invalid-utf8", "POST", "/workflows", AS_ORG, b'{"name": "\xff\xfe"}', 400, "not valid UTF-8"),
    Case("nesting-too-deep", "POST", "/workflows", AS_ORG, b"[" * 200_000 + b"]" * 200_000, 400, "nests too deeply"),
    Case(
        "body-too-large",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "' + b"x" * (10 * 1024 * 1024) + b'"}',
        413,
        f"exceeds {MAX_BODY_BYTES} bytes",
    ),
    # --- wrong types, unknown fields, enums
    Case(
        "name-not-a-string",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": 5, "definition": {"actions": []}}),
        400,
        "name: must be a string",
    ),
    Case(
        "definition-not-an-object",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": "x"}),
        400,
        "definition: the definition must be an object",
    ),
    Case(
        "definition-array",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": [_approval()]}),
        400,
        "definition: the definition must be an object",
    ),
    Case(
        "unknown-top-level-field",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": {"actions": [_approval()]}, "owner": "me"}),
        400,
        "owner: unknown field",
    ),
    Case(
        "unknown-action-field",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "retries": 3}),
        400,
        "retries: unknown field",
    ),
    Case(
        "unknown-step-field",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow({**_approval(), "retries": 3}),
        400,
        "definition.actions[0].retries: unknown step key 'retries'",
    ),
    Case(
        "unknown-definition-key",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": {"actions": [], "steps": []}}),
        400,
        "definition.steps: unknown definition key 'steps'",
    ),
    Case(
        "invalid-enum",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "kind": "ftp"}),
        400,
        "kind: invalid value 'ftp'; expected one of http, llm, db, matcher, custom-table",
    ),
    Case(
        "enum-of-wrong-type",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "kind": True}),
        400,
        "kind: invalid value True",
    ),
    Case(
        "bool-of-wrong-type",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "passthrough": "yes"}),
        400,
        "passthrough: must be true or false",
    ),
    Case(
        "int-with-fraction",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "timeout_ms": 1.5}),
        400,
        "timeout_ms: must be an integer",
    ),
    Case(
        "int32-overflow-in-body",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "timeout_ms": 2**31}),
        400,
        "timeout_ms: must be between -2147483648 and 2147483647",
    ),
    Case(
        "map-value-of-wrong-type",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "headers": {"X-A": 1}}),
        400,
        "headers.X-A: must be a string",
    ),
    Case(
        "repeated-not-an-array",
        "POST",
        "/actions",
        AS_ORG,
        _json({"action_name": "m", "kind": "matcher", "matchOn": "id"}),
        400,
        "matchOn: must be a JSON array",
    ),
    Case(
        "action-domain-check",
        "POST",
        "/actions",
        AS_ORG,
        _json({**HTTP_ACTION, "url": "ftp://example.com"}),
        400,
        "url: must be an absolute http:// or https:// URL",
    ),
    # --- required fields
    Case(
        "missing-name",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"definition": {"actions": [_approval()]}}),
        400,
        "name: is required",
    ),
    Case(
        "null-name",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": None, "definition": {"actions": []}}),
        400,
        "name: is required",
    ),
    Case("blank-name", "POST", "/workflows", AS_ORG, _workflow(name="   "), 400, "name: must be 1-200 characters"),
    Case("missing-definition", "POST", "/workflows", AS_ORG, _json({"name": "wf"}), 400, "definition: is required"),
    Case("empty-body", "POST", "/workflows", AS_ORG, b"", 400, "workflow: is required"),
    Case("missing-action-kind", "POST", "/actions", AS_ORG, _json({"action_name": "a"}), 400, "kind: is required"),
    # --- DSL errors name the path inside the definition
    Case(
        "dsl-unknown-step-type",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow({"type": "Teleport"}),
        400,
        "definition.actions[0].type: unknown step type 'Teleport'",
    ),
    Case(
        "dsl-bad-filter-operator",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow(_approval(), {**_approval(), "filter": {"condition": {"equals": ["@input.x", 1]}}}),
        400,
        "definition.actions[1].filter.condition: unknown operator 'equals'",
    ),
    Case(
        "dsl-malformed-reference",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow(_approval("@input..x")),
        400,
        "definition.actions[0].properties.comment: malformed reference '@input..x'",
    ),
    Case(
        "dsl-missing-required-property",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow({"type": "PbotApproval", "properties": {}}),
        400,
        "definition.actions[0].properties.comment: missing required property 'comment'",
    ),
    Case(
        "dsl-missing-actions",
        "POST",
        "/workflows",
        AS_ORG,
        _json({"name": "wf", "definition": {}}),
        400,
        "definition.actions: missing required 'actions'",
    ),
    # --- query parameters
    Case(
        "int32-overflow-in-query",
        "GET",
        "/workflows?page_size=99999999999",
        AS_ORG,
        b"",
        400,
        "page_size: must be between -2147483648 and 2147483647",
    ),
    Case("negative-page-size", "GET", "/workflows?page_size=-1", AS_ORG, b"", 400, "page_size: must not be negative"),
    Case("negative-offset", "GET", "/workflows?offset=-5", AS_ORG, b"", 400, "offset: must not be negative"),
    Case("non-numeric-page-size", "GET", "/workflows?page_size=ten", AS_ORG, b"", 400, "page_size: must be an integer"),
    Case(
        "page-size-given-twice",
        "GET",
        "/workflows?page_size=1&page_size=2",
        AS_ORG,
        b"",
        400,
        "page_size: given more than once",
    ),
    Case(
        "bad-page-token",
        "GET",
        "/workflows?page_token=not-a-token",
        AS_ORG,
        b"",
        400,
        "page_token: is not a token this server issued",
    ),
    Case(
        "page-token-json-not-object",
        "GET",
        "/workflows?page_token=WzFd",
        AS_ORG,
        b"",
        400,  # "[1]"
        "page_token: is not a token this server issued",
    ),
    Case("unknown-query-param", "GET", "/workflows?colour=red", AS_ORG, b"", 400, "colour: unknown query parameter"),
    Case(
        "invalid-enum-in-query",
        "GET",
        "/actions?kind=ftp",
        AS_ORG,
        b"",
        400,
        "kind: invalid value 'ftp'; expected one of http, llm, db, matcher, custom-table",
    ),
    # --- auth and tenancy
    Case("missing-org-header", "GET", "/workflows", {}, b"", 401, "missing credentials"),
    Case("basic-auth", "GET", "/workflows", {}, b"", 401, "Bearer", extra={"Authorization": "Basic x"}),
    Case("malformed-org-header", "GET", "/workflows", {}, b"", 400, "X-Org-Id", extra={"X-Org-Id": "not an org!"}),
    Case("foreign-workflow-get", "GET", "/workflows/{foreign_workflow}", AS_ORG, b"", 404, "not found"),
    Case("foreign-workflow-put", "PUT", "/workflows/{foreign_workflow}", AS_ORG, _workflow(), 404, "not found"),
    Case(
        "foreign-workflow-put-invalid-body",
        "PUT",
        "/workflows/{foreign_workflow}",
        AS_ORG,
        _workflow({"type": "Teleport"}),
        404,
        "not found",
    ),
    Case("foreign-workflow-delete", "DELETE", "/workflows/{foreign_workflow}", AS_ORG, b"", 404, "not found"),
    Case(
        "unknown-workflow-id",
        "GET",
        "/workflows/wfl-does-not-exist",
        AS_ORG,
        b"",
        404,
        "workflow 'wfl-does-not-exist' not found",
    ),
    # --- routing
    Case("unknown-route", "GET", "/no-such-thing", AS_ORG, b"", 404, "no route for GET /no-such-thing"),
    Case("wrong-method-on-collection", "PATCH", "/workflows", AS_ORG, b"{}", 405, "PATCH is not allowed on /workflows"),
    Case(
        "wrong-method-on-item",
        "POST",
        "/workflows/wfl-x",
        AS_ORG,
        b"{}",
        405,
        "POST is not allowed on /workflows/wfl-x",
    ),
    # --- input the engine cannot store or carry
    Case("nul-in-body-string", "POST", "/workflows", AS_ORG, _workflow(name="a\u0000b"), 400, "name:"),
    Case("nul-in-path-variable", "GET", "/workflows/wfl-a%00b", AS_ORG, b"", 400, "id:"),
    Case("nul-in-query-filter", "GET", "/workflows?name=a%00b", AS_ORG, b"", 400, "name:"),
    Case(
        "lone-surrogate-in-string",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "a\\ud800b", "definition": {"actions": []}}',
        400,
        "name:",
    ),
    Case(
        "lone-surrogate-in-definition",
        "POST",
        "/workflows",
        AS_ORG,
        b'{"name": "wf", "definition": {"actions": [], "metadata": "\\ud800"}}',
        400,
        "definition",
    ),
    Case(
        "non-ascii-org-header",
        "GET",
        "/workflows",
        {},
        b"",
        400,
        "X-Org-Id",
        extra={"X-Org-Id": "org-\u00e9t\u00e9".encode()},
    ),
    Case(
        "control-char-in-idempotency-key",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow(),
        400,
        "Idempotency-Key",
        extra={"Idempotency-Key": "a\tb"},
    ),
    Case(
        "oversized-idempotency-key",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow(),
        400,
        "Idempotency-Key",
        extra={"Idempotency-Key": "k" * 20_000},
    ),
    # --- conflicts
    Case(
        "duplicate-workflow-name",
        "POST",
        "/workflows",
        AS_ORG,
        _workflow(name=TAKEN_NAME),
        409,
        f"a workflow named '{TAKEN_NAME}' already exists",
    ),
]


def _create_workflow(client: httpx.Client, org: str, name: str) -> str:
    response = client.post("/workflows", headers={"X-Org-Id": org}, content=_workflow(name=name))
    assert response.status_code == 201, response.text
    workflow_id: str = response.json()["id"]
    return workflow_id


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


PARAMS = [pytest.param(case, id=case.id) for case in CASES]


@pytest.mark.parametrize("case", PARAMS)
def test_bad_input_is_a_4xx_naming_the_problem(anonymous: httpx.Client, org: str, case: Case) -> None:
    _create_workflow(anonymous, org, TAKEN_NAME)
    path = case.path
    if "{foreign_workflow}" in path:
        foreign = _create_workflow(anonymous, f"test-{uuid.uuid4().hex[:12]}", f"wf-{uuid.uuid4().hex[:8]}")
        path = path.replace("{foreign_workflow}", foreign)
    headers = [(name.encode(), value.replace("{org}", org).encode()) for name, value in case.headers.items()]
    headers += [(name.encode(), _bytes(value)) for name, value in case.extra.items()]

    response = anonymous.request(case.method, path, headers=headers, content=case.body)

    assert response.status_code < 500, response.text
    assert response.status_code == case.status, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert {"error", "message"} <= set(body) <= {"error", "message", "code"}, body
    assert body["error"] == TITLES[case.status]
    assert case.fragment in body["message"], body["message"]
    assert response.headers["x-request-id"]
    # nothing was created along the way: the org still holds only its `taken-name` workflow
    listed = anonymous.get("/workflows", headers={"X-Org-Id": org})
    assert [item["name"] for item in listed.json()["workflows"]] == [TAKEN_NAME]
