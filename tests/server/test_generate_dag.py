"""POST /utils/generate-dag: a workflow definition as nodes and edges (no model involved)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server.test_tutorial_t1 import CREATE_WORKFLOW


def edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["source"], e["target"], e["label"]) for e in graph["edges"]}


def test_t1_workflow_graph_has_its_filter_as_a_condition(api: httpx.Client) -> None:
    response = api.post("/utils/generate-dag", json={"definition": CREATE_WORKFLOW["definition"]})
    assert response.status_code == 200, response.text
    graph = response.json()
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds == {
        "start": "start",
        "actions[0]": "matcher",
        "actions[1].filter": "condition",
        "actions[1]": "action",
        "end": "end",
    }
    assert edges(graph) == {
        ("start", "actions[0]", ""),
        ("actions[0]", "actions[1].filter", ""),
        ("actions[1].filter", "actions[1]", "true"),
        ("actions[1].filter", "end", "false"),
        ("actions[1]", "end", ""),
    }
    step = next(n for n in graph["nodes"] if n["id"] == "actions[1]")
    assert step["type"] == "update_erp_status"
    assert step["path"] == "definition.actions[1]"


def test_loop_bodies_onfalse_branches_and_approvals(api: httpx.Client) -> None:
    definition = {
        "actions": [
            {
                "type": "loop",
                "properties": {
                    "mode": "foreach",
                    "items_path": "@input.items",
                    "item_variable_name": "item",
                    "actions_to_execute": [
                        {"type": "check_item", "properties": {"id": "@item.id"}},
                        {"type": "PbotApproval", "properties": {"comment": "Ship it?"}},
                    ],
                },
            },
            {
                "type": "notify",
                "filter": {"condition": {"equal": ["@__approved", True]}},
                "onFalse": {"type": "PbotForm", "properties": {"expected_keys": ["reason"]}},
            },
        ]
    }
    graph = api.post("/utils/generate-dag", json={"definition": definition}).json()
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds["actions[0]"] == "loop"
    assert kinds["actions[0].properties.actions_to_execute[1]"] == "approval"
    assert kinds["actions[1].onFalse"] == "form"
    body = "actions[0].properties.actions_to_execute"
    assert edges(graph) == {
        ("start", "actions[0]", ""),
        ("actions[0]", f"{body}[0]", "each item"),
        (f"{body}[0]", f"{body}[1]", ""),
        (f"{body}[1]", "actions[0]", "next item"),
        ("actions[0]", "actions[1].filter", "done"),
        ("actions[1].filter", "actions[1]", "true"),
        ("actions[1].filter", "actions[1].onFalse", "false"),
        ("actions[1]", "end", ""),
        ("actions[1].onFalse", "end", ""),
    }
    approval = next(n for n in graph["nodes"] if n["kind"] == "approval")
    assert approval["label"] == "Ship it?"


def test_a_stored_workflow_and_a_top_level_condition(api: httpx.Client) -> None:
    definition = {
        "condition": {"greaterThan": ["@input.total", 0]},
        "actions": [{"type": "matcher", "properties": {"left": "@input.a", "right": "@input.b", "matchOn": ["id"]}}],
    }
    workflow_id = api.post("/workflows", json={"name": "conditional", "definition": definition}).json()["id"]
    graph = api.post("/utils/generate-dag", json={"workflow_id": workflow_id}).json()
    assert edges(graph) == {
        ("start", "condition", ""),
        ("condition", "actions[0]", "true"),
        ("condition", "end", "false"),
        ("actions[0]", "end", ""),
    }


def test_invalid_definitions_are_400_naming_the_path(api: httpx.Client) -> None:
    response = api.post("/utils/generate-dag", json={"definition": {"actions": [{"properties": {}}]}})
    assert response.status_code == 400
    assert response.json()["message"].startswith("definition.actions[0]")
    assert api.post("/utils/generate-dag", json={}).status_code == 400
    other = api.post("/utils/generate-dag", json={"workflow_id": "wfl-00000000-0000-7000-8000-000000000000"})
    assert other.status_code == 404
