"""The Python gRPC client (clients/python/hyphae_client) against the real server: JSON values stay exact across
REST and gRPC, and errors carry the gRPC code and the hyphae-reason trailer."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from hyphae_client import HyphaeClient, HyphaeError, Workflow, from_json, to_json
from tests.conftest import ServerInfo

BIG = 2**60


def definition() -> dict[str, Any]:
    """A valid definition with ints, a float, an int past 2**53 and keys in a deliberately unsorted order."""
    return {
        "actions": [
            {
                "type": "PbotApproval",
                "properties": {"comment": "ok?", "zeta": 1, "alpha": BIG, "mid": [1.5, 42, [2, 3]]},
            }
        ]
    }


def assert_exact(value: Any, expected: Any) -> None:
    """Equal, with the same types (42 stays int, not 42.0) and the same key order at every level."""
    assert type(value) is type(expected), (value, expected)
    if isinstance(expected, dict):
        assert list(value) == list(expected)
        for key in expected:
            assert_exact(value[key], expected[key])
    elif isinstance(expected, list):
        assert len(value) == len(expected)
        for got, want in zip(value, expected, strict=True):
            assert_exact(got, want)
    else:
        assert value == expected


@pytest.fixture
def client(server: ServerInfo, org: str) -> Iterator[HyphaeClient]:
    with HyphaeClient(server.grpc_target, org_id=org, timeout=30) as c:
        yield c


def test_json_helpers_keep_exactness() -> None:
    value = {"z": 1, "a": [BIG, 1.5, None, True, "é"]}
    message = to_json(value)
    assert message.raw == '{"z":1,"a":[1152921504606846976,1.5,null,true,"é"]}'
    assert_exact(from_json(message), value)
    assert from_json(None) is None
    assert from_json(type(message)()) is None


def test_rest_created_workflow_reads_back_exactly_over_grpc(api: httpx.Client, client: HyphaeClient) -> None:
    name = f"exact-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"name": name, "definition": definition(), "description": "from REST"})
    created = api.post("/workflows", content=body, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    workflow_id = created.json()["id"]

    workflows, token = client.list_workflows()
    assert token == ""
    assert [w.id for w in workflows] == [workflow_id]
    listed = workflows[0]
    assert isinstance(listed, Workflow)
    assert (listed.name, listed.description, listed.version) == (name, "from REST", 1)
    assert_exact(listed.definition, definition())
    properties = listed.definition["actions"][0]["properties"]
    assert list(properties) == ["comment", "zeta", "alpha", "mid"]
    assert properties["alpha"] == BIG and type(properties["alpha"]) is int
    assert type(properties["mid"][1]) is int and type(properties["mid"][0]) is float

    got = client.get_workflow(workflow_id)
    assert got == listed
    assert [w.id for w in client.iter_workflows()] == [workflow_id]


def test_client_created_workflow_reads_back_exactly_over_rest(api: httpx.Client, client: HyphaeClient) -> None:
    name = f"grpc-{uuid.uuid4().hex[:8]}"
    created = client.create_workflow(name, definition(), description="from gRPC")
    assert created.id.startswith("wfl-")
    assert (created.name, created.version) == (name, 1)
    assert_exact(created.definition, definition())

    response = api.get(f"/workflows/{created.id}")
    assert response.status_code == 200, response.text
    rest = response.json()
    assert (rest["id"], rest["name"], rest["description"]) == (created.id, name, "from gRPC")
    assert_exact(rest["definition"], definition())

    changed = {"actions": [{"type": "PbotApproval", "properties": {"comment": "again", "b": 2, "a": 1}}]}
    updated = client.update_workflow(created.id, name=name, definition=changed)
    assert updated.version == 2
    assert_exact(api.get(f"/workflows/{created.id}").json()["definition"], changed)

    client.delete_workflow(created.id)
    assert api.get(f"/workflows/{created.id}").status_code == 404


def test_missing_workflow_raises_not_found(client: HyphaeClient) -> None:
    with pytest.raises(HyphaeError) as caught:
        client.get_workflow("wfl-does-not-exist")
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert caught.value.reason == "NOT_FOUND"
    assert caught.value.message


def test_invalid_definition_raises_invalid_argument(client: HyphaeClient) -> None:
    with pytest.raises(HyphaeError) as caught:
        client.create_workflow(f"bad-{uuid.uuid4().hex[:8]}", {"actions": [{"type": "PbotApproval"}]})
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "comment" in caught.value.message


def test_actions_org_config_and_health(api: httpx.Client, client: HyphaeClient) -> None:
    assert client.health().status == "ok"

    action = client.create_action(
        {
            "action_name": "notify_ops",
            "kind": "http",
            "url": "https://example.com/hook",
            "http_method": "POST",
            "outputKey": "notified",
            "body": {"z": 1, "a": BIG},
            "headers": {"X-Trace": "1"},
        }
    )
    assert action.id.startswith("act-")
    assert action.output_key == "notified"
    assert_exact(from_json(action.body), {"z": 1, "a": BIG})
    assert [a.id for a in client.list_actions()] == [action.id]
    assert api.get(f"/actions/{action.id}").json()["outputKey"] == "notified"

    limits = {"max": 10, "ratio": 0.5, "big": BIG}
    entry = client.set_org_config("settings:limits", limits)
    assert not entry.redacted
    assert_exact(entry.value, limits)
    secret = client.set_org_config("api:openai_key", "sk-proj-0123456789abcdef")
    assert secret.redacted and secret.value != "sk-proj-0123456789abcdef"
    entries = {e.key: e for e in client.list_org_config()}
    assert set(entries) == {"settings:limits", "api:openai_key"}
    assert_exact(entries["settings:limits"].value, limits)
    assert entries["api:openai_key"].redacted


def test_missing_org_is_an_error_with_reason(server: ServerInfo) -> None:
    with HyphaeClient(server.grpc_target) as anonymous, pytest.raises(HyphaeError) as caught:
        anonymous.list_workflows()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.reason


def test_run_events_stream_until_the_final_one(api: httpx.Client, client: HyphaeClient) -> None:
    step = {"type": "matcher", "properties": {"left": "@input.l", "right": "@input.r", "matchOn": ["id"]}}
    workflow = client.create_workflow("watched", {"actions": [step]})
    run_id = client.execute_workflow(workflow.id, {"l": [{"id": 1}], "r": [{"id": BIG}]})
    events = list(client.watch_run(run_id))  # the server ends the stream after the final event
    assert [e.type for e in events] == ["workflow_run_started", "step_completed", "workflow_run_completed"]
    assert [e.sequence for e in events] == [1, 2, 3]
    assert events[1].data["index"] == 0 and events[0].created_at is not None
    assert [e.sequence for e in client.watch_run(run_id, after_sequence=2)] == [3]
    run = client.get_run(run_id)
    assert (run.status, run.final, run.error) == ("completed", True, "")
    assert run.output["unmatchedRight"] == [{"id": BIG}]
    assert [(s.index, s.status) for s in run.steps] == [(0, "completed")]


def test_a_paused_run_lists_its_interrupt_and_takes_the_approval(client: HyphaeClient) -> None:
    workflow = client.create_workflow("approve", definition())
    run_id = client.execute_workflow(workflow.id)
    events = client.watch_run(run_id)
    assert [next(events).type for _ in range(2)] == ["workflow_run_started", "pbot_approval_requested"]
    events.close()  # a paused run keeps the stream open: the caller stops
    [waiting] = client.list_interrupts(run_id)
    assert (waiting.kind, waiting.step_index, waiting.answer_path) == ("approval", 0, f"/approvals/{run_id}/0")
    client.submit_approval(run_id, 0, approved=True, comment="fine")
    assert list(client.watch_run(run_id, after_sequence=2))[-1].type == "workflow_run_completed"
    assert client.list_interrupts(run_id) == []


def test_upload_streams_chunks_and_download_writes_the_file(client: HyphaeClient, tmp_path: Path) -> None:
    source = tmp_path / "report.md"
    source.write_bytes(b"# Report\n" + b"x" * (2 * 1024 * 1024 + 5))
    sent: list[int] = []
    document, deduplicated = client.upload_document(source, name="Report", tags=["q3"], progress=sent.append)
    assert not deduplicated and (document.name, document.tags) == ("Report", ["q3"])
    assert sent == [1024 * 1024, 1024 * 1024, source.stat().st_size - 2 * 1024 * 1024]
    assert document.size_bytes == source.stat().st_size and document.content_type == "text/markdown"
    assert client.upload_document(source)[0].id == document.id

    received: list[int] = []
    download = client.download_document(document.id, tmp_path / "copy.md", progress=received.append)
    assert (tmp_path / "copy.md").read_bytes() == source.read_bytes()
    assert sum(received) == download.size_bytes == document.size_bytes
    assert download.checksum_sha256 == document.checksum_sha256
    with pytest.raises(HyphaeError) as missing:
        client.download_document("doc_" + "0" * 32, tmp_path / "none.md")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert sorted(tmp_path.iterdir()) == sorted([source, tmp_path / "copy.md"])  # no partial file left


def test_bulk_insert_names_the_refused_row_and_field(client: HyphaeClient) -> None:
    table = client.create_table(
        "stock", [{"name": "sku", "type": "text", "required": True}, {"name": "qty", "type": "integer"}]
    )
    assert [f["name"] for f in table.fields] == ["sku", "qty"] and client.get_table("stock").id == table.id
    ids = client.bulk_insert_rows("stock", [{"sku": f"S{i}", "qty": i} for i in range(250)])
    assert len(ids) == 250
    with pytest.raises(HyphaeError) as refused:
        client.bulk_insert_rows("stock", [{"sku": "ok", "qty": 1}, {"sku": "bad", "qty": "lots"}])
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.field == "rows[1].qty" and refused.value.message.startswith("rows[1].qty: ")
    page = client.list_rows("stock", limit=100, sort="-qty")
    assert page.total == 250 and len(page.rows) == 100 and page.next_page_token
    assert page.rows[0]["qty"] == 249
    assert client.list_rows("stock", where={"sku": "S7"}).rows[0]["qty"] == 7
