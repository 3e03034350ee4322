"""Scenario files: malformed files are refused with the offending field named."""

from __future__ import annotations

from typing import Any

import pytest

from server.fakemodel import DEMO_SCENARIOS, ScenarioError, load, parse


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"scenarios": [{"match": "(", "turns": [{"content": "x"}]}]}, "scenarios[0].match[0]"),
        ({"scenarios": [{"match": "a", "turns": []}]}, "scenarios[0].turns"),
        ({"scenarios": [{"turns": [{"contnet": "x"}]}]}, "scenarios[0].turns[0]: unknown key"),
        ({"scenarios": [{"turns": [{"error": {"status": 200}}]}]}, "scenarios[0].turns[0].error.status"),
        ({"scenarios": [{"turns": [{"content": "{{nope}}"}]}]}, "scenarios[0].turns[0].content: unknown placeholder"),
        ({"scenarios": [{"turns": [{"action": "a", "content": "x"}]}]}, "scenarios[0].turns[0]: a ReAct turn"),
        ({"scenarios": [{"turns": [{"content": "x", "times": 2}]}]}, "scenarios[0].turns[0].times"),
        ({"scenarios": [], "api_key": ""}, "api_key"),
        ({"scenario": []}, "scenario file: unknown key"),
    ],
)
def test_malformed_file_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(ScenarioError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(raw)


def test_shipped_demo_file_loads() -> None:
    demo = load(DEMO_SCENARIOS)
    assert demo.default is not None
    assert demo.scenarios
