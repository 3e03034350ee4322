"""Anonymous writes (signup) are limited per client address; health checks never are."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from hyphae.gateway.v1 import gateway_service_pb2 as pb
from hyphae.gateway.v1 import gateway_service_pb2_grpc

from server.config import LOOPBACK_NETWORKS, Settings
from server.interceptors import peer_host
from tests.conftest import make_settings, run_server


def test_signup_is_limited_per_address_and_health_is_not(fresh_database: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, anonymous_rate_limit_per_minute=3)
    with run_server(settings, fresh_database) as info, httpx.Client(base_url=info.http_url) as client:
        statuses = [
            client.post("/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com"}).status_code
            for _ in range(4)
        ]
        assert statuses == [201, 201, 201, 429]
        limited = client.post("/gateway/signup", json={"email": f"{uuid.uuid4().hex}@example.com"})
        assert int(limited.headers["retry-after"]) >= 1
        assert all(client.get("/health").status_code == 200 for _ in range(10))


def test_a_forged_forwarded_address_from_an_untrusted_peer_is_ignored(fresh_database: str, tmp_path: Path) -> None:
    # No trusted proxy: the loopback test client stands for a direct gRPC caller on another host.
    settings = make_settings(tmp_path, anonymous_rate_limit_per_minute=3, trusted_proxies=())
    with run_server(settings, fresh_database) as info:
        codes = []
        for n in range(4):
            # a new channel (connection, client port) and a new forwarded address each time
            with grpc.insecure_channel(info.grpc_target) as channel:
                stub = gateway_service_pb2_grpc.GatewayServiceStub(channel)
                request = pb.SignupRequest(email=f"{uuid.uuid4().hex}@example.com")
                try:
                    stub.Signup(request, metadata=(("x-forwarded-for", f"198.51.100.{n}"),))
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as exc:
                    codes.append(exc.code())
        assert codes == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:127.0.0.1:5051", "127.0.0.1"),
        ("ipv6:[::1]:5051", "::1"),
        ("ipv6:%5B::ffff:10.0.0.1%5D:5051", "::ffff:10.0.0.1"),
        ("unix:/tmp/hyphae.sock", "unix:/tmp/hyphae.sock"),
    ],
)
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


@pytest.mark.parametrize(
    ("env", "host", "trusted"),
    [
        ("", "127.0.0.1", LOOPBACK_NETWORKS),
        ("", "0.0.0.0", LOOPBACK_NETWORKS),
        ("", "10.1.2.3", (*LOOPBACK_NETWORKS, "10.1.2.3")),  # the in-process gateway calls from there
        ("", "hyphae.internal", LOOPBACK_NETWORKS),
        ("10.0.0.0/8, 192.0.2.7", "10.1.2.3", ("10.0.0.0/8", "192.0.2.7")),
        ("none", "127.0.0.1", ()),
    ],
)
def test_trusted_proxies_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, host: str, trusted: tuple[str, ...]
) -> None:
    monkeypatch.setenv("HYPHAE_TRUSTED_PROXIES", env)
    monkeypatch.setenv("HYPHAE_HOST", host)
    assert Settings.from_env().trusted_proxies == trusted
