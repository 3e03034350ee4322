"""The pure parts of the ReAct loop: reading the model's decision, stuck detection, __complete__'s result, settings."""

from __future__ import annotations

import pytest

from server.domain import agent as react
from server.runtime.llm import ChatReply, ToolCall


def test_a_native_tool_call_is_the_decision_when_tools_were_offered() -> None:
    reply = ChatReply("Checking the order.", [ToolCall("call_1", "lookup_order", '{"order_id": "O-1"}')])
    decision = react.decide(reply, tools_offered=True)
    assert decision == react.Decision("Checking the order.", "lookup_order", {"order_id": "O-1"}, "call_1")
    assert react.observation_message(decision, {"ok": True}) == {
        "role": "tool",
        "tool_call_id": "call_1",
        "content": '{"ok": true}',
    }
    assert react.assistant_message(reply, decision)["tool_calls"][0]["function"]["name"] == "lookup_order"


def test_react_json_content_is_the_decision_otherwise() -> None:
    content = '```json\n{"thought": "t", "action": "__complete__", "action_input": {"answer": 1}}\n```'
    decision = react.decide(ChatReply(content), tools_offered=True)
    assert decision == react.Decision("t", "__complete__", {"answer": 1})
    assert react.observation_message(decision, "done") == {"role": "user", "content": "Observation: done"}


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("I will look it up.", "not JSON"),
        ('{"action": "a", "action_input": {"x": NaN}}', "NaN is not valid JSON"),  # would poison the journal
        ("[1, 2]", "not a JSON object"),
        ('{"thought": "t"}', "'action' must be a non-empty string"),
        ('{"action": "a", "action_input": [1]}', "'action_input' must be a JSON object"),
    ],
)
def test_a_reply_that_is_not_a_decision_says_why(content: str, problem: str) -> None:
    with pytest.raises(react.BadReply, match=problem):
        react.decide(ChatReply(content), tools_offered=False)


def test_tool_call_arguments_that_are_not_json_are_a_bad_reply() -> None:
    with pytest.raises(react.BadReply, match="arguments of tool call 'a' are not JSON"):
        react.decide(ChatReply("", [ToolCall("c", "a", "{oops")]), tools_offered=True)
    with pytest.raises(react.BadReply, match="Infinity is not valid JSON"):
        react.decide(ChatReply("", [ToolCall("c", "a", '{"x": Infinity}')]), tools_offered=True)


def decision(action: str, thought: str = "", **action_input: object) -> react.Decision:
    return react.Decision(thought or f"thinking about {action} {action_input}", action, dict(action_input))


def test_the_same_action_with_the_same_input_n_times_is_stuck() -> None:
    history = [decision("a", x=1), decision("a", x=1)]
    assert react.stuck(history, 3) == ""
    assert "the same action 'a' with the same input 3 times" in react.stuck([*history, decision("a", x=1)], 3)
    assert react.stuck([*history, decision("a", x=2)], 3) == ""


def test_repeated_thoughts_and_alternating_actions_are_stuck() -> None:
    same_thought = [decision("a", "hmm", x=i) for i in range(3)]
    assert "the same thought" in react.stuck(same_thought, 3)
    alternating = [decision("a", x=1), decision("b", y=2)] * 3
    assert "alternating between 'a' and 'b'" in react.stuck(alternating, 3)
    progressing = [decision("a", x=i) for i in range(6)]
    assert react.stuck(progressing, 3) == ""


def test_complete_defaults_confidence_to_one_and_clamps_it() -> None:
    assert react.completion({"answer": "yes"}) == {"answer": "yes", "confidence": 1.0, "summary": ""}
    assert react.completion({"answer": {"a": 1}, "confidence": 7, "summary": "s"})["confidence"] == 1.0
    assert react.completion({"answer": "x", "confidence": "0.25"})["confidence"] == 0.25


def test_settings_read_the_react_properties() -> None:
    settings = react.settings(
        {
            "objective": "o",
            "tools": ["lookup"],
            "max_iterations": 4,
            "timeout_ms": 1000,
            "on_stuck": {"action": "escalate"},
            "result_key": "r",
        }
    )
    assert settings.max_iterations == 4 and settings.timeout_ms == 1000 and settings.result_key == "r"
    assert settings.on_stuck == react.OnStuck(iterations=3, action="escalate", hint="")
    assert react.settings({"objective": "o"}).max_iterations == react.DEFAULT_MAX_ITERATIONS


def test_the_system_prompt_lists_the_tools_as_the_docs_show() -> None:
    tools = [react.Tool("lookup_ticket", "action", "Look up a support ticket by ID"), react.Tool("x", "action")]
    prompt = react.system_prompt("Resolve TK-1", tools)
    assert prompt.startswith("You are an AI agent. Your objective is:\nResolve TK-1\nYou have access to these tools:")
    assert "- lookup_ticket: Look up a support ticket by ID\n- x\n" in prompt


def test_stuck_detection_defaults_to_three_identical_actions_then_fail() -> None:
    settings = react.settings({"objective": "x"})
    assert settings.on_stuck == react.OnStuck(iterations=3, action="fail", hint="")
