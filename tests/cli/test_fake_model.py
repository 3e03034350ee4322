"""`hyphae fake-model` and `hyphae serve --demo`: the scripted model as a newcomer meets it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.cli.test_serve import environment, free_port, launch, stop
from tests.server.runs_helpers import wait_for


def test_fake_model_command_answers_chat_completions(data_dir: Path) -> None:
    port = free_port()
    process = launch(["fake-model", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "fake-model did not start"
                time.sleep(0.1)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarize: it works"}]}
        response = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"})
        assert response.json()["choices"][0]["message"]["content"] == "[demo model] Summarize: it works"
    finally:
        printed = stop(process)
    assert f"http://127.0.0.1:{port}/v1" in printed


def test_serve_demo_runs_llm_steps_without_an_api_key(data_dir: Path, fresh_database: str) -> None:
    http_port, grpc_port = free_port(), free_port()
    env = environment(data_dir, http_port, grpc_port)
    env.update(HYPHAE_DATABASE_URL=fresh_database, HYPHAE_TRUST_ORG_HEADER="true")
    process = launch(["serve", "--demo"], env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers={"X-Org-Id": "demo-org"}) as api:
            deadline = time.monotonic() + 60
            while True:
                try:
                    api.get("/health", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "serve --demo did not start"
                    time.sleep(0.2)
            action = {"action_name": "summarize", "kind": "llm", "template": "Summarize: {{text}}", "outputKey": "s"}
            assert api.post("/actions", json=action).status_code == 201
            step = {"type": "summarize", "properties": {"text": "@input.text"}}
            created = api.post("/workflows", json={"name": "demo", "definition": {"actions": [step]}})
            started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": {"text": "Q3 grew"}})
            run = wait_for(api, started.json()["run_id"])
            assert run["status"] == "completed", run
            assert run["context"]["s"] == "[demo model] Summarize: Q3 grew"
    finally:
        output = stop(process)
    assert "Demo model (scripted, no API key)" in output
