"""Outbound HTTP: SSRF refusals (before any connection), pinning to the checked address, redirects checked hop by
hop, retries with a stable Idempotency-Key, size and time limits — against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from server.runtime import outbound
from server.runtime.outbound import MISSING_BODY, OutboundError, OutboundPolicy, OutboundResponse, new_client, send

T = TypeVar("T")
LOCAL = OutboundPolicy(allow=("127.0.0.1",))
BACKOFF = 0.01
PUBLIC_IP = "93.184.215.14"


def run(factory: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await factory()

    return asyncio.run(main())


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalServer:
    base: str
    port: int
    calls: list[Call] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def paths(self) -> list[str]:
        return [call.path for call in self.calls]


@contextlib.asynccontextmanager
async def local_server() -> AsyncIterator[LocalServer]:
    state = LocalServer(base="", port=0)
    counts: dict[str, int] = {}

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        state.calls.append(Call(request.method, request.path_qs, headers, body))
        return await handler(request)

    def count(key: str) -> int:
        counts[key] = counts.get(key, 0) + 1
        return counts[key]

    async def ok(request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "method": request.method})

    async def flaky(request: web.Request) -> web.StreamResponse:
        failures = int(request.match_info["failures"])
        if count(request.path) <= failures:
            return web.Response(status=503, text="busy")
        return web.json_response({"ok": True})

    async def rate_limited(request: web.Request) -> web.StreamResponse:
        if count(request.path) == 1:
            return web.Response(status=429, headers={"Retry-After": "1"}, text="slow down")
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.StreamResponse:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * int(request.match_info["size"]))

    async def big_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.match_info["chunks"])):
            await response.write(b"y" * 500)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.release.wait(), 10)
        return web.json_response({"late": True})

    async def redirect(request: web.Request) -> web.StreamResponse:
        code = int(request.query.get("status", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def loop(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "/loop"})

    async def set_cookie(request: web.Request) -> web.StreamResponse:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "secret")
        return response

    app = web.Application(middlewares=[record])
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/flaky/{key}/{failures}", flaky)
    app.router.add_route("*", "/rate-limited/{key}", rate_limited)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/big/{size}", big)
    app.router.add_get("/big-stream/{chunks}", big_stream)
    app.router.add_get("/slow", slow)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/set-cookie", set_cookie)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    state.port = server.sockets[0].getsockname()[1]
    state.base = f"http://127.0.0.1:{state.port}"
    try:
        yield state
    finally:
        state.release.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def served() -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient]]:
    async with local_server() as server, new_client() as client:
        yield server, client


class NoNetwork:
    """A client whose transport fails the test if a request ever gets that far."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        def handler(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            raise AssertionError(f"request sent to {request.url}")

        return httpx.AsyncClient(transport=httpx.MockTransport(handler))


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    """Names resolved without DNS; other names go to the real resolver."""
    table: dict[str, list[str]] = {}
    real = outbound._resolve

    async def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        return await real(host, port)

    monkeypatch.setattr(outbound, "_resolve", resolve)
    yield table


NO_ALLOW = OutboundPolicy()


def refusal(url: str, policy: OutboundPolicy = NO_ALLOW, **kwargs: Any) -> OutboundError:
    guard = NoNetwork()

    async def go() -> OutboundError:
        async with guard.client() as client:
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", url, policy=policy, **kwargs)
        return caught.value

    error = run(go)
    assert guard.requests == []
    return error


# --- refusals before any connection -------------------------------------------------------------------------------


def test_loopback_refused_without_allow_list() -> None:
    async def go() -> None:
        async with served() as (server, client):
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", f"{server.base}/ok", policy=OutboundPolicy())
            assert caught.value.rule == "blocked_address"
            message = str(caught.value)
            assert "127.0.0.1" in message and "loopback" in message and "HYPHAE_OUTBOUND_ALLOW" in message
            assert server.calls == []

    run(go)


def test_loopback_allowed_by_address_or_cidr() -> None:
    async def go() -> None:
        async with served() as (server, client):
            for policy in (LOCAL, OutboundPolicy(allow=("127.0.0.0/8",))):
                response = await send(client, "GET", f"{server.base}/ok", policy=policy)
                assert response.status == 200
                assert response.json_or_text() == {"ok": True, "method": "GET"}
                assert response.url == f"{server.base}/ok"
                assert response.attempts == 1
            assert server.calls[0].headers["user-agent"] == "hyphae/0.1"
            assert server.calls[0].headers["host"] == f"127.0.0.1:{server.port}"

    run(go)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1]:8080/", "loopback"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://[::]/", "unspecified"),
        ("http://10.1.2.3/", "private"),
        ("http://172.16.5.4/", "private"),
        ("https://192.168.0.1/admin", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fd12:3456::1]/", "unique-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://240.0.0.1/", "reserved"),
        ("http://100.64.0.1/", "non-public"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
        ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
        ("http://2130706433/", "loopback"),  # 127.0.0.1 spelled as one number
        ("http://127.1/", "loopback"),
    ],
)
def test_non_public_addresses_refused_before_connecting(url: str, reason: str) -> None:
    error = refusal(url)
    assert error.rule == "blocked_address", error
    assert reason in str(error)
    assert "HYPHAE_OUTBOUND_ALLOW" in str(error)


def test_host_name_checked_on_every_address(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["rebind.example"] = [PUBLIC_IP, "10.0.0.5"]
    error = refusal("https://rebind.example/x")
    assert error.rule == "blocked_address"
    assert "10.0.0.5" in str(error) and "'rebind.example'" in str(error)
    # An allow entry for another name or range does not help; the name itself or the range does.
    assert refusal("https://rebind.example/x", OutboundPolicy(allow=("other.example", "192.168.0.0/16"))).rule == (
        "blocked_address"
    )
    fake_dns["metadata.google.internal"] = ["169.254.169.254"]
    assert "metadata" in str(refusal("http://metadata.google.internal/computeMetadata/v1/"))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "gopher://example.com/",
        "example.com/path",
        "http://",
        "https:///path",
        "http://exa mple.com/",
        "http://example.com:99999/",
    ],
)
def test_invalid_urls_refused(url: str) -> None:
    error = refusal(url)
    assert error.rule == "invalid_url", error
    assert "http" in str(error)


def test_invalid_headers_refused() -> None:
    error = refusal("http://93.184.215.14/", headers={"X-Evil": "a\r\nHost: 127.0.0.1"})
    assert error.rule == "invalid_request"


# --- pinning: the request goes to the checked address -------------------------------------------------------------


def test_request_is_sent_to_the_checked_address_with_host_and_sni(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["api.example.test"] = [PUBLIC_IP]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"id": 7})

    async def go() -> OutboundResponse:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await send(
                client,
                "post",
                "https://api.example.test/v1/leads?x=1",
                policy=OutboundPolicy(),
                headers={"Authorization": "Bearer t", "Host": "evil.example"},
                json_body={"name": "Ada"},
            )

    response = run(go)
    assert response.status == 201 and response.json_or_text() == {"id": 7}
    assert response.url == "https://api.example.test/v1/leads?x=1"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == f"https://{PUBLIC_IP}/v1/leads?x=1"
    assert request.headers["host"] == "api.example.test"
    assert request.extensions["sni_hostname"] == "api.example.test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer t"
    assert json.loads(request.content) == {"name": "Ada"}


def test_allowed_host_name_tries_each_address(fake_dns: dict[str, list[str]]) -> None:
    async def go() -> None:
        async with served() as (server, client):
            fake_dns["local.test"] = ["::1", "127.0.0.1"]  # nothing listens on ::1
            url = f"http://local.test:{server.port}/ok"
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", url, policy=OutboundPolicy())
            assert caught.value.rule == "blocked_address" and "'local.test'" in str(caught.value)
            response = await send(client, "GET", url, policy=OutboundPolicy(allow=("local.test",)), max_retries=0)
            assert response.status == 200
            assert server.calls[-1].headers["host"] == f"local.test:{server.port}"

    run(go)


# --- redirects ----------------------------------------------------------------------------------------------------


def test_redirect_to_metadata_refused_even_from_allowed_host() -> None:
    async def go() -> None:
        async with served() as (server, client):
            to = "http://169.254.169.254/latest/meta-data/"
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", f"{server.base}/redirect?to={to}", policy=LOCAL, backoff_seconds=BACKOFF)
            assert caught.value.rule == "blocked_address"
            assert "169.254.169.254" in str(caught.value) and "redirected" in str(caught.value)
            assert len(server.calls) == 1  # not retried

    run(go)


def test_redirect_to_allowed_local_path_is_followed() -> None:
    async def go() -> None:
        async with served() as (server, client):
            response = await send(
                client, "GET", f"{server.base}/redirect?to=/ok", policy=LOCAL, headers={"Authorization": "Bearer t"}
            )
            assert response.status == 200 and response.url == f"{server.base}/ok" and response.attempts == 1
            assert server.paths() == ["/redirect?to=/ok", "/ok"]
            assert server.calls[1].headers["authorization"] == "Bearer t"  # same origin keeps credentials

    run(go)


def test_303_becomes_get_without_body_and_307_keeps_it() -> None:
    async def go() -> None:
        async with served() as (server, client):
            body = {"a": 1}
            r303 = await send(client, "POST", f"{server.base}/redirect?to=/ok&status=303", policy=LOCAL, json_body=body)
            assert r303.json_or_text() == {"ok": True, "method": "GET"}
            assert server.calls[1].body == b"" and "content-type" not in server.calls[1].headers
            r307 = await send(client, "POST", f"{server.base}/redirect?to=/ok&status=307", policy=LOCAL, json_body=body)
            assert r307.json_or_text() == {"ok": True, "method": "POST"}
            assert json.loads(server.calls[3].body) == body

    run(go)


def test_cross_origin_redirect_drops_credentials(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["other.test"] = ["127.0.0.1"]

    async def go() -> None:
        async with served() as (server, client):
            to = f"http://other.test:{server.port}/ok"
            headers = {"Authorization": "Bearer t", "X-Custom-Token": "s3cret", "Accept": "application/json"}
            response = await send(
                client,
                "GET",
                f"{server.base}/redirect?to={to}",
                policy=LOCAL,
                headers=headers,
                idempotency_key="k-cross",
            )
            assert response.status == 200 and response.url == to
            seen = server.calls[1].headers
            assert seen["host"] == f"other.test:{server.port}"
            assert "authorization" not in seen and "x-custom-token" not in seen
            assert seen["accept"] == "application/json" and seen["idempotency-key"] == "k-cross"

    run(go)


def test_redirect_limits_and_bad_locations() -> None:
    async def go() -> None:
        async with served() as (server, client):
            policy = OutboundPolicy(allow=("127.0.0.1",), max_redirects=3)
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", f"{server.base}/loop", policy=policy, backoff_seconds=BACKOFF)
            assert caught.value.rule == "too_many_redirects"
            assert len(server.calls) == 4
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", f"{server.base}/redirect?to=file:///etc/passwd", policy=LOCAL)
            assert caught.value.rule == "invalid_url"

    run(go)


# --- retries ------------------------------------------------------------------------------------------------------


def test_retries_503_then_succeeds_with_same_idempotency_key() -> None:
    async def go() -> None:
        async with served() as (server, client):
            response = await send(
                client,
                "POST",
                f"{server.base}/flaky/a/2",
                policy=LOCAL,
                json_body={"n": 1},
                idempotency_key="run-1:3",
                max_retries=2,
                backoff_seconds=BACKOFF,
            )
            assert response.status == 200 and response.attempts == 3
            assert len(server.calls) == 3
            assert [call.headers["idempotency-key"] for call in server.calls] == ["run-1:3"] * 3
            assert all(json.loads(call.body) == {"n": 1} for call in server.calls)

    run(go)


def test_retries_stop_at_max_retries_and_return_last_response() -> None:
    async def go() -> None:
        async with served() as (server, client):
            response = await send(
                client, "GET", f"{server.base}/flaky/b/5", policy=LOCAL, max_retries=1, backoff_seconds=BACKOFF
            )
            assert response.status == 503 and response.attempts == 2 and response.json_or_text() == "busy"
            assert len(server.calls) == 2
            response = await send(
                client, "GET", f"{server.base}/flaky/c/5", policy=LOCAL, max_retries=0, backoff_seconds=BACKOFF
            )
            assert response.status == 503 and response.attempts == 1

    run(go)


@pytest.mark.parametrize(("code", "calls"), [(500, 1), (404, 1), (400, 1), (501, 1), (502, 3), (504, 3)])
def test_only_429_502_503_504_are_retried(code: int, calls: int) -> None:
    async def go() -> None:
        async with served() as (server, client):
            response = await send(
                client, "GET", f"{server.base}/status/{code}", policy=LOCAL, max_retries=2, backoff_seconds=BACKOFF
            )
            assert response.status == code and response.attempts == calls
            assert len(server.calls) == calls

    run(go)


def test_429_honours_retry_after() -> None:
    async def go() -> None:
        async with served() as (server, client):
            response = await send(
                client, "POST", f"{server.base}/rate-limited/a", policy=LOCAL, idempotency_key="k-429", max_retries=1
            )
            assert response.status == 200 and response.attempts == 2
            assert [call.headers["idempotency-key"] for call in server.calls] == ["k-429", "k-429"]

    run(go)


def test_network_errors_are_retried() -> None:
    keys: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("idempotency-key"))
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> OutboundError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            with pytest.raises(OutboundError) as caught:
                await send(
                    client,
                    "PUT",
                    f"http://{PUBLIC_IP}/x",
                    policy=OutboundPolicy(),
                    idempotency_key="k",
                    backoff_seconds=BACKOFF,
                )
            return caught.value

    error = run(go)
    assert error.rule == "network" and "connection refused" in str(error)
    assert keys == ["k", "k", "k"]


# --- limits -------------------------------------------------------------------------------------------------------


def test_too_large_bodies_are_cut_off() -> None:
    async def go() -> None:
        async with served() as (server, client):
            policy = OutboundPolicy(allow=("127.0.0.1",), max_response_bytes=1000)
            assert (await send(client, "GET", f"{server.base}/big/1000", policy=policy)).body == b"x" * 1000
            for path in ("/big/5000", "/big-stream/10"):  # declared length, then chunked
                with pytest.raises(OutboundError) as caught:
                    await send(client, "GET", server.base + path, policy=policy, backoff_seconds=BACKOFF)
                assert caught.value.rule == "too_large"
                assert "HYPHAE_OUTBOUND_MAX_RESPONSE_BYTES" in str(caught.value)
            assert len(server.calls) == 3  # not retried

    run(go)


def test_timeout_per_attempt_and_retried() -> None:
    async def go() -> None:
        async with served() as (server, client):
            policy = OutboundPolicy(allow=("127.0.0.1",), timeout_seconds=0.2)
            with pytest.raises(OutboundError) as caught:
                await send(client, "GET", f"{server.base}/slow", policy=policy, max_retries=1, backoff_seconds=BACKOFF)
            assert caught.value.rule == "timeout"
            assert "0.2 s" in str(caught.value)
            assert server.paths() == ["/slow", "/slow"]

    run(go)


def test_client_keeps_no_cookies() -> None:
    async def go() -> None:
        async with served() as (server, client):
            await send(client, "GET", f"{server.base}/set-cookie", policy=LOCAL)
            await send(client, "GET", f"{server.base}/ok", policy=LOCAL)
            assert "cookie" not in server.calls[1].headers
            assert len(client.cookies.jar) == 0
            assert client.follow_redirects is False and client.trust_env is False

    run(go)


# --- policy and response helpers ----------------------------------------------------------------------------------


def test_policy_from_env_and_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPHAE_OUTBOUND_ALLOW", " 127.0.0.1, localhost ,10.0.0.0/8,,*.corp.example,[::1]")
    monkeypatch.setenv("HYPHAE_OUTBOUND_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("HYPHAE_OUTBOUND_MAX_RESPONSE_BYTES", "1234")
    policy = OutboundPolicy.from_env()
    assert policy.allow == ("127.0.0.1", "localhost", "10.0.0.0/8", "*.corp.example", "::1")
    assert policy.timeout_seconds == 2.5 and policy.max_response_bytes == 1234 and policy.max_redirects == 5
    assert policy.allows_host("LOCALHOST.") and policy.allows_host("git.corp.example")
    assert not policy.allows_host("corp.example") and not policy.allows_host("evilcorp.example")
    ip = ipaddress.ip_address
    assert policy.allows_address(ip("10.9.8.7")) and policy.allows_address(ip("::ffff:127.0.0.1"))
    assert not policy.allows_address(ip("192.168.1.1"))
    merged = policy.merged(["192.168.0.0/16", "localhost"])
    assert merged.allow[-1] == "192.168.0.0/16" and merged.allow.count("localhost") == 1
    assert merged.allows_address(ip("192.168.1.1")) and not policy.allows_address(ip("192.168.1.1"))

    monkeypatch.setenv("HYPHAE_OUTBOUND_ALLOW", "not a host!")
    with pytest.raises(ValueError, match="HYPHAE_OUTBOUND_ALLOW"):
        OutboundPolicy.from_env()
    monkeypatch.setenv("HYPHAE_OUTBOUND_ALLOW", "")
    monkeypatch.setenv("HYPHAE_OUTBOUND_TIMEOUT_SECONDS", "soon")
    with pytest.raises(ValueError, match="HYPHAE_OUTBOUND_TIMEOUT_SECONDS"):
        OutboundPolicy.from_env()
    with pytest.raises(ValueError):
        OutboundPolicy(timeout_seconds=0)


def test_json_or_text() -> None:
    def response(body: bytes, content_type: str) -> OutboundResponse:
        return OutboundResponse(200, {"content-type": content_type}, body, "http://x/", 1)

    assert response(b'{"a": [1]}', "application/json").json_or_text() == {"a": [1]}
    assert response(b'{"a": 1}', "text/plain").json_or_text() == {"a": 1}
    assert response(b"hello", "text/plain").json_or_text() == "hello"
    assert response(b'{"a": NaN}', "application/json").json_or_text() == '{"a": NaN}'  # not JSON: kept as text
    assert response(b"", "application/json").json_or_text() == ""
    assert response("café".encode("latin-1"), "text/plain; charset=ISO-8859-1").json_or_text() == "café"
    assert repr(MISSING_BODY) == "MISSING_BODY"


def test_retry_after_parsing() -> None:
    assert outbound._retry_after("1") == 1.0
    assert outbound._retry_after("120") == 30.0
    assert outbound._retry_after("Wed, 21 Oct 2099 07:28:00 GMT") == 30.0
    assert outbound._retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    for bad in (None, "", "soon", "nan", "inf"):
        assert outbound._retry_after(bad) is None


def test_one_connection_pool_per_tls_server_name() -> None:
    created: list[int] = []

    def factory() -> httpx.AsyncBaseTransport:
        created.append(1)
        return httpx.MockTransport(lambda request: httpx.Response(200, stream=httpx.ByteStream(b"ok")))

    async def go() -> None:
        transport = outbound._PerHostTransport(factory, max_pools=2)
        async with httpx.AsyncClient(transport=transport) as client:
            for url, sni in [
                (f"https://{PUBLIC_IP}/", "a.example"),
                (f"https://{PUBLIC_IP}/", "a.example"),
                (f"https://{PUBLIC_IP}/", "b.example"),
                (f"http://{PUBLIC_IP}/", None),
                (f"http://{PUBLIC_IP}/", None),
            ]:
                extensions = {"sni_hostname": sni} if sni else {}
                response = await client.send(httpx.Request("GET", url, extensions=extensions))
                assert response.text == "ok"
            assert len(created) == 3  # a.example, b.example, plain http
            assert len(transport._pools) == 2  # the least recently used idle pool was closed
            assert all(pool.in_flight == 0 for pool in transport._pools.values())

    run(go)


# --- TLS: the certificate is verified for the host name although the connection goes to the IP -------------------


def tls_contexts(tmp_path: Any, host: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context for `host` signed by a fresh CA, client context trusting only that CA)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyphae test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "leaf.pem", tmp_path / "leaf.key"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def test_https_verifies_the_host_name_and_never_shares_a_connection(
    tmp_path: Any, fake_dns: dict[str, list[str]]
) -> None:
    fake_dns["tls.test"] = ["127.0.0.1"]
    fake_dns["impostor.test"] = ["127.0.0.1"]
    server_context, client_context = tls_contexts(tmp_path, "tls.test")

    async def go() -> None:
        seen: list[str] = []

        async def hello(request: web.Request) -> web.StreamResponse:
            seen.append(request.host)
            return web.json_response({"tls": True})

        app = web.Application()
        app.router.add_get("/hello", hello)
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        port = server.sockets[0].getsockname()[1]
        transport = outbound._PerHostTransport(lambda: httpx.AsyncHTTPTransport(verify=client_context))
        try:
            async with httpx.AsyncClient(transport=transport) as client:
                response = await send(client, "GET", f"https://tls.test:{port}/hello", policy=LOCAL)
                assert response.json_or_text() == {"tls": True}
                # Same IP, kept-alive connection available, but the certificate is not for this name: refused.
                with pytest.raises(OutboundError) as caught:
                    await send(client, "GET", f"https://impostor.test:{port}/hello", policy=LOCAL, max_retries=0)
                assert caught.value.rule == "network"
                assert "certificate" in str(caught.value).lower()
            assert seen == [f"tls.test:{port}"]
        finally:
            await runner.cleanup()

    run(go)
