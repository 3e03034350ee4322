"""llm actions: the template filled from the step's properties, sent to the org's OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.server.runs_helpers import wait_for


class FakeModel:
    """Answers chat completions with "summary of: <prompt>", recording requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: str | None = None  # a fixed answer instead of "summary of: <prompt>"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
                owner.requests.append({"path": self.path, "body": body, "auth": self.headers.get("authorization")})
                prompt = body["messages"][-1]["content"]
                content = owner.answer if owner.answer is not None else f"summary of: {prompt}"
                answer = {"choices": [{"message": {"role": "assistant", "content": content}}]}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.server.shutdown()


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
