"""Workflow and action resources over REST: CRUD, uniqueness, validation naming paths, exact JSON."""

from __future__ import annotations

from typing import Any

import httpx

DEFINITION_TEXT = (
    '{"actions":[{"type":"PbotApproval","properties":{"comment":"Approve?","zeta":42,"alpha":1.5,'
    '"big":1152921504606846976,"nested":[[1,2],[3,[4.25,{"b":1,"a":2}]]],"neg":-7,"exp":1E+3}}],'
    '"description":"keys in a deliberate order"}'
)


def approval_workflow(name: str) -> dict[str, object]:
    return {"name": name, "definition": {"actions": [{"type": "PbotApproval", "properties": {"comment": "ok?"}}]}}


def test_definition_round_trips_byte_for_byte(api: httpx.Client) -> None:
    body = '{"name":"exact","definition":' + DEFINITION_TEXT + "}"
    created = api.post("/workflows", content=body, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    raw = api.get(f"/workflows/{created.json()['id']}").text
    assert '"definition":' + DEFINITION_TEXT + "," in raw


def test_workflow_crud(api: httpx.Client) -> None:
    created = api.post("/workflows", json=approval_workflow("crud")).json()
    updated = api.put(
        f"/workflows/{created['id']}",
        json={
            "name": "crud-renamed",
            "description": "v2",
            "definition": {"actions": [{"type": "PbotForm", "properties": {"expected_keys": ["email"]}}]},
        },
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert updated.json()["name"] == "crud-renamed"
    assert updated.json()["created_at"] == created["created_at"]
    listed = api.get("/workflows").json()
    assert [w["id"] for w in listed["workflows"]] == [created["id"]]
    deleted = api.delete(f"/workflows/{created['id']}")
    assert deleted.json() == {"id": created["id"], "deleted": True}
    assert api.get(f"/workflows/{created['id']}").status_code == 404


def test_duplicate_workflow_name_is_a_conflict(api: httpx.Client) -> None:
    assert api.post("/workflows", json=approval_workflow("dup")).status_code == 201
    response = api.post("/workflows", json=approval_workflow("dup"))
    assert response.status_code == 409
    assert "dup" in response.json()["message"]


def test_same_name_in_two_orgs_is_fine(api: httpx.Client) -> None:
    assert api.post("/workflows", json=approval_workflow("shared")).status_code == 201
    other = httpx.Client(base_url=str(api.base_url), headers={"X-Org-Id": "other-" + api.headers["X-Org-Id"]})
    with other:
        assert other.post("/workflows", json=approval_workflow("shared")).status_code == 201
        assert [w["name"] for w in other.get("/workflows").json()["workflows"]] == ["shared"]


def test_invalid_definition_names_the_path(api: httpx.Client) -> None:
    definition = {
        "actions": [
            {"type": "PbotApproval", "properties": {"comment": "a"}},
            {"type": "PbotApproval", "properties": {"comment": "b"}},
            {"type": "PbotApproval", "properties": {"comment": "c"}, "filter": {"condition": {"greaterThen": [1, 2]}}},
        ]
    }
    response = api.post("/workflows", json={"name": "bad", "definition": definition})
    assert response.status_code == 400
    assert response.json()["message"].startswith("definition.actions[2].filter")


def test_workflow_may_use_a_registered_action_only_after_registration(api: httpx.Client) -> None:
    workflow = {"name": "uses-action", "definition": {"actions": [{"type": "notify", "properties": {}}]}}
    assert api.post("/workflows", json=workflow).status_code == 400
    action = {"action_name": "notify", "kind": "http", "url": "https://example.com/hook", "http_method": "post"}
    registered = api.post("/actions", json=action)
    assert registered.json()["http_method"] == "POST"
    assert api.post("/workflows", json=workflow).status_code == 201


def test_pagination_with_tokens_and_offsets(api: httpx.Client) -> None:
    ids = [api.post("/workflows", json=approval_workflow(f"p{i}")).json()["id"] for i in range(5)]
    newest_first = list(reversed(ids))
    first = api.get("/workflows", params={"page_size": 2}).json()
    second = api.get("/workflows", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    third = api.get("/workflows", params={"page_size": 2, "page_token": second["next_page_token"]}).json()
    assert [w["id"] for w in first["workflows"] + second["workflows"] + third["workflows"]] == newest_first
    assert third["next_page_token"] == ""
    offset = api.get("/workflows", params={"limit": 2, "offset": 3}).json()
    assert [w["id"] for w in offset["workflows"]] == newest_first[3:5]


def test_action_kinds_from_the_docs_are_accepted(api: httpx.Client) -> None:
    bodies: list[dict[str, Any]] = [
        {
            "action_name": "summarize_document",
            "kind": "llm",
            "description": "Summarize a document in 3 bullet points",
            "template": "Summarize the following document in 3 bullet points:\n\n{{document_text}}",
            "model": "gpt-4",
            "max_tokens": 500,
            "outputKey": "summary",
        },
        {
            "action_name": "get_pending_orders",
            "kind": "db",
            "description": "Fetch pending orders from the warehouse database",
            "datasource": "orgconfig:db:warehouse_pg",
            "query": "SELECT * FROM orders WHERE status = $1 AND created_at > $2",
            "params": ["pending", "@input.since_date"],
            "passthrough": True,
            "outputKey": "orders",
        },
        {
            "action_name": "invoice_payment_matcher",
            "kind": "matcher",
            "description": "Match invoices to payments by invoice number with 2% tolerance and 5-day date window",
            "left": "@input.invoices",
            "right": "@input.payments",
            "matchOn": ["invoice_number", "vendor_id"],
            "tolerance": 0.02,
            "dateWindowDays": 5,
            "fuzzyThreshold": 85,
            "descriptionKey": "description",
        },
        {
            "action_name": "log_reconciliation",
            "kind": "custom-table",
            "description": "Log a reconciliation result to the audit table",
        },
    ]
    for body in bodies:
        response = api.post("/actions", json=body)
        assert response.status_code == 201, response.text
        stored = api.get(f"/actions/{response.json()['id']}").json()
        assert {k: stored[k] for k in body} == body


def test_update_action_replaces_its_properties(api: httpx.Client) -> None:
    created = api.post(
        "/actions",
        json={
            "action_name": "fetch_customer_data",
            "kind": "http",
            "url": "https://api.example.com/customers",
            "http_method": "GET",
        },
    ).json()
    update = {
        "action_name": "fetch_customer_data",
        "kind": "http",
        "description": "Fetch customer details from CRM (updated)",
        "url": "https://api.example.com/v2/customers",
        "http_method": "GET",
        "passthrough": True,
    }
    response = api.put(f"/actions/{created['id']}", json=update)
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in update} == update


def test_duplicate_action_name_is_a_conflict(api: httpx.Client) -> None:
    body = {"action_name": "once", "kind": "custom-table"}
    assert api.post("/actions", json=body).status_code == 201
    assert api.post("/actions", json=body).status_code == 409


def test_action_missing_kind_property_names_it(api: httpx.Client) -> None:
    response = api.post("/actions", json={"action_name": "no_url", "kind": "http", "http_method": "GET"})
    assert response.status_code == 400
    assert response.json()["message"].startswith("url:")


def test_builtin_actions_lists_oauth_tools(api: httpx.Client) -> None:
    names = {a["name"]: a["provider"] for a in api.get("/builtin-actions").json()["actions"]}
    assert {"gmail_send": "gmail", "slack_send_message": "slack", "outlook_send": "outlook"}.items() <= names.items()
