"""Idempotency-Key: a retried write answers the stored result, a reused key with another request is refused,
a failed call leaves the key free, and keys are namespaced per org. The in-flight case (409) is covered at the
store level, where it can be provoked without racing two HTTP calls."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store import idempotency
from server.store.db import connect, create_engine
from tests.conftest import ServerInfo

ERROR_KEYS = {"error", "message", "code"}
T = TypeVar("T")
METHOD = "/hyphae.workflows.v1.WorkflowService/CreateWorkflow"


def workflow_body(name: str | None = None, comment: str = "ok?") -> dict[str, Any]:
    return {
        "name": name or f"wf-{uuid.uuid4().hex[:12]}",
        "definition": {"actions": [{"type": "PbotApproval", "properties": {"comment": comment}}]},
    }


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def assert_error(response: httpx.Response, status: int, title: str, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert set(body) <= ERROR_KEYS and {"error", "message"} <= set(body), body
    assert body["error"] == title
    assert fragment in body["message"], body["message"]


def workflow_ids(client: httpx.Client) -> list[str]:
    response = client.get("/workflows")
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["workflows"]]


def post(client: httpx.Client, key: str, body: dict[str, Any]) -> httpx.Response:
    return client.post("/workflows", json=body, headers={"Idempotency-Key": key})


@pytest.fixture
def other_api(server: ServerInfo) -> Iterator[httpx.Client]:
    """REST client acting for a second fresh org."""
    with httpx.Client(
        base_url=server.http_url, headers={"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"}, timeout=30
    ) as client:
        yield client


# --- over REST -------------------------------------------------------------------------------------------------


def test_retry_with_same_key_and_body_answers_the_stored_result(api: httpx.Client) -> None:
    key, body = new_key(), workflow_body()

    first = post(api, key, body)
    second = post(api, key, body)

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    assert workflow_ids(api) == [first.json()["id"]]


def test_retry_answers_the_stored_result_even_after_the_resource_changed(api: httpx.Client) -> None:
    key, body = new_key(), workflow_body()
    first = post(api, key, body)
    assert first.status_code == 201, first.text
    workflow_id = first.json()["id"]
    updated = api.put(f"/workflows/{workflow_id}", json=workflow_body(body["name"], comment="changed"))
    assert updated.status_code == 200, updated.text

    replay = post(api, key, body)

    assert replay.status_code == 201, replay.text
    assert replay.json() == first.json()
    assert workflow_ids(api) == [workflow_id]


def test_same_key_with_another_body_is_unprocessable(api: httpx.Client) -> None:
    key = new_key()
    first = post(api, key, workflow_body())
    assert first.status_code == 201, first.text

    reused = post(api, key, workflow_body())

    assert_error(reused, 422, "Unprocessable Entity", "Idempotency-Key")
    assert "different request" in reused.json()["message"]
    assert reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert workflow_ids(api) == [first.json()["id"]]


def test_same_key_on_another_method_is_unprocessable(api: httpx.Client) -> None:
    key = new_key()
    created = post(api, key, workflow_body())
    assert created.status_code == 201, created.text

    action = api.post(
        "/actions", json={"action_name": "other", "kind": "custom-table"}, headers={"Idempotency-Key": key}
    )

    assert_error(action, 422, "Unprocessable Entity", "Idempotency-Key")
    assert api.get("/actions").json()["actions"] == []


def test_idempotency_key_on_a_read_or_delete_is_ignored(api: httpx.Client) -> None:
    key = new_key()
    created = post(api, key, workflow_body())
    assert api.get("/health", headers={"Idempotency-Key": key}).status_code == 200
    assert api.get("/health/ready", headers={"Idempotency-Key": key}).status_code == 200
    deleted = api.delete(f"/workflows/{created.json()['id']}", headers={"Idempotency-Key": key})
    assert deleted.status_code == 200
    assert workflow_ids(api) == []


def test_another_key_creates_another_resource(api: httpx.Client) -> None:
    first = post(api, new_key(), workflow_body())
    second = post(api, new_key(), workflow_body())

    assert first.status_code == 201, first.text
    assert second.status_code == 201, second.text
    assert first.json()["id"] != second.json()["id"]
    assert sorted(workflow_ids(api)) == sorted([first.json()["id"], second.json()["id"]])


def test_another_key_with_the_same_name_is_a_conflict_not_a_replay(api: httpx.Client) -> None:
    body = workflow_body()
    assert post(api, new_key(), body).status_code == 201

    assert_error(post(api, new_key(), body), 409, "Conflict", body["name"])


def test_failed_first_call_does_not_burn_the_key(api: httpx.Client) -> None:
    key = new_key()
    invalid = workflow_body()
    invalid["definition"]["actions"][0]["type"] = "Teleport"

    failed = post(api, key, invalid)
    assert_error(failed, 400, "Bad Request", "definition.actions[0].type")

    retried = post(api, key, workflow_body())
    assert retried.status_code == 201, retried.text
    assert workflow_ids(api) == [retried.json()["id"]]
    # and from now on the key is bound to the successful request
    assert post(api, key, workflow_body()).status_code == 422


def test_conflicting_first_call_does_not_burn_the_key(api: httpx.Client) -> None:
    taken = workflow_body()
    assert post(api, new_key(), taken).status_code == 201
    key = new_key()

    assert post(api, key, taken).status_code == 409
    retried = post(api, key, workflow_body())

    assert retried.status_code == 201, retried.text


def test_keys_are_per_org(api: httpx.Client, other_api: httpx.Client) -> None:
    key = new_key()
    mine = post(api, key, workflow_body())
    theirs = post(other_api, key, workflow_body())

    assert mine.status_code == 201, mine.text
    assert theirs.status_code == 201, theirs.text
    assert mine.json()["id"] != theirs.json()["id"]
    assert workflow_ids(api) == [mine.json()["id"]]
    assert workflow_ids(other_api) == [theirs.json()["id"]]


def test_same_key_and_body_in_another_org_is_not_a_replay(api: httpx.Client, other_api: httpx.Client) -> None:
    key, body = new_key(), workflow_body()
    mine = post(api, key, body)
    theirs = post(other_api, key, body)

    assert mine.status_code == 201 and theirs.status_code == 201
    assert theirs.json()["id"] != mine.json()["id"]
    assert workflow_ids(other_api) == [theirs.json()["id"]]


def test_key_longer_than_255_characters_is_rejected(api: httpx.Client) -> None:
    response = post(api, "k" * 256, workflow_body())

    assert_error(response, 400, "Bad Request", "Idempotency-Key")
    assert "255" in response.json()["message"]
    assert workflow_ids(api) == []


def test_key_is_ignored_on_reads(api: httpx.Client) -> None:
    key = new_key()
    assert api.get("/workflows", headers={"Idempotency-Key": key}).status_code == 200

    created = post(api, key, workflow_body())

    assert created.status_code == 201, created.text


def test_public_signup_never_replays_another_callers_secrets(anonymous: httpx.Client) -> None:
    body = {"email": f"ops-{uuid.uuid4().hex[:12]}@example.com", "name": "Acme Ops"}
    key = new_key()
    first = anonymous.post("/gateway/signup", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text

    second = anonymous.post("/gateway/signup", json=body, headers={"Idempotency-Key": key})

    assert first.json()["management_token"] not in second.text
    assert first.json()["api_key"]["key"] not in second.text
    assert_error(second, 409, "Conflict", "not replayed")


# --- the store: claim / complete ---------------------------------------------------------------------


def run_with_engine(database_url: str, scenario: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run `scenario` on a fresh event loop with an engine of its own (disposed afterwards)."""

    async def main() -> T:
        engine = create_engine(database_url, pool_size=1)
        try:
            return await scenario(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_claim_of_a_key_in_flight_is_not_fresh_and_has_no_response(fresh_database: str) -> None:
    async def scenario(engine: AsyncEngine) -> tuple[idempotency.Claim, idempotency.Claim]:
        async with connect(engine) as connection:
            first = await idempotency.claim(connection, "org-a", "k1", METHOD, "hash-1")
        async with connect(engine) as connection:
            second = await idempotency.claim(connection, "org-a", "k1", METHOD, "hash-1")
        return first, second

    first, second = run_with_engine(fresh_database, scenario)

    assert first.fresh
    assert not second.fresh
    assert second.response is None  # the interceptor answers 409 "still in progress"
    assert (second.method, second.request_hash) == (METHOD, "hash-1")


def test_claim_after_complete_returns_the_stored_response(fresh_database: str) -> None:
    async def scenario(engine: AsyncEngine) -> idempotency.Claim:
        async with connect(engine) as connection:
            assert (await idempotency.claim(connection, "org-a", "k1", METHOD, "hash-1")).fresh
        async with connect(engine) as connection:
            await idempotency.complete(connection, "org-a", "k1", b"\x0a\x03abc")
        async with connect(engine) as connection:
            return await idempotency.claim(connection, "org-a", "k1", METHOD, "hash-2")

    again = run_with_engine(fresh_database, scenario)

    assert not again.fresh
    assert again.response == b"\x0a\x03abc"
    assert again.request_hash == "hash-1"  # the interceptor compares it and answers 422 on a mismatch


def test_a_key_held_by_a_running_call_answers_conflict_not_a_wait(fresh_database: str) -> None:
    async def scenario(engine: AsyncEngine) -> tuple[bool, object]:
        async with engine.begin() as first:  # the first call: claimed, not yet committed
            claimed = await idempotency.claim_or_conflict(first, "org:a", "k1", "/m", "h")
            async with engine.begin() as second:
                concurrent = await idempotency.claim_or_conflict(second, "org:a", "k1", "/m", "h")
            assert claimed is not None
            return claimed.fresh, concurrent

    assert run_with_engine(fresh_database, scenario) == (True, None)


def test_a_call_that_rolls_back_leaves_the_key_free(fresh_database: str) -> None:
    async def scenario(engine: AsyncEngine) -> bool:
        async with engine.connect() as connection:
            transaction = await connection.begin()
            await idempotency.claim(connection, "org:a", "k1", "/m", "h")
            await transaction.rollback()
        async with engine.begin() as connection:
            return (await idempotency.claim(connection, "org:a", "k1", "/m", "h")).fresh

    assert run_with_engine(fresh_database, scenario)


def test_claims_are_scoped(fresh_database: str) -> None:
    async def scenario(engine: AsyncEngine) -> list[bool]:
        fresh = []
        for scope in ("org-a", "org-b", "org-a"):
            async with connect(engine) as connection:
                fresh.append((await idempotency.claim(connection, scope, "k1", METHOD, "hash-1")).fresh)
        return fresh

    assert run_with_engine(fresh_database, scenario) == [True, True, False]
