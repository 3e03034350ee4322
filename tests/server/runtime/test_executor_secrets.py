"""Org-config secrets in every part of an http action's request (url, headers, body, step properties): loaded,
sent, and redacted in what the run shows (status, events)."""

from __future__ import annotations

import json

import httpx

from tests.server.runs_helpers import Recorder, wait_for

SECRET = "s3cr3t-body-value-7781"


def test_an_orgconfig_reference_in_the_action_body_is_sent_and_redacted_in_the_run(
    api: httpx.Client, recorder: Recorder
) -> None:
    assert api.post("/org-config", json={"key": "api:x", "value": SECRET}).status_code < 300
    action = {
        "action_name": "notify_partner",
        "kind": "http",
        "url": recorder.url,
        "http_method": "POST",
        "body": {"token": "orgconfig:api:x", "note": "Bearer orgconfig:api:x", "order": "{{order}}"},
        "passthrough": True,
    }
    assert api.post("/actions", json=action).status_code == 201
    definition = {"actions": [{"type": "notify_partner", "properties": {"order": "@input.order"}}]}
    created = api.post("/workflows", json={"name": "secret_body", "definition": definition})
    assert created.status_code == 201, created.text
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": {"order": "A-1"}})
    run = wait_for(api, started.json()["run_id"])

    assert run["status"] == "completed", run
    assert recorder.calls[0]["body"] == {"token": SECRET, "note": f"Bearer {SECRET}", "order": "A-1"}
    # the echo came back in the step's output: redacted wherever the run is shown
    assert run["context"]["notify_partner"]["json"]["token"] == "****"
    assert SECRET not in json.dumps(run)
    events = api.get(f"/runs/{run['run_id']}/events", headers={"accept": "application/x-ndjson"})
    assert events.status_code == 200
    assert "notify_partner" in events.text
    assert SECRET not in events.text


def test_an_orgconfig_reference_in_step_properties_sent_as_the_body_is_loaded(
    api: httpx.Client, recorder: Recorder
) -> None:
    assert api.post("/org-config", json={"key": "api:x", "value": SECRET}).status_code < 300
    action = {"action_name": "post_props", "kind": "http", "url": recorder.url + "?k=1", "http_method": "POST"}
    assert api.post("/actions", json=action).status_code == 201
    definition = {"actions": [{"type": "post_props", "properties": {"auth": "orgconfig:api:x", "n": 1}}]}
    created = api.post("/workflows", json={"name": "secret_props", "definition": definition})
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": {}})
    run = wait_for(api, started.json()["run_id"])

    assert run["status"] == "completed", run
    assert recorder.calls[0]["body"] == {"auth": SECRET, "n": 1}
    assert SECRET not in json.dumps(run)


def test_an_unset_key_in_the_body_fails_the_step_naming_it(api: httpx.Client, recorder: Recorder) -> None:
    action = {
        "action_name": "needs_key",
        "kind": "http",
        "url": recorder.url,
        "http_method": "POST",
        "body": {"token": "orgconfig:api:never_set"},
    }
    assert api.post("/actions", json=action).status_code == 201
    created = api.post("/workflows", json={"name": "unset_key", "definition": {"actions": [{"type": "needs_key"}]}})
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": {}})
    run = wait_for(api, started.json()["run_id"])

    assert run["status"] == "failed"
    assert "api:never_set" in run["error"]
    assert recorder.calls == []
