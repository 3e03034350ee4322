"""Hyphen template T5 (IT incident response) as far as it needs no agent: enrich the indicator over HTTP with an
org-config secret header, look up the asset, let an llm action classify severity, then contain or open a ticket."""

from __future__ import annotations

import httpx

from tests.server.runs_helpers import Recorder, wait_for
from tests.server.test_llm_actions import FakeModel, model

__all__ = ["model"]


def register_t5(api: httpx.Client, recorder: Recorder, fake: FakeModel) -> str:
    base = recorder.url.rsplit("/", 1)[0]
    api.post("/org-config", json={"key": "api:virustotal_key", "value": "vt-secret-key-0001"})
    api.post("/org-config", json={"key": "api:llm_api_key", "value": "sk-model-key-0002"})
    api.post("/org-config", json={"key": "settings:llm_base_url", "value": fake.base_url})
    actions = [
        {
            "action_name": "enrich_indicator",
            "kind": "http",
            "url": base + "/ip_addresses/{{indicator}}",
            "http_method": "GET",
            "headers": {"x-apikey": "orgconfig:api:virustotal_key"},
            "passthrough": True,
        },
        {
            "action_name": "lookup_asset",
            "kind": "http",
            "url": base + "/assets/{{ip}}",
            "http_method": "GET",
            "passthrough": True,
        },
        {
            "action_name": "classify_severity",
            "kind": "llm",
            "template": "Classify.\n\nAlert: {{alert}}\nEnrichment: {{enrichment}}\nAsset info: {{asset}}",
            "model": "gpt-4",
            "max_tokens": 500,
        },
        {"action_name": "block_ip", "kind": "http", "url": base + "/post", "http_method": "POST"},
        {"action_name": "create_ticket", "kind": "http", "url": base + "/post", "http_method": "POST"},
    ]
    for action in actions:
        response = api.post("/actions", json=action)
        assert response.status_code == 201, response.text
    definition = {
        "actions": [
            {
                "type": "enrich_indicator",
                "properties": {"indicator": "@input.alert.source_ip"},
                "outputKey": "enrichment",
            },
            {"type": "lookup_asset", "properties": {"ip": "@input.alert.dest_ip"}, "outputKey": "asset"},
            {
                "type": "classify_severity",
                "properties": {"alert": "@input.alert", "enrichment": "@enrichment", "asset": "@asset"},
                "outputKey": "classification",
            },
            {
                "type": "block_ip",
                "filter": {"condition": {"matches": ["@classification", "severity.{0,4}critical"]}},
                "properties": {"ip": "@input.alert.source_ip", "reason": "auto-containment"},
                "onFalse": {"type": "create_ticket", "properties": {"summary": "Review alert {{input.alert.id}}"}},
            },
        ]
    }
    created = api.post("/workflows", json={"name": "it_incident_response", "definition": definition})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


ALERT = {"id": "AL-7", "source_ip": "203.0.113.9", "dest_ip": "10.0.0.5"}


def test_critical_alert_is_contained(api: httpx.Client, recorder: Recorder, model: FakeModel) -> None:
    model.answer = '{"severity": "critical", "recommendation": "block", "confidence": 0.93}'
    workflow_id = register_t5(api, recorder, model)
    started = api.post(f"/workflows/{workflow_id}/execute", json={"input": {"alert": ALERT}})
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "completed", run
    gets = [call for call in recorder.calls if call.get("method") == "GET"]
    assert [call["path"] for call in gets] == ["/ip_addresses/203.0.113.9", "/assets/10.0.0.5"]
    assert gets[0]["headers"]["x-apikey"] == "vt-secret-key-0001"
    assert "vt-secret-key-0001" not in str(run)
    posts = [call for call in recorder.calls if call.get("method") != "GET"]
    assert [call["body"] for call in posts] == [{"ip": "203.0.113.9", "reason": "auto-containment"}]
    prompt = model.requests[0]["body"]["messages"][0]["content"]
    assert '"reputation":"malicious"' in prompt
    assert [step["on_false"] for step in run["steps"]] == [False, False, False, False]


def test_uncertain_alert_opens_a_ticket(api: httpx.Client, recorder: Recorder, model: FakeModel) -> None:
    model.answer = '{"severity": "medium", "recommendation": "review", "confidence": 0.4}'
    workflow_id = register_t5(api, recorder, model)
    started = api.post(f"/workflows/{workflow_id}/execute", json={"input": {"alert": ALERT}})
    run = wait_for(api, started.json()["run_id"])
    assert run["status"] == "completed", run
    posts = [call for call in recorder.calls if call.get("method") != "GET"]
    assert [call["body"] for call in posts] == [{"summary": "Review alert AL-7"}]
    assert run["steps"][3]["on_false"] is True
    assert run["steps"][3]["type"] == "create_ticket"
