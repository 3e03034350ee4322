"""llm actions: the template filled from the step's properties, sent to the org's OpenAI-compatible endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from server.fakemodel import FakeModelServer, ScenarioFile
from tests.server.runs_helpers import wait_for


class FakeModel(FakeModelServer):
    """The shipped fake model server, scripted to answer "summary of: <prompt>" unless a test sets `answer`."""

    def __init__(self) -> None:
        super().__init__(ScenarioFile.single({"content": "summary of: {{last_message}}"}))

    @property
    def answer(self) -> str | None:
        turn = self.scenarios.scenarios[0].steps[0].answer
        return turn.content if turn else None

    @answer.setter
    def answer(self, content: str) -> None:
        """Every request answers `content` from now on."""
        self.scenarios = ScenarioFile.single({"content": content})


@pytest.fixture
def model() -> Iterator[FakeModel]:
    with FakeModel() as fake:
        yield fake


def summarize(api: httpx.Client) -> str:
    action = {
        "action_name": "summarize_document",
        "kind": "llm",
        "template": "Summarize the following document in 3 bullet points:\n\n{{document_text}}",
        "model": "gpt-4",
        "max_tokens": 500,
        "outputKey": "summary",
    }
    assert api.post("/actions", json=action).status_code == 201
    step = {"type": "summarize_document", "properties": {"document_text": "@input.document_content"}}
    workflow_id = api.post("/workflows", json={"name": "s", "definition": {"actions": [step]}}).json()["id"]
    body = {"input": {"document_content": "Q3 revenue grew 12%."}}
    return str(api.post(f"/workflows/{workflow_id}/execute", json=body).json()["run_id"])


def test_llm_step_stores_the_generated_text(api: httpx.Client, model: FakeModel) -> None:
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-test-llm-key-123"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    run = wait_for(api, summarize(api))
    assert run["status"] == "completed", run
    prompt = "Summarize the following document in 3 bullet points:\n\nQ3 revenue grew 12%."
    assert run["context"]["summary"] == f"summary of: {prompt}"
    [request] = model.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test-llm-key-123"
    assert request["body"]["model"] == "gpt-4"
    assert request["body"]["max_tokens"] == 500
    assert "sk-test-llm-key-123" not in str(run)


def test_missing_model_key_fails_with_llm_key_missing(api: httpx.Client, model: FakeModel) -> None:
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    run = wait_for(api, summarize(api))
    assert run["status"] == "failed"
    assert "llm_key_missing" in run["error"]
    assert model.requests == []
