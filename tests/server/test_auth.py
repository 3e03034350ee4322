"""Credentials, key scopes, tenancy and rate limits, end to end over REST against the strict (gateway-mode) server.

Every account here comes from a real `POST /gateway/signup`; keys come from `POST /gateway/orgs/{org}/keys`.
Publishable (pk_live_) keys cannot be created through REST yet, so only their rejection is covered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import ServerInfo

ERROR_KEYS = {"error", "message", "code"}


@dataclass(frozen=True)
class Tenant:
    """An account made by signup: its management token, first org and that org's full key."""

    account_id: str
    email: str
    org_id: str
    management_token: str
    key: str
    key_id: str


@pytest.fixture
def http(strict_server: ServerInfo) -> Iterator[httpx.Client]:
    """A bare client of the strict server: every request brings its own credentials."""
    with httpx.Client(base_url=strict_server.http_url, timeout=30) as client:
        yield client


def unique_email() -> str:
    return f"ops-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def workflow_body(name: str | None = None) -> dict[str, Any]:
    return {
        "name": name or f"wf-{uuid.uuid4().hex[:12]}",
        "definition": {"actions": [{"type": "PbotApproval", "properties": {"comment": "ok?"}}]},
    }


def assert_error(response: httpx.Response, status: int, title: str, fragment: str) -> None:
    """The Hyphen error body: {"error": <title>, "message": <text>} (plus an optional machine `code`)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) <= ERROR_KEYS and {"error", "message"} <= set(body), body
    assert body["error"] == title
    assert isinstance(body["message"], str)
    assert fragment in body["message"], body["message"]


def signup(http: httpx.Client, email: str | None = None) -> Tenant:
    email = email or unique_email()
    response = http.post("/gateway/signup", json={"email": email, "name": "Acme Ops"})
    assert response.status_code == 201, response.text
    body = response.json()
    return Tenant(
        account_id=body["account"]["id"],
        email=email,
        org_id=body["org"]["id"],
        management_token=body["management_token"],
        key=body["api_key"]["key"],
        key_id=body["api_key"]["id"],
    )


def create_key(http: httpx.Client, tenant: Tenant, permissions: str, label: str = "ci") -> dict[str, Any]:
    response = http.post(
        f"/gateway/orgs/{tenant.org_id}/keys",
        headers=bearer(tenant.management_token),
        json={"label": label, "permissions": permissions},
    )
    assert response.status_code == 201, response.text
    key: dict[str, Any] = response.json()
    return key


@pytest.fixture
def tenant(http: httpx.Client) -> Tenant:
    return signup(http)


@pytest.fixture
def other_tenant(http: httpx.Client) -> Tenant:
    return signup(http)


# --- signup and account ----------------------------------------------------------------------------------------


def test_signup_returns_management_token_full_key_and_org(http: httpx.Client) -> None:
    email = unique_email()
    response = http.post("/gateway/signup", json={"email": email, "name": "Acme Ops"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["management_token"].startswith("mt-hyp-")
    assert body["account"]["email"] == email
    assert body["account"]["name"] == "Acme Ops"
    assert body["account"]["id"]
    assert body["org"]["id"]
    key = body["api_key"]
    assert key["key"].startswith("sk-hyp-")
    assert key["key"].startswith(key["prefix"])
    assert key["permissions"] == "full"
    assert key["kind"] == "secret"
    assert key["org_id"] == body["org"]["id"]


def test_signup_key_works_on_tenant_routes_at_once(http: httpx.Client, tenant: Tenant) -> None:
    response = http.get("/workflows", headers=bearer(tenant.key))
    assert response.status_code == 200, response.text
    assert response.json()["workflows"] == []


def test_signup_with_taken_email_is_conflict(http: httpx.Client, tenant: Tenant) -> None:
    response = http.post("/gateway/signup", json={"email": tenant.email, "name": "Copycat"})
    assert_error(response, 409, "Conflict", tenant.email)


def test_signup_email_is_unique_regardless_of_case(http: httpx.Client, tenant: Tenant) -> None:
    response = http.post("/gateway/signup", json={"email": tenant.email.upper(), "name": "Copycat"})
    assert_error(response, 409, "Conflict", "already exists")


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two words@example.com"])
def test_signup_rejects_malformed_email(http: httpx.Client, email: str) -> None:
    response = http.post("/gateway/signup", json={"email": email, "name": "Acme Ops"})
    assert_error(response, 400, "Bad Request", "email")


def test_signup_without_email_names_the_field(http: httpx.Client) -> None:
    response = http.post("/gateway/signup", json={"name": "Acme Ops"})
    assert_error(response, 400, "Bad Request", "email")


def test_account_with_management_token_shows_account_and_orgs(http: httpx.Client, tenant: Tenant) -> None:
    response = http.get("/gateway/account", headers=bearer(tenant.management_token))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account"]["id"] == tenant.account_id
    assert body["account"]["email"] == tenant.email
    assert [org["id"] for org in body["orgs"]] == [tenant.org_id]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "mt-hyp-"),
        ({"Authorization": "Bearer mt-hyp-nope"}, "invalid or revoked"),
        ({"Authorization": "Basic x"}, "Bearer"),
    ],
    ids=["no-token", "unknown-token", "basic-scheme"],
)
def test_account_without_valid_management_token_is_unauthorized(
    http: httpx.Client, headers: dict[str, str], fragment: str
) -> None:
    assert_error(http.get("/gateway/account", headers=headers), 401, "Unauthorized", fragment)


def test_account_with_api_key_is_forbidden(http: httpx.Client, tenant: Tenant) -> None:
    assert_error(http.get("/gateway/account", headers=bearer(tenant.key)), 403, "Forbidden", "mt-hyp-")


def test_account_with_unknown_api_key_is_unauthorized(http: httpx.Client) -> None:
    response = http.get("/gateway/account", headers=bearer("sk-hyp-nope"))
    assert_error(response, 401, "Unauthorized", "mt-hyp-")


def test_management_token_on_tenant_route_is_forbidden(http: httpx.Client, tenant: Tenant) -> None:
    response = http.get("/workflows", headers=bearer(tenant.management_token))
    assert_error(response, 403, "Forbidden", "sk-hyp-")


# --- key management --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("permissions", ["read_only", "execute_only", "full"])
def test_created_key_is_shown_once_with_its_scope(http: httpx.Client, tenant: Tenant, permissions: str) -> None:
    key = create_key(http, tenant, permissions, label=f"label-{permissions}")

    assert key["key"].startswith("sk-hyp-")
    assert key["key"].startswith(key["prefix"])
    assert key["permissions"] == permissions
    assert key["label"] == f"label-{permissions}"
    assert key["org_id"] == tenant.org_id
    assert key["kind"] == "secret"
    assert key["id"]


def test_key_without_permissions_is_full(http: httpx.Client, tenant: Tenant) -> None:
    response = http.post(
        f"/gateway/orgs/{tenant.org_id}/keys", headers=bearer(tenant.management_token), json={"label": "default-scope"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["permissions"] == "full"


def test_key_with_unknown_permissions_is_rejected(http: httpx.Client, tenant: Tenant) -> None:
    response = http.post(
        f"/gateway/orgs/{tenant.org_id}/keys",
        headers=bearer(tenant.management_token),
        json={"label": "x", "permissions": "admin"},
    )
    assert_error(response, 400, "Bad Request", "permissions")


def test_key_listing_never_includes_the_secret(http: httpx.Client, tenant: Tenant) -> None:
    created = create_key(http, tenant, "read_only")

    response = http.get(f"/gateway/orgs/{tenant.org_id}/keys", headers=bearer(tenant.management_token))

    assert response.status_code == 200, response.text
    keys = response.json()["api_keys"]
    assert {key["id"] for key in keys} == {tenant.key_id, created["id"]}
    for key in keys:
        assert "key" not in key
        assert key["prefix"].startswith("sk-hyp-")
    assert created["key"] not in response.text
    assert tenant.key not in response.text


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_keys_of_another_accounts_org_are_not_found(
    http: httpx.Client, tenant: Tenant, other_tenant: Tenant, method: str
) -> None:
    path = f"/gateway/orgs/{other_tenant.org_id}/keys"
    if method == "DELETE":
        path += f"/{other_tenant.key_id}"
    body = {"label": "intruder", "permissions": "full"} if method == "POST" else None
    response = http.request(method, path, headers=bearer(tenant.management_token), json=body)

    assert_error(response, 404, "Not Found", other_tenant.org_id)
    # the other org's key is untouched
    assert http.get("/workflows", headers=bearer(other_tenant.key)).status_code == 200


def test_key_routes_need_the_management_token(http: httpx.Client, tenant: Tenant) -> None:
    response = http.post(f"/gateway/orgs/{tenant.org_id}/keys", json={"label": "x", "permissions": "full"})
    assert_error(response, 401, "Unauthorized", "mt-hyp-")


# --- key scopes ------------------------------------------------------------------------------------------------


def test_read_only_key_reads_but_cannot_write(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "read_only")["key"]

    assert http.get("/workflows", headers=bearer(key)).status_code == 200
    assert http.get("/actions", headers=bearer(key)).status_code == 200
    response = http.post("/workflows", headers=bearer(key), json=workflow_body())
    assert_error(response, 403, "Forbidden", "read_only")
    assert http.get("/workflows", headers=bearer(tenant.key)).json()["workflows"] == []


def test_read_only_key_cannot_delete(http: httpx.Client, tenant: Tenant) -> None:
    created = http.post("/workflows", headers=bearer(tenant.key), json=workflow_body())
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    key = create_key(http, tenant, "read_only")["key"]

    assert_error(http.delete(f"/workflows/{workflow_id}", headers=bearer(key)), 403, "Forbidden", "read_only")
    assert http.get(f"/workflows/{workflow_id}", headers=bearer(key)).status_code == 200


def test_execute_only_key_reads_but_cannot_create_actions(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "execute_only")["key"]

    assert http.get("/actions", headers=bearer(key)).status_code == 200
    assert http.get("/workflows", headers=bearer(key)).status_code == 200
    action = {"action_name": "notify", "kind": "http", "url": "https://example.com/hook", "http_method": "POST"}
    response = http.post("/actions", headers=bearer(key), json=action)
    assert_error(response, 403, "Forbidden", "execute_only")


def test_full_key_can_write(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "full")["key"]
    response = http.post("/workflows", headers=bearer(key), json=workflow_body())
    assert response.status_code == 201, response.text


# --- credentials -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "missing credentials"),
        ({"Authorization": "Basic x"}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": "Bearer sk-hyp-nope"}, "invalid or revoked"),
        ({"Authorization": "Bearer pk_live_nope"}, "invalid or revoked"),
        ({"Authorization": "Bearer mt-hyp-nope"}, "invalid or revoked"),
        ({"Authorization": "Bearer not-a-key"}, "unrecognised key"),
        ({"X-Org-Id": "acme-corp"}, "X-Org-Id"),
    ],
    ids=[
        "none",
        "basic-scheme",
        "empty-bearer",
        "unknown-secret-key",
        "unknown-publishable-key",
        "unknown-management-token",
        "unrecognised-prefix",
        "org-header-alone",
    ],
)
def test_request_without_valid_credentials_is_unauthorized(
    http: httpx.Client, headers: dict[str, str], fragment: str
) -> None:
    response = http.get("/workflows", headers=headers)
    assert_error(response, 401, "Unauthorized", fragment)
    assert response.headers["x-request-id"]


def test_org_header_does_not_override_the_keys_org(http: httpx.Client, tenant: Tenant, other_tenant: Tenant) -> None:
    created = http.post("/workflows", headers=bearer(other_tenant.key), json=workflow_body())
    assert created.status_code == 201, created.text

    response = http.get("/workflows", headers={**bearer(tenant.key), "X-Org-Id": other_tenant.org_id})

    assert response.status_code == 200, response.text
    assert response.json()["workflows"] == []


def test_revoked_key_is_unauthorized_afterwards(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "full")
    assert http.get("/workflows", headers=bearer(key["key"])).status_code == 200

    revoked = http.delete(f"/gateway/orgs/{tenant.org_id}/keys/{key['id']}", headers=bearer(tenant.management_token))

    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"key_id": key["id"], "deleted": True}
    assert_error(http.get("/workflows", headers=bearer(key["key"])), 401, "Unauthorized", "invalid or revoked")
    listed = http.get(f"/gateway/orgs/{tenant.org_id}/keys", headers=bearer(tenant.management_token)).json()
    assert key["id"] not in {item["id"] for item in listed["api_keys"]}
    # the org's other key keeps working
    assert http.get("/workflows", headers=bearer(tenant.key)).status_code == 200


def test_revoking_a_key_twice_is_not_found(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "read_only")
    path = f"/gateway/orgs/{tenant.org_id}/keys/{key['id']}"
    assert http.delete(path, headers=bearer(tenant.management_token)).status_code == 200

    assert_error(http.delete(path, headers=bearer(tenant.management_token)), 404, "Not Found", key["id"])


# --- tenancy ---------------------------------------------------------------------------------------------------


def test_another_orgs_workflow_is_not_found_never_forbidden(
    http: httpx.Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    created = http.post("/workflows", headers=bearer(tenant.key), json=workflow_body())
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]
    intruder = bearer(other_tenant.key)

    assert_error(http.get(f"/workflows/{workflow_id}", headers=intruder), 404, "Not Found", workflow_id)
    assert_error(
        http.put(f"/workflows/{workflow_id}", headers=intruder, json=workflow_body()), 404, "Not Found", workflow_id
    )
    assert_error(http.delete(f"/workflows/{workflow_id}", headers=intruder), 404, "Not Found", workflow_id)
    listed = http.get("/workflows", headers=intruder)
    assert listed.status_code == 200
    assert workflow_id not in {item["id"] for item in listed.json()["workflows"]}

    # still there, unchanged, for its owner
    owned = http.get(f"/workflows/{workflow_id}", headers=bearer(tenant.key))
    assert owned.status_code == 200
    assert owned.json() == created.json()


def test_workflow_names_are_unique_per_org_only(http: httpx.Client, tenant: Tenant, other_tenant: Tenant) -> None:
    body = workflow_body()
    assert http.post("/workflows", headers=bearer(tenant.key), json=body).status_code == 201
    assert http.post("/workflows", headers=bearer(other_tenant.key), json=body).status_code == 201


# --- rate limit ------------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(http: httpx.Client, tenant: Tenant) -> None:
    key = create_key(http, tenant, "read_only")["key"]
    successes: list[httpx.Response] = []
    limited: httpx.Response | None = None
    for _ in range(40):
        response = http.get("/workflows", headers=bearer(key))
        if response.status_code == 429:
            limited = response
            break
        assert response.status_code == 200, response.text
        successes.append(response)

    assert limited is not None, "40 requests in a row never hit the 30/min limit"
    assert len(successes) >= 29  # the bucket starts full
    for response in successes:
        assert response.headers["ratelimit-limit"] == "30"
        assert int(response.headers["ratelimit-remaining"]) >= 0
    assert int(successes[-1].headers["ratelimit-remaining"]) < int(successes[0].headers["ratelimit-remaining"])
    assert_error(limited, 429, "Too Many Requests", "rate limit")
    retry_after = limited.headers["retry-after"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert limited.headers["ratelimit-limit"] == "30"
    assert limited.headers["ratelimit-remaining"] == "0"

    # budgets are per key: the org's other key is unaffected
    assert http.get("/workflows", headers=bearer(tenant.key)).status_code == 200
