"""Org config: secrets encrypted at rest and redacted; plain settings returned exactly."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from server.store.db import sqlalchemy_url
from tests.conftest import ServerInfo


def test_secret_is_redacted_and_encrypted_at_rest(api: httpx.Client, server: ServerInfo) -> None:
    secret = "sk-proj-abc123-very-secret"
    stored = api.post("/org-config", json={"key": "api:openai_key", "value": secret})
    assert stored.status_code == 200, stored.text
    assert stored.json()["value"] == "sk-p****"
    assert stored.json()["redacted"] is True
    listed = api.get("/org-config").text
    assert secret not in listed
    engine = sa.create_engine(sqlalchemy_url(server.database_url))
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT key_id, ciphertext FROM org_config WHERE org_id = :o"), {"o": api.headers["X-Org-Id"]}
        ).one()
    engine.dispose()
    assert secret.encode() not in bytes(row.ciphertext)
    assert len(row.key_id) == 12


def test_short_secrets_show_nothing(api: httpx.Client) -> None:
    assert api.post("/org-config", json={"key": "db:pw", "value": "hunter2"}).json()["value"] == "****"


def test_setting_a_key_again_replaces_it(api: httpx.Client) -> None:
    api.post("/org-config", json={"key": "settings:mode", "value": "a"})
    api.post("/org-config", json={"key": "settings:mode", "value": "b"})
    entries = api.get("/org-config").json()["entries"]
    assert [(e["key"], e["value"]) for e in entries] == [("settings:mode", "b")]


def test_plain_config_round_trips_exactly(api: httpx.Client) -> None:
    value = '{"z":42,"a":1.5,"big":1152921504606846976,"list":[[1],[2.50,[3]]]}'
    body = '{"key":"settings:limits","value":' + value + "}"
    api.post("/org-config", content=body)  # no Content-Type, as the docs' curl examples send it
    assert '"value":' + value + "," in api.get("/org-config").text


def test_secret_values_must_be_strings(api: httpx.Client) -> None:
    response = api.post("/org-config", json={"key": "api:n", "value": 5})
    assert response.status_code == 400
    assert response.json()["message"].startswith("value:")


def test_delete_config_key(api: httpx.Client) -> None:
    api.post("/org-config", json={"key": "settings:x", "value": 1})
    assert api.delete("/org-config/settings:x").json() == {"key": "settings:x", "deleted": True}
    assert api.delete("/org-config/settings:x").status_code == 404


def test_keys_without_a_known_prefix_are_secrets_too(api: httpx.Client) -> None:
    stored = api.post("/org-config", json={"key": "openai_key", "value": "sk-proj-unprefixed-secret"})
    assert stored.json()["value"] == "sk-p****"
    assert "unprefixed" not in api.get("/org-config").text


def test_config_values_must_be_strict_json_over_grpc(server: ServerInfo, org: str) -> None:
    import grpc
    from hyphae.api.v1 import json_pb2
    from hyphae.orgs.v1 import org_config_service_pb2, org_config_service_pb2_grpc

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = org_config_service_pb2_grpc.OrgConfigServiceStub(channel)
        for raw in ("NaN", "this is not json", ""):
            request = org_config_service_pb2.SetOrgConfigRequest(key="settings:x", value=json_pb2.Json(raw=raw))
            try:
                stub.SetOrgConfig(request, metadata=(("x-org-id", org),), timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert (exc.details() or "").startswith("value")
            else:
                raise AssertionError(f"{raw!r} was accepted")
