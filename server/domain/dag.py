"""A workflow definition as a graph (POST /utils/generate-dag): nodes for start, end, every step, every filter
condition, onFalse branch and foreach body step; edges in execution order. Pure; the definition must already have
passed the DSL validator."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KINDS = {"matcher": "matcher", "PbotApproval": "approval", "PbotForm": "form", "custom-table": "table"}


@dataclass(frozen=True)
class Node:
    id: str
    kind: str
    type: str = ""
    label: str = ""
    path: str = ""


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


Exits = list[tuple[str, str]]  # (node id, label of the edge that leaves it)


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    def connect(self, exits: Exits, target: str) -> None:
        for source, label in exits:
            self.edges.append(Edge(source, target, label))


def _condition_label(condition: Any) -> str:
    if isinstance(condition, dict) and condition:
        operator = next(iter(condition))
        return f"{operator} {_short(condition[operator])}"
    return _short(condition)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind(step: dict[str, Any]) -> str:
    step_type = str(step.get("type", ""))
    if step_type == "loop":
        properties = step.get("properties") or {}
        return "agent" if properties.get("mode") == "react" else "loop"
    return KINDS.get(step_type, "action")


def _label(step: dict[str, Any]) -> str:
    properties = step.get("properties") or {}
    step_type = str(step.get("type", ""))
    if step_type == "PbotApproval" and isinstance(properties.get("comment"), str):
        return _short(properties["comment"])
    if step_type == "loop" and isinstance(properties.get("objective"), str):
        return _short(properties["objective"])
    if step_type == "loop" and isinstance(properties.get("items_path"), str):
        return f"for each in {properties['items_path']}"
    return str(step.get("name") or step_type)


def _step(graph: Graph, step: dict[str, Any], node_id: str, incoming: Exits) -> Exits:
    path = f"definition.{node_id}"
    skipped: Exits = []
    condition = (step.get("filter") or {}).get("condition") if isinstance(step.get("filter"), dict) else None
    if condition is None:
        condition = step.get("condition")
    if condition is not None:
        check = f"{node_id}.filter"
        graph.nodes.append(Node(check, "condition", label=_condition_label(condition), path=f"{path}.filter"))
        graph.connect(incoming, check)
        incoming = [(check, "true")]
        on_false = step.get("onFalse")
        if isinstance(on_false, dict):
            skipped = _step(graph, on_false, f"{node_id}.onFalse", [(check, "false")])
        else:
            skipped = [(check, "false")]
    graph.nodes.append(Node(node_id, _kind(step), str(step.get("type", "")), _label(step), path))
    graph.connect(incoming, node_id)
    exits: Exits = [(node_id, "")]
    properties = step.get("properties") or {}
    body = properties.get("actions_to_execute") if step.get("type") == "loop" else None
    if isinstance(body, list) and body:
        body_exits = _sequence(graph, body, f"{node_id}.properties.actions_to_execute", [(node_id, "each item")])
        for source, label in body_exits:
            graph.edges.append(Edge(source, node_id, label or "next item"))
        exits = [(node_id, "done")]
    return exits + skipped


def _sequence(graph: Graph, steps: list[Any], prefix: str, incoming: Exits) -> Exits:
    for index, step in enumerate(steps):
        if isinstance(step, dict):
            incoming = _step(graph, step, f"{prefix}[{index}]", incoming)
    return incoming


def build(definition: dict[str, Any]) -> Graph:
    graph = Graph()
    graph.nodes.append(Node("start", "start", label="start"))
    incoming: Exits = [("start", "")]
    skipped: Exits = []
    condition = definition.get("condition")
    if condition is not None:
        graph.nodes.append(
            Node("condition", "condition", label=_condition_label(condition), path="definition.condition")
        )
        graph.connect(incoming, "condition")
        incoming, skipped = [("condition", "true")], [("condition", "false")]
    exits = _sequence(graph, list(definition.get("actions") or []), "actions", incoming)
    graph.nodes.append(Node("end", "end", label="end"))
    graph.connect(exits + skipped, "end")
    return graph
