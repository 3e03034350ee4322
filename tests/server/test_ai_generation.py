"""AI workflow generation over REST against the shipped fake model server: drafts validated by the DSL validator,
invalid drafts sent back with the validator's errors (at most 3 drafts), create-from-ai, restarts, tenancy."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.fakemodel import FakeModelServer, parse
from server.store.db import sqlalchemy_url
from tests.conftest import make_settings, run_server
from tests.server.runs_helpers import INVOICES, PAYMENTS, Recorder, wait_for

MATCHER = {
    "type": "matcher",
    "properties": {"left": "@input.invoices", "right": "@input.payments", "matchOn": ["invoice_id"]},
}
VALID = {
    "name": "invoice_matching",
    "description": "Match invoices to payments",
    "definition": {"actions": [MATCHER]},
    "explanation": "The matcher pairs invoices with payments by invoice_id.",
}
INVALID = {**VALID, "definition": {"actions": [{"type": "reconcile_magic", "properties": {}}]}}
SCENARIOS = {
    "scenarios": [
        # A retry prompt carries the validator's errors: the corrected draft answers it.
        {
            "name": "corrected",
            "match": "(?=.*validator rejected your previous draft)(?=.*reconcile invoices)",
            "turns": [{"content": "Here is the fix:\n```json\n" + json.dumps(VALID) + "\n```"}],
        },
        {"name": "first draft", "match": "reconcile invoices", "turns": [{"content": json.dumps(INVALID)}]},
        {"name": "hopeless", "match": "always wrong", "turns": [{"content": json.dumps(INVALID)}]},
        {"name": "right away", "match": "match payments", "turns": [{"content": json.dumps(VALID)}]},
    ]
}


@pytest.fixture
def model() -> Iterator[FakeModelServer]:
    with FakeModelServer(parse(SCENARIOS)) as fake:
        yield fake


def use_model(api: httpx.Client, model: FakeModelServer) -> None:
    assert api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-gen-key-0001"}).status_code < 300
    assert api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url}).status_code < 300


def wait_done(api: httpx.Client, path: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(path).json()
        if status["status"] != "processing":
            return status
        time.sleep(0.05)
    raise AssertionError(f"{path} still processing: {status}")


def test_invalid_first_draft_is_corrected_with_the_validator_errors(api: httpx.Client, model: FakeModelServer) -> None:
    use_model(api, model)
    started = api.post(
        "/ai/generate-workflow",
        json={"prompt": "Reconcile invoices against payments", "llmOptions": {"model": "gpt-4o", "temperature": 0.1}},
    )
    assert started.status_code == 202, started.text
    body = started.json()
    assert body["generation_id"].startswith("llm_gen-")
    assert body["status"] == "processing"
    generation_id = body["generation_id"]

    status = wait_done(api, f"/ai/generate-workflow/{generation_id}/status")
    assert status["status"] == "completed", status
    assert status["attempts"] == 2
    result = api.get(f"/ai/generate-workflow/{generation_id}").json()
    assert result["definition"] == VALID["definition"]
    assert result["name"] == "invoice_matching"
    assert result["explanation"] == VALID["explanation"]
    assert result["validation"] == {"valid": True, "errors": []}
    assert [a["valid"] for a in result["history"]] == [False, True]
    assert "reconcile_magic" in result["history"][0]["errors"][0]

    first, second = (request["body"] for request in model.requests)
    assert first["model"] == "gpt-4o"
    assert first["temperature"] == 0.1
    retry_prompt = second["messages"][-1]["content"]
    assert "The validator rejected your previous draft" in retry_prompt
    assert result["history"][0]["errors"][0] in retry_prompt  # the validator's message goes back to the model
    assert [r["idempotency_key"] for r in model.requests] == [f"{generation_id}:1", f"{generation_id}:2"]


def test_always_invalid_drafts_fail_with_the_validator_errors(api: httpx.Client, model: FakeModelServer) -> None:
    use_model(api, model)
    generation_id = api.post("/ai/generate-workflow", json={"prompt": "always wrong"}).json()["generation_id"]
    status = wait_done(api, f"/ai/generate-workflow/{generation_id}/status")
    assert status["status"] == "failed"
    assert status["attempts"] == 3
    assert len(model.requests) == 3
    assert status["errors"] and status["errors"][0].startswith("workflow.definition.actions[0].type")
    assert "no valid draft after 3 attempts" in status["error"]
    result = api.get(f"/ai/generate-workflow/{generation_id}").json()
    assert result["validation"]["valid"] is False
    assert result["definition"] == INVALID["definition"]


def test_the_prompt_lists_the_org_actions(api: httpx.Client, model: FakeModelServer) -> None:
    use_model(api, model)
    action = {"action_name": "post_to_ledger", "kind": "http", "url": "https://example.com", "http_method": "POST"}
    action["description"] = "Book it"
    assert api.post("/actions", json=action).status_code == 201
    generation_id = api.post("/ai/generate-workflow", json={"prompt": "match payments"}).json()["generation_id"]
    assert wait_done(api, f"/ai/generate-workflow/{generation_id}/status")["status"] == "completed"
    prompt = model.requests[0]["body"]["messages"][0]["content"]
    assert "- post_to_ledger (http): Book it" in prompt
    assert "match payments" in prompt


def test_missing_model_key_fails_with_llm_key_missing(api: httpx.Client, model: FakeModelServer) -> None:
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": model.base_url})
    generation_id = api.post("/ai/generate-workflow", json={"prompt": "match payments"}).json()["generation_id"]
    status = wait_done(api, f"/ai/generate-workflow/{generation_id}/status")
    assert status["status"] == "failed"
    assert "llm_key_missing" in status["error"]
    assert model.requests == []


def test_create_from_ai_creates_a_workflow_that_executes(api: httpx.Client, model: FakeModelServer) -> None:
    use_model(api, model)
    started = api.post("/workflows/create-from-ai", json={"prompt": "Reconcile invoices", "name": "ai_reconciler"})
    assert started.status_code == 202, started.text
    process_id = started.json()["process_id"]
    assert process_id.startswith("aiproc-")
    status = wait_done(api, f"/workflows/generation-status/{process_id}")
    assert status["status"] == "completed", status
    assert status["attempts"] == 2
    workflow_id = status["workflow_id"]
    process = api.get(f"/workflows/create-from-ai/{process_id}").json()
    assert process["workflow_id"] == workflow_id
    assert process["name"] == "ai_reconciler"

    workflow = api.get(f"/workflows/{workflow_id}").json()
    assert workflow["name"] == "ai_reconciler"
    assert workflow["definition"] == VALID["definition"]
    run_id = api.post(
        f"/workflows/{workflow_id}/execute", json={"input": {"invoices": INVOICES, "payments": PAYMENTS}}
    ).json()["run_id"]
    run = wait_for(api, run_id)
    assert run["status"] == "completed", run
    assert [pair["a"]["invoice_id"] for pair in run["context"]["matched"]] == ["INV-001", "INV-002"]


def test_create_from_ai_with_a_taken_name_is_409(api: httpx.Client, model: FakeModelServer) -> None:
    definition = {"actions": [MATCHER]}
    assert api.post("/workflows", json={"name": "taken", "definition": definition}).status_code == 201
    response = api.post("/workflows/create-from-ai", json={"prompt": "match payments", "name": "taken"})
    assert response.status_code == 409
    assert model.requests == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x" * 20_001}, "prompt"),
        ({"prompt": "ok", "llmOptions": {"temperature": 5}}, "llmOptions.temperature"),
    ],
)
def test_bad_requests_are_400_naming_the_field(api: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = api.post("/ai/generate-workflow", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(field)


def test_another_orgs_generation_is_not_found(api: httpx.Client, model: FakeModelServer, server: Any, org: str) -> None:
    use_model(api, model)
    generation_id = api.post("/ai/generate-workflow", json={"prompt": "match payments"}).json()["generation_id"]
    process_id = api.post("/workflows/create-from-ai", json={"prompt": "match payments"}).json()["process_id"]
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": org + "-other"}) as other:
        for path in (
            f"/ai/generate-workflow/{generation_id}",
            f"/ai/generate-workflow/{generation_id}/status",
            f"/workflows/create-from-ai/{process_id}",
            f"/workflows/generation-status/{process_id}",
        ):
            assert other.get(path).status_code == 404, path
    # a generation id is not a create-from-ai process, and the other way round
    assert api.get(f"/workflows/create-from-ai/{generation_id}").status_code == 404
    assert api.get(f"/ai/generate-workflow/{process_id}").status_code == 404


def test_a_generation_survives_a_restart_and_keeps_its_drafts(
    fresh_database: str, tmp_path: Path, model: FakeModelServer
) -> None:
    """Submitted while no worker runs; a draft recorded by a worker that then died; a new process finishes it
    without asking the model for the recorded draft again."""
    org = {"X-Org-Id": "restart-org"}
    with (
        run_server(make_settings(tmp_path, workers=0), fresh_database) as info,
        httpx.Client(base_url=info.http_url, headers=org) as api,
    ):
        use_model(api, model)
        generation_id = api.post("/ai/generate-workflow", json={"prompt": "Reconcile invoices"}).json()["generation_id"]
        time.sleep(0.3)  # no worker: nothing may draft it
        assert api.get(f"/ai/generate-workflow/{generation_id}/status").json()["status"] == "processing"
    assert model.requests == []
    # a worker drafted once, recorded the rejected draft, and died holding the lease (now expired)
    attempts = [{"text": json.dumps(INVALID), "errors": ["workflow.definition.actions[0].type: unknown step type"]}]
    engine = sa.create_engine(sqlalchemy_url(fresh_database))
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE ai_generations SET attempts = :a, lease_owner = 'dead-worker', "
                "lease_expires_at = now() - interval '1 second' WHERE id = :id"
            ),
            {"a": json.dumps(attempts), "id": generation_id},
        )
    engine.dispose()
    with (
        run_server(make_settings(tmp_path, workers=1), fresh_database) as info,
        httpx.Client(base_url=info.http_url, headers=org) as api,
    ):
        status = wait_done(api, f"/ai/generate-workflow/{generation_id}/status")
    assert status["status"] == "completed", status
    assert status["attempts"] == 2
    [request] = model.requests  # only the correction: the recorded first draft was not asked for again
    assert request["idempotency_key"] == f"{generation_id}:2"


def test_demo_model_drafts_valid_workflows_with_free_names(api: httpx.Client) -> None:
    with FakeModelServer() as demo:  # the built-in demo scenarios, as `hyphae serve --demo` uses them
        use_model(api, demo)
        names = []
        for _ in range(2):
            process_id = api.post("/workflows/create-from-ai", json={"prompt": "anything"}).json()["process_id"]
            status = wait_done(api, f"/workflows/generation-status/{process_id}")
            assert status["status"] == "completed", status
            names.append(api.get(f"/workflows/{status['workflow_id']}").json()["name"])
    assert names == ["demo_generated_workflow", "demo_generated_workflow_2"]


def test_create_from_ai_registers_the_actions_the_draft_defines(api: httpx.Client, recorder: Recorder) -> None:
    notify = {"action_name": "notify_finance", "kind": "http", "url": recorder.url, "http_method": "POST"}
    step = {"type": "notify_finance", "properties": {"invoice": "@input.invoice_id"}}
    draft = {"name": "notify", "description": "", "definition": {"actions": [step]}, "actions": [notify]}
    broken = {**draft, "actions": [{**notify, "url": "not a url"}]}
    script = {
        "scenarios": [
            {"match": "(?=.*validator rejected)(?=.*tell finance)", "turns": [{"content": json.dumps(draft)}]},
            {"match": "tell finance", "turns": [{"content": json.dumps(broken)}]},
        ]
    }
    with FakeModelServer(parse(script)) as fake:
        use_model(api, fake)
        process_id = api.post("/workflows/create-from-ai", json={"prompt": "tell finance"}).json()["process_id"]
        status = wait_done(api, f"/workflows/generation-status/{process_id}")
    assert status["status"] == "completed", status
    process = api.get(f"/workflows/create-from-ai/{process_id}").json()
    assert process["history"][0]["errors"][0].startswith("actions[0]: url: must be an absolute")
    assert process["actions"] == [notify]
    [registered] = api.get("/actions").json()["actions"]
    assert {k: registered[k] for k in notify} == notify
    run_id = api.post(f"/workflows/{status['workflow_id']}/execute", json={"input": {"invoice_id": "A-7"}}).json()[
        "run_id"
    ]
    assert wait_for(api, run_id)["status"] == "completed"
    assert [call["body"] for call in recorder.calls] == [{"invoice": "A-7"}]


def test_generate_only_does_not_register_drafted_actions(api: httpx.Client) -> None:
    action = {"action_name": "summarize_it", "kind": "llm", "template": "Summarize: {{text}}"}
    draft = {"name": "s", "definition": {"actions": [{"type": "summarize_it"}]}, "actions": [action]}
    with FakeModelServer(parse({"scenarios": [{"match": "summ", "turns": [{"content": json.dumps(draft)}]}]})) as fake:
        use_model(api, fake)
        generation_id = api.post("/ai/generate-workflow", json={"prompt": "summarize"}).json()["generation_id"]
        status = wait_done(api, f"/ai/generate-workflow/{generation_id}/status")
    assert status["status"] == "completed", status
    assert api.get(f"/ai/generate-workflow/{generation_id}").json()["actions"] == [action]
    assert api.get("/actions").json()["actions"] == []
