"""The fake model server over real HTTP: turn choice by history, tool-call format, scripted errors, auth,
determinism and the request log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server.fakemodel import DEMO_SCENARIOS, FakeModelServer, ScenarioFile, load, parse

SCRIPT = {
    "scenarios": [
        {
            "name": "refund",
            "match": ["refund request", "chargeback"],
            "turns": [
                {"thought": "Look up the order.", "action": "lookup_order", "action_input": {"order_id": "A-1"}},
                {
                    "thought": "Total is {{last_json.order.total}}.",
                    "action": "__complete__",
                    "action_input": {"answer": "refund", "amount": "{{last_json.order.total}}"},
                },
            ],
        },
        {
            "name": "flaky",
            "match": "flaky",
            "turns": [
                {"error": {"status": 429, "message": "slow down", "retry_after": 2}, "times": 2},
                {"content": "ok"},
            ],
        },
        {"name": "broken", "match": "always broken", "turns": [{"error": {"status": 503, "message": "down"}}]},
        {
            "name": "tools",
            "match": "use tools",
            "turns": [
                {"content": "Checking both.", "tool_calls": [{"name": "a", "arguments": {"x": 1}}, {"name": "b"}]}
            ],
            "then": {"content": "finished after {{turn}} turns"},
        },
    ]
}


@pytest.fixture
def fake() -> Iterator[FakeModelServer]:
    with FakeModelServer(parse(SCRIPT)) as server:
        yield server


@pytest.fixture
def client(fake: FakeModelServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer sk-any"}, timeout=10) as http:
        yield http


def chat(client: httpx.Client, messages: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    return client.post("/chat/completions", json={"model": "gpt-4", "messages": messages, **extra})


def content(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"]


def test_turn_follows_the_number_of_assistant_messages(client: httpx.Client) -> None:
    start = [{"role": "system", "content": "You are an agent."}, {"role": "user", "content": "Handle refund request 7"}]
    first = json.loads(content(chat(client, start)))
    assert first == {"thought": "Look up the order.", "action": "lookup_order", "action_input": {"order_id": "A-1"}}
    history = [
        *start,
        {"role": "assistant", "content": json.dumps(first)},
        {"role": "user", "content": '{"order": {"total": 42.5}}'},
    ]
    second = json.loads(content(chat(client, history)))
    assert second["action"] == "__complete__"
    assert second["thought"] == "Total is 42.5."
    assert second["action_input"] == {"answer": "refund", "amount": 42.5}  # a lone placeholder keeps the JSON type
    # replaying the first request (a resumed conversation) answers the first turn again
    assert json.loads(content(chat(client, start))) == first


def test_past_the_last_turn_repeats_it_or_answers_then(client: httpx.Client) -> None:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "refund request"}]
    for _ in range(3):
        msgs.append({"role": "assistant", "content": "x"})
    assert json.loads(content(chat(client, msgs)))["action"] == "__complete__"
    tools: list[dict[str, Any]] = [{"role": "user", "content": "use tools"}, {"role": "assistant", "content": "x"}]
    assert content(chat(client, tools)) == "finished after 1 turns"


def test_tool_calls_use_the_openai_format_when_tools_are_declared(client: httpx.Client) -> None:
    declared = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in "ab"]
    response = chat(client, [{"role": "user", "content": "please use tools"}], tools=declared)
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking both."
    assert choice["message"]["tool_calls"] == [
        {"id": "call_0_0", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
        {"id": "call_0_1", "type": "function", "function": {"name": "b", "arguments": "{}"}},
    ]
    # without declared tools the first call comes back as ReAct JSON
    react = json.loads(content(chat(client, [{"role": "user", "content": "please use tools"}])))
    assert react == {"thought": "Checking both.", "action": "a", "action_input": {"x": 1}}


def test_react_turn_becomes_a_tool_call_only_for_a_declared_tool(client: httpx.Client) -> None:
    msgs = [{"role": "user", "content": "chargeback"}]
    lookup = [{"type": "function", "function": {"name": "lookup_order"}}]
    message = chat(client, msgs, tools=lookup).json()["choices"][0]["message"]
    assert message["content"] == "Look up the order."
    assert message["tool_calls"][0]["function"] == {"name": "lookup_order", "arguments": '{"order_id": "A-1"}'}
    other = [{"type": "function", "function": {"name": "something_else"}}]
    assert json.loads(content(chat(client, msgs, tools=other)))["action"] == "lookup_order"


def test_scripted_errors_fail_a_conversation_the_given_times_with_retry_after(client: httpx.Client) -> None:
    msgs = [{"role": "user", "content": "flaky call"}]
    for _ in range(2):
        failed = chat(client, msgs)
        assert failed.status_code == 429
        assert failed.headers["retry-after"] == "2"
        assert failed.json()["error"]["message"] == "slow down"
    assert content(chat(client, msgs)) == "ok"
    # another conversation (here: another Idempotency-Key) gets its own failures
    assert (
        client.post("/chat/completions", json={"messages": msgs}, headers={"Idempotency-Key": "run-2:0"}).status_code
        == 429
    )


def test_an_error_with_no_answer_after_it_fails_every_time(client: httpx.Client) -> None:
    for _ in range(3):
        response = chat(client, [{"role": "user", "content": "always broken"}])
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "down"


def test_answers_are_deterministic_with_word_count_usage(fake: FakeModelServer, client: httpx.Client) -> None:
    msgs = [{"role": "user", "content": "refund request for order A-1"}]
    first, second = chat(client, msgs).json(), chat(client, msgs).json()
    assert first == second
    assert first["usage"]["prompt_tokens"] == 5
    completion = first["choices"][0]["message"]["content"]
    assert first["usage"]["completion_tokens"] == len(completion.split())
    assert first["usage"]["total_tokens"] == 5 + len(completion.split())
    assert [r["path"] for r in fake.requests] == ["/v1/chat/completions"] * 2
    assert fake.requests[0]["body"]["messages"] == msgs
    assert fake.requests[0]["auth"] == "Bearer sk-any"


def test_missing_key_is_401_in_openai_error_shape(fake: FakeModelServer) -> None:
    with httpx.Client(base_url=fake.base_url, timeout=10) as anonymous:
        response = anonymous.post("/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert response.status_code == 401
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert anonymous.get("/models").status_code == 401
        assert anonymous.get(fake.base_url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


def test_a_scenario_file_key_must_match() -> None:
    with FakeModelServer(parse({**SCRIPT, "api_key": "sk-right"})) as fake:
        url = fake.base_url + "/chat/completions"
        body = {"messages": [{"role": "user", "content": "flaky"}]}
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer sk-right"}).status_code == 429


def test_no_matching_scenario_is_a_clear_400(client: httpx.Client) -> None:
    response = chat(client, [{"role": "user", "content": "something else entirely"}])
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_scenario_matched"
    assert "refund" in response.json()["error"]["message"]


def test_streaming_and_malformed_requests_are_refused(client: httpx.Client) -> None:
    assert chat(client, [{"role": "user", "content": "flaky"}], stream=True).status_code == 400
    assert client.post("/chat/completions", content=b"not json").status_code == 400
    assert client.post("/chat/completions", json={"messages": []}).status_code == 400


def test_models_lists_the_scenario_file_models(client: httpx.Client) -> None:
    assert [m["id"] for m in client.get("/models").json()["data"]] == ["hyphae-fake"]


def test_demo_scenarios_answer_llm_prompts_and_unknown_objectives() -> None:
    demo = load(DEMO_SCENARIOS)
    with (
        FakeModelServer(demo) as fake,
        httpx.Client(base_url=fake.base_url, headers={"Authorization": "Bearer x"}) as c,
    ):
        assert content(chat(c, [{"role": "user", "content": "Summarize: sales grew"}])) == (
            "[demo model] Summarize: sales grew"
        )
        agent = [{"role": "system", "content": 'Answer JSON {"thought", "action", "action_input"}'}]
        answer = json.loads(content(chat(c, [*agent, {"role": "user", "content": "Count the stars"}])))
        assert answer["action"] == "__complete__"
        first = json.loads(content(chat(c, [*agent, {"role": "user", "content": "I was charged twice"}])))
        assert first["action"] == "lookup_order"


def test_served_scenarios_can_be_replaced(fake: FakeModelServer, client: httpx.Client) -> None:
    fake.scenarios = ScenarioFile.single({"content": "new script: {{first_user_message}}"})
    assert content(chat(client, [{"role": "user", "content": "anything"}])) == "new script: anything"
