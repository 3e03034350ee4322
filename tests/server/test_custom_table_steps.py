"""The `custom-table` workflow step and `custom-table` actions: one code path, audited with the run as the actor."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from server.store import custom_tables as custom_table_store
from server.store import loop_items
from server.store.db import connect, create_engine
from tests.conftest import ServerInfo
from tests.server.runs_helpers import wait_for

LOG = {
    "name": "reconciliation_log",
    "fields": [
        {"name": "run_id", "type": "text", "required": True},
        {"name": "invoice_id", "type": "text", "required": True},
        {"name": "amount", "type": "numeric", "required": False},
        {"name": "status", "type": "text", "required": True},
        {"name": "matched", "type": "boolean", "required": False},
        {"name": "processed_at", "type": "timestamptz", "required": False},
    ],
}


def execute(
    api: httpx.Client, steps: list[dict[str, Any]], run_input: dict[str, Any], **wait: tuple[str, ...]
) -> dict[str, Any]:
    name = f"tables_{uuid.uuid4().hex[:8]}"
    created = api.post("/workflows", json={"name": name, "definition": {"actions": steps}})
    assert created.status_code == 201, created.text
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": run_input})
    assert started.status_code in (200, 201, 202), started.text
    return wait_for(api, started.json()["run_id"], **wait)


def test_write_read_update_upsert_from_a_workflow(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=LOG).status_code == 201
    steps = [
        {  # the documented write example
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "write",
                "keys": ["run_id", "invoice_id"],
                "values": ["@__run_id", "@input.invoice_id"],
                "fields": {"amount": "@input.amount", "status": "processed", "matched": True, "processed_at": "@now"},
            },
        },
        {  # the documented read example
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "read",
                "keys": ["invoice_id"],
                "values": ["@input.invoice_id"],
            },
            "outputKey": "previous_runs",
        },
        {  # the documented update example
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "update",
                "keys": ["run_id"],
                "values": ["@__run_id"],
                "fields": {"status": "approved"},
            },
            "outputKey": "updated",
        },
        {  # upsert of a new key inserts, of an existing one updates
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "upsert",
                "keys": ["run_id", "invoice_id"],
                "values": ["@__run_id", "INV-NEW"],
                "fields": {"status": "pending", "amount": "{{previous_runs.length}}"},
            },
            "outputKey": "upserted_new",
        },
        {
            "type": "custom-table",
            "properties": {
                "table": "reconciliation_log",
                "operation": "upsert",
                "keys": ["run_id", "invoice_id"],
                "values": ["@__run_id", "@input.invoice_id"],
                "fields": {"status": "closed"},
            },
            "outputKey": "upserted_old",
        },
    ]
    run = execute(api, steps, {"invoice_id": "INV-001", "amount": 1500.50})
    assert run["status"] == "completed", run
    context = run["context"]
    [previous] = context["previous_runs"]
    assert previous["run_id"] == run["run_id"]
    assert previous["amount"] == 1500.50 and previous["matched"] is True and previous["status"] == "processed"
    assert context["updated"]["updated"] == 1
    assert context["upserted_new"]["inserted"] == 1 and context["upserted_new"]["rows"][0]["amount"] == 1
    assert context["upserted_old"]["updated"] == 1 and context["upserted_old"]["inserted"] == 0

    rows = api.get("/custom-tables/reconciliation_log/rows", params={"sort": "invoice_id"}).json()["rows"]
    assert [(r["invoice_id"], r["status"]) for r in rows] == [("INV-001", "closed"), ("INV-NEW", "pending")]
    audit = api.get("/custom-tables/reconciliation_log/audit").json()["entries"]
    assert [e["operation"] for e in audit] == ["upsert", "upsert", "update", "insert"]
    assert {(e["actor_kind"], e["actor_id"]) for e in audit} == {("run", run["run_id"])}


def test_custom_table_action_uses_the_step_properties(api: httpx.Client) -> None:
    table = {
        "name": "recon_audit",
        "fields": [
            {"name": "run_id", "type": "text", "required": True},
            {"name": "timestamp", "type": "timestamptz", "required": True},
            {"name": "matched_count", "type": "integer"},
            {"name": "exception_count", "type": "integer"},
            {"name": "status", "type": "text"},
        ],
    }
    assert api.post("/custom-tables", json=table).status_code == 201
    action = {
        "action_name": "log_reconciliation",
        "kind": "custom-table",
        "description": "Log a reconciliation result to the audit table",
    }
    assert api.post("/actions", json=action).status_code == 201
    steps = [
        {
            "type": "matcher",
            "properties": {"left": "@input.invoices", "right": "@input.payments", "matchOn": ["invoice_id"]},
        },
        {  # the documented usage, verbatim
            "type": "log_reconciliation",
            "properties": {
                "table": "recon_audit",
                "operation": "write",
                "keys": ["run_id", "timestamp"],
                "values": ["@__run_id", "@now"],
                "fields": {
                    "matched_count": "@matched.length",
                    "exception_count": "@exceptions.length",
                    "status": "completed",
                },
            },
        },
    ]
    invoices = [{"invoice_id": "A", "amount": 1}, {"invoice_id": "B", "amount": 2}]
    run = execute(api, steps, {"invoices": invoices, "payments": invoices[:1]})
    assert run["status"] == "completed", run
    logged = run["context"]["log_reconciliation"]
    assert logged["run_id"] == run["run_id"] and logged["matched_count"] == 1 and logged["status"] == "completed"
    [entry] = api.get("/custom-tables/recon_audit/audit").json()["entries"]
    assert (entry["operation"], entry["actor_kind"], entry["actor_id"]) == ("insert", "run", run["run_id"])


def test_table_defaults_of_a_registered_action(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=LOG).status_code == 201
    action = {"action_name": "read_log", "kind": "custom-table", "table": "reconciliation_log", "operation": "read"}
    assert api.post("/actions", json=action).status_code == 201
    api.post("/custom-tables/reconciliation_log/insert", json={"run_id": "r", "invoice_id": "I-1", "status": "s"})
    run = execute(api, [{"type": "read_log", "properties": {"keys": ["invoice_id"], "values": ["I-1"]}}], {})
    assert run["status"] == "completed", run
    assert [r["invoice_id"] for r in run["context"]["read_log"]] == ["I-1"]


def test_a_bad_value_fails_the_step_naming_the_field(api: httpx.Client) -> None:
    assert api.post("/custom-tables", json=LOG).status_code == 201
    properties: dict[str, Any] = {
        "table": "reconciliation_log",
        "operation": "write",
        "fields": {"run_id": "@__run_id", "invoice_id": "I", "status": "s", "amount": "@input.amount"},
    }
    run = execute(api, [{"type": "custom-table", "properties": properties}], {"amount": "a lot"})
    assert run["status"] == "failed"
    assert "properties.fields.amount" in run["error"], run["error"]
    assert api.get("/custom-tables/reconciliation_log/audit").json()["entries"] == []
    missing = execute(api, [{"type": "custom-table", "properties": {**properties, "table": "nope"}}], {})
    assert missing["status"] == "failed" and "'nope' not found" in missing["error"]


def test_the_validator_names_bad_custom_table_properties(api: httpx.Client) -> None:
    cases = [
        ({"table": "t", "operation": "read", "colour": 1}, "properties.colour"),
        ({"table": "bad name", "operation": "read"}, "properties.table"),
        ({"table": "t", "operation": "write", "fields": {"id": 1}}, "properties.fields.id"),
        ({"table": "t", "operation": "read", "keys": ["a b"], "values": [1]}, "properties.keys[0]"),
        ({"table": "t", "operation": "read", "limit": 0}, "properties.limit"),
    ]
    for properties, path in cases:
        response = api.post(
            "/workflows",
            json={"name": "v", "definition": {"actions": [{"type": "custom-table", "properties": properties}]}},
        )
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(f"definition.actions[0].{path}"), response.json()


def test_ended_runs_lose_their_step_journals_and_running_ones_keep_them(
    api: httpx.Client, server: ServerInfo, org: str
) -> None:
    """Housekeeping: recorded table-step results and foreach item journals are read only while a run runs, so the
    server's periodic purge drops those of ended runs and keeps those of a run paused for an approval."""
    assert api.post("/custom-tables", json=LOG).status_code == 201
    write = {
        "type": "custom-table",
        "properties": {
            "table": "reconciliation_log",
            "operation": "write",
            "keys": ["run_id", "invoice_id"],
            "values": ["@__run_id", "@item.id"],
            "fields": {"status": "seen"},
        },
    }
    loop = {
        "type": "loop",
        "properties": {
            "mode": "foreach",
            "items_path": "@input.invoices",
            "item_variable_name": "item",
            "actions_to_execute": [write],
        },
    }
    run_input = {"invoices": [{"id": "A"}, {"id": "B"}]}
    ended = execute(api, [loop], run_input)
    assert ended["status"] == "completed", ended
    paused = execute(
        api, [loop, {"type": "PbotApproval", "properties": {"comment": "ok?"}}], run_input, until=("paused",)
    )
    assert paused["status"] == "paused", paused

    async def journals() -> dict[str, tuple[int, int]]:
        engine = create_engine(server.database_url, pool_size=1)
        counts = {}
        async with connect(engine) as connection:
            for run in (ended, paused):
                results = await connection.execute(
                    sa.text(
                        "SELECT count(*) FROM custom_table_step_results WHERE org_id = :o AND idempotency_key LIKE :k"
                    ),
                    {"o": org, "k": run["run_id"] + ":%"},
                )
                items = await connection.execute(
                    sa.text("SELECT count(*) FROM loop_items WHERE org_id = :o AND run_id = :r"),
                    {"o": org, "r": run["run_id"]},
                )
                counts[run["status"]] = (int(results.scalar_one()), int(items.scalar_one()))
        await engine.dispose()
        return counts

    async def purge() -> None:
        engine = create_engine(server.database_url, pool_size=1)
        async with connect(engine) as connection:
            await custom_table_store.purge_step_results(connection)
            await loop_items.purge_ended(connection)
        await engine.dispose()

    assert asyncio.run(journals()) == {"completed": (2, 2), "paused": (2, 2)}
    asyncio.run(purge())
    assert asyncio.run(journals()) == {"completed": (0, 0), "paused": (2, 2)}
