"""Custom tables tried with another org's credentials: every endpoint 404, nothing in lists, rows or audit."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerInfo
from tests.server.runs_helpers import wait_for


def client(server: ServerInfo, prefix: str) -> httpx.Client:
    return httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"{prefix}-{uuid.uuid4().hex[:8]}"})


@pytest.fixture
def owner(server: ServerInfo) -> Iterator[httpx.Client]:
    with client(server, "owner") as c:
        yield c


@pytest.fixture
def intruder(server: ServerInfo) -> Iterator[httpx.Client]:
    with client(server, "intruder") as c:
        yield c


def test_every_custom_table_endpoint_is_404_for_another_org(owner: httpx.Client, intruder: httpx.Client) -> None:
    spec = {"name": "secrets", "fields": [{"name": "value", "type": "text", "required": True}]}
    assert owner.post("/custom-tables", json=spec).status_code == 201
    row = owner.post("/custom-tables/secrets/insert", json={"value": "top-secret"}).json()
    before = owner.get("/custom-tables/secrets/audit").json()

    attempts = [
        intruder.get("/custom-tables/secrets"),
        intruder.delete("/custom-tables/secrets"),
        intruder.post("/custom-tables/secrets/insert", json={"value": "x"}),
        intruder.post("/custom-tables/secrets/rows", json={"value": "x"}),
        intruder.post("/custom-tables/secrets/bulk-insert", json={"rows": [{"value": "x"}]}),
        intruder.put("/custom-tables/secrets/update", json={"where": {"id": row["id"]}, "set": {"value": "x"}}),
        intruder.put(
            "/custom-tables/secrets/update",
            json={"keys": ["value"], "values": ["top-secret"], "fields": {"value": "x"}},
        ),
        intruder.get("/custom-tables/secrets/rows"),
        intruder.get("/custom-tables/secrets/rows", params={"where": '{"value": "top-secret"}'}),
        intruder.patch(f"/custom-tables/secrets/rows/{row['id']}", json={"value": "x"}),
        intruder.delete(f"/custom-tables/secrets/rows/{row['id']}"),
        intruder.get("/custom-tables/secrets/audit"),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.method, response.request.url, response.text)
        assert "top-secret" not in response.text
    assert intruder.get("/custom-tables").json()["tables"] == []

    # the intruder may create its own table of the same name: a separate table, empty, with its own audit
    assert intruder.post("/custom-tables", json=spec).status_code == 201
    assert intruder.get("/custom-tables/secrets/rows").json() == {
        "rows": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
        "next_page_token": "",
    }
    assert intruder.get("/custom-tables/secrets/audit").json()["entries"] == []
    assert intruder.patch(f"/custom-tables/secrets/rows/{row['id']}", json={"value": "x"}).status_code == 404

    # and nothing changed for the owner
    assert owner.get("/custom-tables/secrets/rows").json()["rows"] == [row]
    assert owner.get("/custom-tables/secrets/audit").json() == before


def test_a_run_cannot_reach_another_orgs_table(owner: httpx.Client, intruder: httpx.Client) -> None:
    spec = {"name": "ledger", "fields": [{"name": "value", "type": "text"}]}
    assert owner.post("/custom-tables", json=spec).status_code == 201
    owner.post("/custom-tables/ledger/insert", json={"value": "owner-only"})
    step = {"type": "custom-table", "properties": {"table": "ledger", "operation": "read"}, "outputKey": "rows"}
    workflow = intruder.post("/workflows", json={"name": "peek", "definition": {"actions": [step]}}).json()
    run_id = intruder.post(f"/workflows/{workflow['id']}/execute", json={"input": {}}).json()["run_id"]
    run = wait_for(intruder, run_id)
    assert run["status"] == "failed" and "not found" in run["error"]
    assert "owner-only" not in str(run)
