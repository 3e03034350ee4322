"""Bulk inserts over REST: all or none with the bad row and field named, the ids-only answer, and values stored
exactly as a single insert stores them."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.server.test_custom_tables import RECONCILIATION_LOG, create_log


def listed(api: httpx.Client, table: str) -> list[dict[str, Any]]:
    body = api.get(f"/custom-tables/{table}/rows", params={"page_size": 100}).json()
    rows: list[dict[str, Any]] = body["rows"]
    return rows


def test_a_bad_value_in_row_3517_names_the_row_and_the_field_and_inserts_nothing(api: httpx.Client) -> None:
    create_log(api)
    rows: list[dict[str, Any]] = [
        {"run_id": "r", "invoice_id": f"I-{i}", "status": "new", "amount": i, "attempts": i} for i in range(5000)
    ]
    rows[3517]["amount"] = "lots"
    response = api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows, "return_rows": False})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("rows[3517].amount:") and "numeric" in message, message
    assert api.get("/custom-tables/reconciliation_log/rows").json()["total"] == 0
    assert api.get("/custom-tables/reconciliation_log/audit").json()["entries"] == []


def test_a_value_postgres_refuses_during_copy_names_the_row_and_the_field_and_inserts_nothing(
    api: httpx.Client,
) -> None:
    create_log(api)
    rows = [{"run_id": "r", "invoice_id": f"I-{i}", "status": "new", "amount": i} for i in range(300)]
    rows[217]["amount"] = "1e200000"  # a finite decimal, beyond Postgres numeric's range: refused by COPY itself
    response = api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows})
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("rows[217].amount:"), response.text
    assert api.get("/custom-tables/reconciliation_log/rows").json()["total"] == 0
    assert api.get("/custom-tables/reconciliation_log/audit").json()["entries"] == []
    single = api.post("/custom-tables/reconciliation_log/insert", json=rows[217])
    assert single.status_code == 400 and single.json()["message"].startswith("amount:"), single.text


def test_bulk_insert_without_rows_answers_the_ids_and_audits_every_row(api: httpx.Client) -> None:
    create_log(api)
    rows = [{"run_id": "r", "invoice_id": f"I-{i}", "status": "new", "attempts": i} for i in range(60)]
    response = api.post("/custom-tables/reconciliation_log/bulk-insert", json={"rows": rows, "return_rows": False})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["inserted"] == 60 and body.get("rows", []) == []
    ids = body["ids"]
    stored = listed(api, "reconciliation_log")
    assert [r["id"] for r in stored] == ids
    assert [r["invoice_id"] for r in stored] == [f"I-{i}" for i in range(60)]
    audit = api.get("/custom-tables/reconciliation_log/audit", params={"page_size": 100}).json()["entries"]
    assert sorted(e["row_id"] for e in audit) == ids
    assert all(e["operation"] == "insert" and e["before"] is None for e in audit)
    after = {e["row_id"]: e["after"] for e in audit}
    assert [after[r["id"]] for r in stored] == stored  # the after-image is the stored row


def test_bulk_rows_are_stored_exactly_as_single_inserts_store_them(api: httpx.Client) -> None:
    # values the fast converters take as they are and values only the reference coercion takes, side by side
    awkward: list[dict[str, Any]] = [
        {"invoice_id": "tab\there", "amount": 1500.50, "attempts": 3, "matched": True},
        {"invoice_id": "new\nline\r", "amount": "0.000010", "attempts": "42", "matched": False},
        {"invoice_id": "back\\slash", "amount": 10, "attempts": 7.0, "matched": None},
        {"invoice_id": "\\N", "amount": "1e3", "processed_at": "2026-01-15T10:30:00"},
        {"invoice_id": "emoji 🍄", "amount": None, "processed_at": "2026-01-15T10:30:00.123456+02:00"},
        {"invoice_id": " ", "amount": -0.5, "processed_at": "2026-01-15 10:30:00Z", "attempts": -(2**63)},
    ]
    rows = [{"run_id": "r", "status": "s", **row} for row in awkward]
    for name in ("bulk_log", "single_log"):
        created = api.post("/custom-tables", json={**_log_definition(), "name": name})
        assert created.status_code == 201, created.text
    bulk = api.post("/custom-tables/bulk_log/bulk-insert", json={"rows": rows})
    assert bulk.status_code == 201, bulk.text
    for row in rows:
        assert api.post("/custom-tables/single_log/insert", json=row).status_code == 201
    keep = ("run_id", "invoice_id", "amount", "status", "matched", "processed_at", "attempts")
    from_bulk = [{k: r[k] for k in keep} for r in listed(api, "bulk_log")]
    from_single = [{k: r[k] for k in keep} for r in listed(api, "single_log")]
    assert from_bulk == from_single
    assert [{k: r[k] for k in keep} for r in bulk.json()["rows"]] == from_bulk
    assert from_bulk[0]["invoice_id"] == "tab\there" and from_bulk[3]["invoice_id"] == "\\N"
    assert from_bulk[3]["processed_at"] == "2026-01-15T10:30:00+00:00"


def _log_definition() -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(json.dumps(RECONCILIATION_LOG))  # a copy, without invoice_id's maxLength
    definition["fields"][1].pop("maxLength")
    return definition
