"""Custom tables over REST: definitions, typed rows, filters, pages, updates and the audit of every mutation."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

RECONCILIATION_LOG = {
    "name": "reconciliation_log",
    "fields": [
        {"name": "run_id", "type": "text", "required": True},
        {"name": "invoice_id", "type": "text", "required": True, "maxLength": 10},
        {"name": "amount", "type": "numeric", "required": False},
        {"name": "status", "type": "text", "required": True},
        {"name": "matched", "type": "boolean", "required": False},
        {"name": "processed_at", "type": "timestamptz", "required": False},
        {"name": "attempts", "type": "integer"},
    ],
}


def create_log(api: httpx.Client) -> dict[str, Any]:
    response = api.post("/custom-tables", json=RECONCILIATION_LOG)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_table_definition_round_trips_and_lists(api: httpx.Client) -> None:
    created = create_log(api)
    assert created["name"] == "reconciliation_log"
    assert created["id"].startswith("ctb-")
    assert created["fields"][1] == {"name": "invoice_id", "type": "text", "required": True, "maxLength": 10}
    assert created["fields"][2] == {"name": "amount", "type": "numeric", "required": False}
    assert api.get("/custom-tables/reconciliation_log").json() == created
    assert [t["name"] for t in api.get("/custom-tables").json()["tables"]] == ["reconciliation_log"]
    duplicate = api.post("/custom-tables", json=RECONCILIATION_LOG)
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "TABLE_NAME_TAKEN"


def test_tables_list_in_pages(api: httpx.Client) -> None:
    for name in ("c_table", "a_table", "b_table"):
        assert (
            api.post("/custom-tables", json={"name": name, "fields": [{"name": "x", "type": "text"}]}).status_code
            == 201
        )
    first = api.get("/custom-tables", params={"page_size": 2}).json()
    assert [t["name"] for t in first["tables"]] == ["a_table", "b_table"]
    second = api.get("/custom-tables", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    assert [t["name"] for t in second["tables"]] == ["c_table"]
    assert second["next_page_token"] == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t", "fields": [{"name": "a", "type": "varchar"}]}, "fields[0].type"),
        ({"name": "t", "fields": [{"name": "a", "type": "text"}, {"name": "b c", "type": "text"}]}, "fields[1].name"),
        ({"name": "bad-name", "fields": [{"name": "a", "type": "text"}]}, "name"),
        ({"name": "t", "fields": []}, "fields"),
        ({"name": "t", "fields": [{"name": "id", "type": "integer"}]}, "fields[0].name"),
        ({"name": "t", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}]}, "fields[1].name"),
        ({"name": "t", "fields": [{"name": "a", "type": "integer", "maxLength": 3}]}, "fields[0].maxLength"),
    ],
)
def test_bad_definitions_answer_400_naming_the_field(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = api.post("/custom-tables", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(f"{field}:"), response.json()


def test_row_round_trip_with_typed_values(api: httpx.Client) -> None:
    create_log(api)
    row = {
        "run_id": "run-1",
        "invoice_id": "INV-001",
        "amount": 10000.00,
        "status": "processed",
        "matched": True,
        "processed_at": "2025-01-15T10:30:00Z",
        "attempts": "3",
    }
    raw = json.dumps(row).replace('"amount": 10000.0', '"amount": 10000.00')
    response = api.post("/custom-tables/reconciliation_log/insert", content=raw)
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["id"] >= 1
    assert stored["amount"] == 10000.00
    assert '"amount":10000.00' in response.text  # the digits as written
    assert stored["attempts"] == 3
    assert stored["processed_at"] == "2025-01-15T10:30:00+00:00"
    assert stored["matched"] is True
    # SDK-compatible spelling, and the {"data": ...} wrapper
    sdk = api.post("/custom-tables/reconciliation_log/rows", json={"data": {**row, "invoice_id": "INV-002"}})
    assert sdk.status_code == 201, sdk.text
    awkward = {**row, "invoice_id": "INV-003", "status": 'tab\there\nnew line \\N "quoted" \u00e9\U0001f600'}
    stored_awkward = api.post("/custom-tables/reconciliation_log/insert", json=awkward)
    assert stored_awkward.status_code == 201, stored_awkward.text
    assert stored_awkward.json()["status"] == awkward["status"]  # tabs, newlines and backslashes survive COPY
    api.delete(f"/custom-tables/reconciliation_log/rows/{stored_awkward.json()['id']}")
    listed = api.get("/custom-tables/reconciliation_log/rows").json()
    assert [r["invoice_id"] for r in listed["rows"]] == ["INV-001", "INV-002"]
    assert listed["total"] == 2
    assert listed["rows"][0] == stored


@pytest.mark.parametrize(
    ("row", "field", "words"),
    [
        ({"invoice_id": "INV-1", "status": "x"}, "run_id", "required"),
        ({"run_id": "r", "invoice_id": "INV-1", "status": None}, "status", "required"),
        ({"run_id": "r", "invoice_id": "INV-0000001", "status": "x"}, "invoice_id", "maxLength"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "amount": "ten"}, "amount", "number"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "matched": "true"}, "matched", "true or false"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "attempts": 1.5}, "attempts", "whole number"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "processed_at": "yesterday"}, "processed_at", "ISO"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "colour": "red"}, "colour", "not a field"),
        ({"run_id": "r", "invoice_id": "I", "status": 7}, "status", "string"),
        ({"run_id": "r", "invoice_id": "I", "status": "x", "id": 5}, "id", "set by the server"),
    ],
)
def test_invalid_rows_answer_400_naming_the_field(
    api: httpx.Client, row: dict[str, Any], field: str, words: str
) -> None:
    create_log(api)
    response = api.post("/custom-tables/reconciliation_log/insert", json=row)
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith(f"{field}:") and words in message, message
    assert api.get("/custom-tables/reconciliation_log/rows").json()["rows"] == []


def test_bulk_insert_is_all_or_nothing_and_names_the_row(api: httpx.Client) -> None:
    create_log(api)
    rows = [{"run_id": "r", "invoice_id": f"INV-{i}", "status": "new", "amount": i} for i in range(5)]
    bad = api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": [*rows, {"run_id": "r"}]})
    assert bad.status_code == 400
    assert bad.json()["message"].startswith("rows[5].invoice_id:")
    response = api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["inserted"] == 5
    assert [r["invoice_id"] for r in body["rows"]] == [f"INV-{i}" for i in range(5)]


def test_rows_filter_sort_and_page(api: httpx.Client) -> None:
    create_log(api)
    rows = [
        {"run_id": "r", "invoice_id": f"INV-{i}", "status": "open" if i % 2 else "done", "amount": 100 - i}
        for i in range(7)
    ]
    api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows})
    open_rows = api.get("/custom-tables/reconciliation_log/rows", params={"where": '{"status": "open"}'}).json()
    assert [r["invoice_id"] for r in open_rows["rows"]] == ["INV-1", "INV-3", "INV-5"]
    assert open_rows["total"] == 3
    any_of = api.get("/custom-tables/reconciliation_log/rows", params={"where": '{"amount": [100, "99"]}'}).json()
    assert [r["invoice_id"] for r in any_of["rows"]] == ["INV-0", "INV-1"]
    seen: list[str] = []
    params: dict[str, Any] = {"sort": "amount", "page_size": 3}
    while True:
        page = api.get("/custom-tables/reconciliation_log/rows", params=params).json()
        seen += [r["invoice_id"] for r in page["rows"]]
        if not page["next_page_token"]:
            break
        params["page_token"] = page["next_page_token"]
    assert seen == [f"INV-{i}" for i in range(6, -1, -1)]
    descending = api.get("/custom-tables/reconciliation_log/rows", params={"sort": "-amount", "limit": 2, "offset": 1})
    assert [r["invoice_id"] for r in descending.json()["rows"]] == ["INV-1", "INV-2"]
    third_page = api.get("/custom-tables/reconciliation_log/rows", params={"page": 3, "page_size": 3}).json()
    assert [r["invoice_id"] for r in third_page["rows"]] == ["INV-6"]
    assert third_page["offset"] == 6
    for wrong in ({"page": -1}, {"page": 2, "offset": 3}):
        refused = api.get("/custom-tables/reconciliation_log/rows", params=wrong)
        assert refused.status_code == 400 and refused.json()["message"].startswith("page:"), refused.text
    bad = api.get("/custom-tables/reconciliation_log/rows", params={"where": '{"amount": "lots"}'})
    assert bad.status_code == 400 and bad.json()["message"].startswith("where.amount:")
    bad_sort = api.get("/custom-tables/reconciliation_log/rows", params={"sort": "colour"})
    assert bad_sort.status_code == 400 and bad_sort.json()["message"].startswith("sort:")


def test_update_by_keys_or_where_and_patch_by_id(api: httpx.Client) -> None:
    create_log(api)
    rows = [{"run_id": "run-a", "invoice_id": f"INV-{i}", "status": "open"} for i in range(3)]
    ids = [
        r["id"] for r in api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows}).json()["rows"]
    ]
    by_keys = api.put(
        "/custom-tables/reconciliation_log/update",
        json={"keys": ["run_id", "invoice_id"], "values": ["run-a", "INV-1"], "fields": {"status": "approved"}},
    )
    assert by_keys.status_code == 200, by_keys.text
    assert by_keys.json()["updated"] == 1
    assert by_keys.json()["rows"][0]["status"] == "approved"
    by_where = api.put(
        "/custom-tables/reconciliation_log/update", json={"where": {"status": "open"}, "set": {"matched": False}}
    )
    assert by_where.json()["updated"] == 2
    patched = api.patch(f"/custom-tables/reconciliation_log/rows/{ids[2]}", json={"amount": "12.50"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["amount"] == 12.50 and patched.json()["matched"] is False
    assert api.patch("/custom-tables/reconciliation_log/rows/999999", json={"amount": 1}).status_code == 404
    bad = api.put(
        "/custom-tables/reconciliation_log/update", json={"where": {"status": "open"}, "set": {"status": None}}
    )
    assert bad.status_code == 400 and bad.json()["message"].startswith("set.status:")
    everything = api.put("/custom-tables/reconciliation_log/update", json={"set": {"status": "x"}})
    assert everything.status_code == 400 and everything.json()["message"].startswith("where:")


def test_every_mutation_is_audited_with_before_and_after(api: httpx.Client) -> None:
    create_log(api)
    row = api.post(
        "/custom-tables/reconciliation_log/insert", json={"run_id": "r", "invoice_id": "INV-1", "status": "open"}
    ).json()
    api.patch(f"/custom-tables/reconciliation_log/rows/{row['id']}", json={"status": "closed"})
    api.put("/custom-tables/reconciliation_log/update", json={"where": {"id": row["id"]}, "set": {"attempts": 2}})
    assert api.delete(f"/custom-tables/reconciliation_log/rows/{row['id']}").status_code == 200
    assert api.delete(f"/custom-tables/reconciliation_log/rows/{row['id']}").status_code == 404
    entries = api.get("/custom-tables/reconciliation_log/audit").json()["entries"]
    assert [e["operation"] for e in entries] == ["delete", "update", "update", "insert"]
    assert all(e["row_id"] == row["id"] for e in entries)
    assert all(e["actor_kind"] == "org_header" for e in entries)
    delete, second, first, insert = entries
    assert insert["before"] is None and insert["after"]["status"] == "open"
    assert first["before"]["status"] == "open" and first["after"]["status"] == "closed"
    assert second["before"]["attempts"] is None and second["after"]["attempts"] == 2
    assert delete["before"]["attempts"] == 2 and delete["after"] is None
    assert api.get("/custom-tables/reconciliation_log/audit", params={"row_id": row["id"] + 1}).json()["entries"] == []
    assert len(api.get("/custom-tables/reconciliation_log/audit", params={"row_id": row["id"]}).json()["entries"]) == 4
    page = api.get("/custom-tables/reconciliation_log/audit", params={"page_size": 3}).json()
    assert len(page["entries"]) == 3 and page["next_page_token"]


def test_deleting_a_table_drops_it(api: httpx.Client) -> None:
    create_log(api)
    api.post("/custom-tables/reconciliation_log/insert", json={"run_id": "r", "invoice_id": "I", "status": "s"})
    assert api.delete("/custom-tables/reconciliation_log").json() == {"name": "reconciliation_log", "deleted": True}
    assert api.get("/custom-tables/reconciliation_log").status_code == 404
    assert api.get("/custom-tables/reconciliation_log/rows").status_code == 404
    recreated = create_log(api)  # the name is free again, and the new table starts empty
    assert api.get("/custom-tables/reconciliation_log/rows").json()["rows"] == []
    assert api.get("/custom-tables/reconciliation_log/audit").json()["entries"] == []
    assert recreated["name"] == "reconciliation_log"
