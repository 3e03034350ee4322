"""Outbound HTTP for workflow `http` actions (and webhooks, document from-url, MCP): SSRF-safe, bounded, retried.

Every hop — the first request and each redirect — is checked before anything is sent: the host is resolved and, if
any of its addresses is not public (loopback, private, link-local such as the 169.254.169.254 metadata service,
multicast, reserved, unspecified, unique-local, or an IPv4-mapped/6to4/NAT64 form of those), the request is refused
unless the policy's allow-list names the host or covers the address. The request then goes to an address that was
checked: the URL is rewritten to the IP, with the Host header and the TLS server name (SNI, which is also the name the
certificate is verified against) set to the original host, so a DNS answer that changes between the check and the
connection cannot reach a refused address.

Redirects are followed here, never by httpx, so each hop is checked; credentials (Authorization, Cookie and any
custom header, which may carry an `orgconfig:` secret) are not forwarded to another origin. Responses are streamed
and cut off past `max_response_bytes`. Network errors, timeouts and 429/502/503/504 are retried with exponential
backoff (a `Retry-After` is honoured, capped at 30 s), with the same `Idempotency-Key` on every attempt.
"""

from __future__ import annotations

import asyncio
import codecs
import email.utils
import enum
import http.cookiejar
import ipaddress
import json
import math
import os
import re
import socket
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx

from server import jsonvalue

USER_AGENT: Final = "hyphae/0.1"
ALLOW_ENV: Final = "HYPHAE_OUTBOUND_ALLOW"
TIMEOUT_ENV: Final = "HYPHAE_OUTBOUND_TIMEOUT_SECONDS"
MAX_RESPONSE_BYTES_ENV: Final = "HYPHAE_OUTBOUND_MAX_RESPONSE_BYTES"

RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
MAX_DELAY_SECONDS: Final = 30.0
# Headers still sent after a redirect to another origin; everything else (Authorization, Cookie, API-key headers) is
# dropped, since any header value may hold a secret meant for the first origin only.
CROSS_ORIGIN_HEADERS: Final = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-type", "idempotency-key", "user-agent"}
)
_RETRYABLE_RULES: Final = frozenset({"network", "timeout"})
_BODY_HEADERS: Final = ("content-type", "content-length", "transfer-encoding", "content-encoding")

_N = TypeVar("_N", int, float)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA_ADDRESSES: Final = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
_UNIQUE_LOCAL: Final = ipaddress.ip_network("fc00::/7")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_HOST_LABEL = r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
_HOST_PATTERN: Final = re.compile(rf"(?:\*\.)?{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class _Missing(enum.Enum):
    MISSING_BODY = "MISSING_BODY"

    def __repr__(self) -> str:
        return "MISSING_BODY"


MISSING_BODY: Final = _Missing.MISSING_BODY
"""Default of `send(json_body=...)`: no JSON body (distinct from `None`, which sends `null`)."""


class OutboundError(Exception):
    """An outbound call that did not produce a response. `rule` is a short code:

    blocked_address, invalid_url, invalid_request, too_large, timeout, network, too_many_redirects.
    The message names the URL (without credentials) and says what to do next."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


@dataclass(frozen=True)
class OutboundPolicy:
    # Host names ("localhost", "*.corp.example"), IPs or CIDRs that may be reached even if private/loopback.
    allow: tuple[str, ...] = ()
    timeout_seconds: float = 30.0  # per attempt, covering resolution, redirects and reading the body
    max_response_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False, default=())
    _hosts: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _suffixes: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not (self.timeout_seconds > 0 and math.isfinite(self.timeout_seconds)):
            raise ValueError(f"outbound timeout must be a positive number of seconds, not {self.timeout_seconds!r}")
        if self.max_response_bytes < 0:
            raise ValueError(f"outbound max_response_bytes must be >= 0, not {self.max_response_bytes!r}")
        if self.max_redirects < 0:
            raise ValueError(f"outbound max_redirects must be >= 0, not {self.max_redirects!r}")
        entries = tuple(dict.fromkeys(_normalize_allow_entry(entry) for entry in self.allow))
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        suffixes: list[str] = []
        for entry in entries:
            network = _parse_network(entry)
            if network is not None:
                networks.append(network)
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            else:
                hosts.add(entry)
        object.__setattr__(self, "allow", entries)
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_suffixes", tuple(suffixes))

    @classmethod
    def from_env(cls) -> OutboundPolicy:
        """From HYPHAE_OUTBOUND_ALLOW (comma-separated), HYPHAE_OUTBOUND_TIMEOUT_SECONDS and
        HYPHAE_OUTBOUND_MAX_RESPONSE_BYTES; unset or empty variables keep the defaults."""
        allow = tuple(part.strip() for part in os.environ.get(ALLOW_ENV, "").split(",") if part.strip())
        try:
            policy = cls(allow=allow)
        except ValueError as exc:
            raise ValueError(f"{ALLOW_ENV}: {exc}") from None
        timeout = _env_number(TIMEOUT_ENV, float)
        max_bytes = _env_number(MAX_RESPONSE_BYTES_ENV, int)
        try:
            return replace(
                policy,
                timeout_seconds=policy.timeout_seconds if timeout is None else timeout,
                max_response_bytes=policy.max_response_bytes if max_bytes is None else max_bytes,
            )
        except ValueError as exc:
            raise ValueError(f"{TIMEOUT_ENV}/{MAX_RESPONSE_BYTES_ENV}: {exc}") from None

    def merged(self, extra_allow: Iterable[str]) -> OutboundPolicy:
        """This policy with more allow-list entries (the server's list plus an org's own)."""
        return replace(self, allow=self.allow + tuple(extra_allow))

    def allows_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self._hosts or any(name.endswith(suffix) for suffix in self._suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        candidates = {address, _unmapped(address)}
        return any(ip.version == net.version and ip in net for ip in candidates for net in self._networks)


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    url: str  # final URL, after redirects (without credentials)
    attempts: int

    @property
    def text(self) -> str:
        return self.body.decode(_charset(self.headers.get("content-type", "")), errors="replace")

    def json_or_text(self) -> Any:
        """The body parsed as JSON if it is JSON (whatever the content type says), else as text. Strict: a body with
        NaN or Infinity is text, so such values never reach a run's context (which must stay storable JSON)."""
        try:
            return jsonvalue.loads(self.body.decode(json.detect_encoding(self.body)))
        except (ValueError, RecursionError):  # UnicodeDecodeError too
            return self.text


def new_client() -> httpx.AsyncClient:
    """A client for `send`: no redirects followed by httpx (send checks each hop), no proxies from the environment,
    no cookies kept between calls (the client is shared by all orgs), one connection pool per TLS server name."""
    return httpx.AsyncClient(
        transport=_PerHostTransport(),
        follow_redirects=False,
        trust_env=False,
        cookies=http.cookiejar.CookieJar(policy=_NoCookies()),
    )


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    policy: OutboundPolicy,
    headers: Mapping[str, str] | None = None,
    json_body: Any = MISSING_BODY,
    content: bytes | None = None,
    idempotency_key: str | None = None,
    max_retries: int = 2,
    backoff_seconds: float = 0.5,
) -> OutboundResponse:
    """Call `url` under `policy`; return the final response (any status) or raise OutboundError.

    Retries network errors, timeouts and 429/502/503/504 up to `max_retries` times (so at most max_retries + 1
    attempts), waiting backoff_seconds * 2**n or the response's Retry-After, both capped at 30 s. When every attempt
    answered a retryable status, the last response is returned. Other statuses are never retried."""
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, not {max_retries}")
    method = method.strip().upper()
    if not _HEADER_NAME.fullmatch(method):
        raise OutboundError("invalid_request", f"{method!r} is not an HTTP method; use GET, POST, PUT, PATCH or DELETE")
    target = _parse_url(url)
    request_headers = _request_headers(headers, idempotency_key)
    body = content
    if json_body is not MISSING_BODY:
        if content is not None:
            raise ValueError("pass either json_body or content, not both")
        try:
            body = jsonvalue.dumps(json_body).encode()
        except (TypeError, ValueError) as exc:
            raise OutboundError("invalid_request", f"the request body is not JSON: {exc}") from None
        if "content-type" not in request_headers:
            request_headers["Content-Type"] = "application/json"

    attempt = 0
    while True:
        attempt += 1
        retries_left = attempt <= max_retries
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                response = await _follow(client, method, target, request_headers, body, policy)
        except (TimeoutError, httpx.TimeoutException):
            error = OutboundError(
                "timeout",
                f"{method} {_display(target)} did not answer within {policy.timeout_seconds:g} s"
                f"{_attempts_note(attempt)}; check that the service is up, or raise the action's timeout"
                f" (server default: {TIMEOUT_ENV})",
            )
        except OutboundError as exc:
            error = exc
        else:
            if response.status not in RETRY_STATUSES or not retries_left:
                return replace(response, attempts=attempt)
            delay = _retry_after(response.headers.get("retry-after"))
            await asyncio.sleep(_backoff(backoff_seconds, attempt) if delay is None else delay)
            continue
        if error.rule not in _RETRYABLE_RULES or not retries_left:
            raise error
        await asyncio.sleep(_backoff(backoff_seconds, attempt))


async def _follow(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    headers: httpx.Headers,
    body: bytes | None,
    policy: OutboundPolicy,
) -> OutboundResponse:
    """One attempt: the request and its redirects, each hop checked."""
    previous: httpx.URL | None = None
    redirects = 0
    while True:
        addresses = await _checked_addresses(url, policy, previous)
        response = await _open(client, method, url, addresses, headers, body)
        try:
            location = response.headers.get("location")
            if response.status_code in REDIRECT_STATUSES and location:
                if redirects >= policy.max_redirects:
                    raise OutboundError(
                        "too_many_redirects",
                        f"{_display(url)} redirected more than {policy.max_redirects} times; call the final URL"
                        " directly, or check the service for a redirect loop",
                    )
                try:
                    target = url.join(location.strip())
                except httpx.InvalidURL as exc:
                    raise OutboundError(
                        "invalid_url", f"{_display(url)} redirected to an invalid URL {location[:200]!r}: {exc}"
                    ) from None
                _check_scheme(target, f"{_display(url)} redirected to {_display(target)}, which")
                redirected_method = _redirect_method(response.status_code, method)
                if redirected_method != method:
                    body = None
                    headers = httpx.Headers({k: v for k, v in headers.items() if k not in _BODY_HEADERS})
                if not _same_origin(url, target):
                    headers = httpx.Headers({k: v for k, v in headers.items() if k in CROSS_ORIGIN_HEADERS})
                previous, url, method = url, target, redirected_method
                redirects += 1
                continue
            data = await _read_body(response, method, url, policy.max_response_bytes)
            return OutboundResponse(
                status=response.status_code,
                headers=dict(response.headers.items()),
                body=data,
                url=_display(url),
                attempts=1,
            )
        finally:
            await response.aclose()


async def _open(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    addresses: list[IPAddress],
    headers: httpx.Headers,
    body: bytes | None,
) -> httpx.Response:
    """Send to the first checked address that accepts a connection (e.g. localhost: ::1 refused, 127.0.0.1 ok)."""
    hop_headers = httpx.Headers(headers)
    hop_headers["Host"] = url.netloc.decode("ascii")
    extensions: dict[str, Any] = {}
    if url.scheme == "https" and _literal_address(url.host) is None:
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    last: httpx.ConnectError | None = None
    for address in addresses:
        request = httpx.Request(
            method,
            url.copy_with(host=str(address)),
            headers=hop_headers,
            content=body,
            extensions=extensions,
        )
        try:
            return await client.send(request, stream=True, follow_redirects=False)
        except httpx.ConnectError as exc:  # nothing was sent: trying the next address is safe
            last = exc
        except httpx.TimeoutException:
            raise
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            raise OutboundError("invalid_request", f"{method} {_display(url)} could not be sent: {exc}") from None
        except httpx.RequestError as exc:
            raise OutboundError("network", _network_message(method, url, exc)) from None
    assert last is not None
    raise OutboundError("network", _network_message(method, url, last))


async def checked_addresses(host: str, port: int, policy: OutboundPolicy) -> list[IPAddress]:
    """The addresses of host:port that a non-HTTP client (a db action's Postgres connection) may reach; connect to
    one of these, not to the name again. OutboundError (blocked_address, network) otherwise."""
    return await _checked_addresses(httpx.URL(scheme="tcp", host=host, port=port), policy, None)


async def _checked_addresses(url: httpx.URL, policy: OutboundPolicy, previous: httpx.URL | None) -> list[IPAddress]:
    """The host's addresses, all allowed; OutboundError if any one is not (or the name does not resolve)."""
    host = url.host
    literal = _literal_address(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            resolved = await _resolve(url.raw_host.decode("ascii"), port)
        except (OSError, UnicodeError) as exc:
            raise OutboundError(
                "network", f"could not resolve {host!r} ({_display(url)}): {exc}; check the host name"
            ) from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(address.split("%", 1)[0]) for address in resolved))
        if not addresses:
            raise OutboundError("network", f"{host!r} ({_display(url)}) has no address; check the host name")
        if policy.allows_host(host):
            return addresses
    for address in addresses:
        reason = _refusal(address)
        if reason is None or policy.allows_address(address):
            continue
        where = _display(url) if previous is None else f"{_display(previous)} redirected to {_display(url)}, which"
        what = "it" if literal is not None else f"{host!r} or {address}"
        raise OutboundError(
            "blocked_address",
            f"{where} resolves to {address}, {reason}; outbound requests may not reach non-public addresses unless"
            f" allowed: add {what} to {ALLOW_ENV} (or the org's outbound allow-list) to allow it",
        )
    return addresses


async def _resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (a seam for tests)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _refusal(address: IPAddress) -> str | None:
    """Why `address` may not be reached without an allow-list entry, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _refusal(embedded)
            return None if inner is None else f"{inner} (embedded {embedded})"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address in _METADATA_ADDRESSES:
        return "the cloud metadata service (link-local)"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, ipaddress.IPv6Address) and address in _UNIQUE_LOCAL:
        return "a unique-local address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "a non-public address"
    return None


async def _read_body(response: httpx.Response, method: str, url: httpx.URL, limit: int) -> bytes:
    def too_large() -> OutboundError:
        return OutboundError(
            "too_large",
            f"{_display(url)} answered more than {limit} bytes; ask the service for less (e.g. paging or a filter),"
            f" or raise {MAX_RESPONSE_BYTES_ENV}",
        )

    declared = response.headers.get("content-length", "")
    if method != "HEAD" and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
    except httpx.DecodingError as exc:
        raise OutboundError("network", f"{_display(url)} sent a body that could not be decoded: {exc}") from None
    except httpx.TimeoutException:
        raise
    except httpx.RequestError as exc:
        raise OutboundError("network", _network_message(method, url, exc)) from None
    return b"".join(chunks)


def _parse_url(url: str) -> httpx.URL:
    shown = url if len(url) <= 200 else url[:200] + "..."
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise OutboundError(
            "invalid_url", f"{shown!r} is not a valid URL ({exc}); use an http:// or https:// URL"
        ) from None
    _check_scheme(parsed, repr(shown))
    return parsed


def _check_scheme(url: httpx.URL, subject: str) -> None:
    if url.scheme not in ("http", "https"):
        raise OutboundError(
            "invalid_url", f"{subject} is not an http or https URL; only http:// and https:// URLs can be called"
        )
    if not url.host:
        raise OutboundError("invalid_url", f"{subject} has no host; use a URL like https://api.example.com/path")
    name = url.raw_host.decode("ascii", errors="replace").lower().rstrip(".")
    if _literal_address(url.host) is None and (name.startswith("*") or not _HOST_PATTERN.fullmatch(name)):
        raise OutboundError("invalid_url", f"{subject} has an invalid host name {url.host[:100]!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise OutboundError("invalid_url", f"{subject} has an invalid port {url.port}; ports go from 1 to 65535")


def _request_headers(headers: Mapping[str, str] | None, idempotency_key: str | None) -> httpx.Headers:
    result = httpx.Headers()
    for name, value in (headers or {}).items():
        if not _HEADER_NAME.fullmatch(name) or any(c in value for c in "\r\n\0"):
            raise OutboundError(
                "invalid_request", f"header {name!r} has an invalid name or value (no line breaks allowed)"
            )
        if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
            continue  # set from the URL and the body
        result[name] = value
    result.setdefault("User-Agent", USER_AGENT)
    if idempotency_key is not None:
        if any(c in idempotency_key for c in "\r\n\0"):
            raise OutboundError("invalid_request", "the idempotency key has a line break")
        result["Idempotency-Key"] = idempotency_key
    return result


def _redirect_method(status: int, method: str) -> str:
    if status == 303 and method != "HEAD":
        return "GET"
    if status in (301, 302) and method == "POST":  # what browsers (and httpx) do
        return "GET"
    return method


def _origin(url: httpx.URL) -> tuple[str, bytes, int]:
    return url.scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    if _origin(a) == _origin(b):
        return True
    # http -> https on the same host and default ports is an upgrade, not a new party.
    return a.raw_host == b.raw_host and _origin(a)[::2] == ("http", 80) and _origin(b)[::2] == ("https", 443)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_DELAY_SECONDS)


def _backoff(base: float, attempt: int) -> float:
    return float(min(max(base, 0.0) * 2 ** (attempt - 1), MAX_DELAY_SECONDS))


def _display(url: httpx.URL) -> str:
    """The URL without user:password."""
    return str(url.copy_with(userinfo=b"")) if url.userinfo else str(url)


def _attempts_note(attempt: int) -> str:
    return "" if attempt == 1 else f" (attempt {attempt})"


def _network_message(method: str, url: httpx.URL, exc: Exception) -> str:
    detail = str(exc) or type(exc).__name__
    return f"{method} {_display(url)} failed: {detail}; check the URL and that the service is up"


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _parse_network(entry: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _normalize_allow_entry(entry: str) -> str:
    text = entry.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    network = _parse_network(text)
    if network is not None:
        return str(network.network_address) if network.num_addresses == 1 else str(network)
    name = text.lower().rstrip(".")
    if not name.isascii():
        try:
            name = "*." * name.startswith("*.") + name.removeprefix("*.").encode("idna").decode("ascii")
        except UnicodeError:
            name = ""
    if not _HOST_PATTERN.fullmatch(name):
        raise ValueError(f"outbound allow-list entry {entry!r} is not a host name, an IP address or a CIDR")
    return name


def _env_number(name: str, kind: Callable[[str], _N]) -> _N | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


def _charset(content_type: str) -> str:
    match = re.search(r"charset\s*=\s*\"?([\w.:-]+)", content_type, re.IGNORECASE)
    if match:
        try:
            return codecs.lookup(match.group(1)).name
        except LookupError:
            pass
    return "utf-8"


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """Neither store nor send cookies: the client is shared by every org and every workflow."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


@dataclass
class _Pool:
    transport: httpx.AsyncBaseTransport
    in_flight: int = 0


class _PerHostTransport(httpx.AsyncBaseTransport):
    """One connection pool per TLS server name. Requests go to IP addresses, and httpx pools connections by
    (scheme, IP, port): a single pool would let a connection whose certificate was verified for one host be reused
    for another host that resolves to the same address. Plain http shares one pool (nothing is verified there).
    Least recently used idle pools are closed beyond `max_pools`."""

    def __init__(self, factory: Callable[[], httpx.AsyncBaseTransport] | None = None, *, max_pools: int = 64) -> None:
        self._factory = factory or _default_transport
        self._max_pools = max_pools
        self._pools: OrderedDict[str, _Pool] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = ""
        if request.url.scheme == "https":
            sni = request.extensions.get("sni_hostname")
            key = sni if isinstance(sni, str) and sni else request.url.host
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self._factory())
            await self._prune()
        else:
            self._pools.move_to_end(key)
        pool.in_flight += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.in_flight -= 1
            raise
        response.stream = _ReleasingStream(response.stream, pool)
        return response

    async def _prune(self) -> None:
        excess = len(self._pools) - self._max_pools
        for key, pool in list(self._pools.items())[:-1]:
            if excess <= 0:
                return
            if pool.in_flight == 0:
                del self._pools[key]
                excess -= 1
                await pool.transport.aclose()

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            await pool.transport.aclose()


def _default_transport() -> httpx.AsyncBaseTransport:
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=50, max_keepalive_connections=10))


class _ReleasingStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, pool: _Pool) -> None:
        self._inner = inner
        self._pool: _Pool | None = pool

    async def __aiter__(self) -> AsyncIterator[bytes]:
        assert isinstance(self._inner, httpx.AsyncByteStream)
        async for chunk in self._inner:
            yield chunk
        self._release()

    async def aclose(self) -> None:
        try:
            if isinstance(self._inner, httpx.AsyncByteStream):
                await self._inner.aclose()
        finally:
            self._release()

    def _release(self) -> None:
        if self._pool is not None:
            self._pool.in_flight -= 1
            self._pool = None
