"""The gRPC interceptor every service shares: request id, auth and tenancy, rate limit, required fields,
idempotency and error mapping — in that order, once, for REST (through the gateway) and gRPC callers alike."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.api import annotations_pb2
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from hyphae.api.v1 import options_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth
from server.config import LOOPBACK_NETWORKS
from server.errors import Conflict, HyphaeError, InvalidArgument, RateLimited
from server.ids import new_id
from server.ratelimit import RateLimiter
from server.store import idempotency
from server.store.db import unit_of_work
from server.validation import check_request

log = logging.getLogger("hyphae.server")
Trailers = list[tuple[str, str]]
# How much of a refused client stream is read before answering (as the gateway drains a refused REST body).
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class MethodPolicy:
    rule: options_pb2.MethodRule
    # Its REST binding is a POST: an Idempotency-Key applies, and anonymous callers are rate limited.
    posts: bool


def peer_host(peer: str) -> str:
    """The host of a gRPC peer: "ipv4:1.2.3.4:5" -> "1.2.3.4", "ipv6:[::1]:5" (or %5B::1%5D) -> "::1"."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    host = urllib.parse.unquote(rest).rpartition(":")[0]
    return host.removeprefix("[").removesuffix("]")


def method_policy(method_path: str) -> MethodPolicy | None:
    """The policy of "/pkg.Service/Method", or None for methods outside our contract (health, reflection)."""
    name = method_path.lstrip("/").replace("/", ".")
    if not name.startswith("hyphae."):
        return None
    method = descriptor_pool.Default().FindMethodByName(name)
    options = method.GetOptions()
    http = options.Extensions[annotations_pb2.http]
    pattern = http.WhichOneof("pattern")
    posts = pattern == "post" or (pattern == "custom" and http.custom.kind.upper() == "POST")
    return MethodPolicy(options.Extensions[options_pb2.rule], posts)


if TYPE_CHECKING:
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class Gatekeeper(_Interceptor):
    def __init__(
        self,
        authenticator: auth.Authenticator,
        limiter: RateLimiter,
        engine: AsyncEngine,
        *,
        anonymous_limiter: RateLimiter,
        request_hash_key: bytes,
        trusted_proxies: Iterable[str] = LOOPBACK_NETWORKS,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.anonymous_limiter = anonymous_limiter
        self.trusted_proxies = tuple(ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies)
        self.engine = engine
        # Request hashes are keyed: the stored hash of a request holding a secret must not allow guessing it.
        self.request_hash_key = request_hash_key
        self._policies: dict[str, MethodPolicy | None] = {}

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None:  # no such method: grpc answers UNIMPLEMENTED
            return None
        method: str = details.method
        if method not in self._policies:
            self._policies[method] = method_policy(method)
        policy = self._policies[method]
        if policy is None:
            return handler
        metadata = {key: value for key, value in (details.invocation_metadata or ()) if isinstance(value, str)}
        if handler.unary_unary is not None:
            return handler._replace(
                unary_unary=self._unary(handler.unary_unary, method, policy, metadata, handler.response_serializer)
            )
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._stream(handler.unary_stream, policy, metadata))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._client_stream(handler.stream_unary, method, policy, metadata))
        log.error("%s is a bidirectional-streaming method, which the gatekeeper cannot guard; refusing it", method)
        return None

    async def _admit(
        self, request: Message, policy: MethodPolicy, metadata: dict[str, str], trailers: Trailers, peer: str
    ) -> auth.Principal:
        rule = policy.rule
        principal = await self.authenticator.authenticate(metadata, rule)
        auth.current_principal.set(principal)
        limiter, rate_key = self.limiter, principal.rate_key
        if principal.kind == "anonymous":
            # Health checks are free; anonymous writes (signup) are limited per client address.
            limiter, rate_key = self.anonymous_limiter, self._client_address(metadata, peer)
            if not policy.posts:
                rate_key = ""
        if rate_key:
            decision = limiter.check(rate_key)
            trailers.extend(decision.headers())
            if not decision.allowed:
                raise RateLimited(
                    f"rate limit of {decision.limit} requests per minute exceeded; retry in {decision.retry_after} s",
                    retry_after=decision.retry_after,
                )
        check_request(request)
        return principal

    def _client_address(self, metadata: dict[str, str], peer: str) -> str:
        """The caller's address: the gateway's x-forwarded-for when the peer is a trusted proxy, else the peer's
        own address (without its port: a new connection must not mean a new rate-limit bucket)."""
        host = peer_host(peer)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # not an IP peer (a unix socket): the peer as gRPC names it
            return host
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        forwarded = metadata.get("x-forwarded-for", "")
        if forwarded and any(address in network for network in self.trusted_proxies):
            return forwarded
        return str(address)

    def _unary(
        self,
        inner: Callable[[Any, Any], Awaitable[Any]],
        method: str,
        policy: MethodPolicy,
        metadata: dict[str, str],
        serializer: Callable[[Any], bytes],
    ) -> Callable[..., Awaitable[Any]]:
        async def call(request: Message, context: Context) -> Any:
            trailers: Trailers = [("x-request-id", metadata.get("x-request-id") or new_id("request"))]
            failure: HyphaeError | None = None
            try:
                principal = await self._admit(request, policy, metadata, trailers, context.peer())
                key = metadata.get("idempotency-key", "")
                if key and policy.posts:
                    response = await self._idempotent(
                        inner,
                        request,
                        context,
                        method,
                        principal.scope,
                        key,
                        serializer,
                        store_answer=not policy.rule.secret_response,
                    )
                else:
                    response = await inner(request, context)
                context.set_trailing_metadata(tuple(trailers))
                return response
            except HyphaeError as exc:
                failure = exc
            except Exception:
                log.exception("unhandled error in %s (request id %s)", method, trailers[0][1])
                failure = HyphaeError(f"internal error; quote request id {trailers[0][1]} when reporting it")
            await _abort(context, failure, trailers)

        return call

    def _stream(
        self, inner: Callable[[Any, Any], AsyncIterator[Any]], policy: MethodPolicy, metadata: dict[str, str]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def call(request: Message, context: Context) -> AsyncIterator[Any]:
            trailers: Trailers = [("x-request-id", metadata.get("x-request-id") or new_id("request"))]
            failure: HyphaeError | None = None
            try:
                await self._admit(request, policy, metadata, trailers, context.peer())
                async for item in inner(request, context):
                    yield item
                context.set_trailing_metadata(tuple(trailers))
                return
            except HyphaeError as exc:
                failure = exc
            except Exception:
                log.exception("unhandled error in stream (request id %s)", trailers[0][1])
                failure = HyphaeError(f"internal error; quote request id {trailers[0][1]} when reporting it")
            await _abort(context, failure, trailers)

        return call

    def _client_stream(
        self,
        inner: Callable[[Any, Any], Awaitable[Any]],
        method: str,
        policy: MethodPolicy,
        metadata: dict[str, str],
    ) -> Callable[..., Awaitable[Any]]:
        """Client streams (uploads): admitted on their first message, every message checked as it passes.

        No Idempotency-Key handling: the request is not known until it has been read (and may be 50 MiB), so it
        cannot be hashed up front. Uploads are idempotent by content instead (same bytes -> same document).
        A refusal is sent once the stream has been read to its end (see `_drain`)."""

        async def call(requests: AsyncIterator[Message], context: Context) -> Any:
            trailers: Trailers = [("x-request-id", metadata.get("x-request-id") or new_id("request"))]
            failure: HyphaeError | None = None
            iterator = aiter(requests)
            try:
                first = await anext(iterator, None)
                if first is None:
                    raise InvalidArgument("the stream held no message")
                await self._admit(first, policy, metadata, trailers, context.peer())

                async def checked() -> AsyncIterator[Message]:
                    yield first
                    async for message in iterator:
                        check_request(message)
                        yield message

                response = await inner(checked(), context)
                context.set_trailing_metadata(tuple(trailers))
                return response
            except HyphaeError as exc:
                failure = exc
            except Exception:
                log.exception("unhandled error in %s (request id %s)", method, trailers[0][1])
                failure = HyphaeError(f"internal error; quote request id {trailers[0][1]} when reporting it")
            await _drain(iterator)
            await _abort(context, failure, trailers)

        return call

    async def _idempotent(
        self,
        inner: Callable[[Any, Any], Awaitable[Any]],
        request: Message,
        context: Context,
        method: str,
        scope: str,
        key: str,
        serializer: Callable[[Any], bytes],
        *,
        store_answer: bool,
    ) -> Any:
        """Same key + same request -> the stored answer; other request -> 422; first call still running -> 409.

        The claim, the call's own writes and the stored answer commit in one transaction (a unit of work the
        services' `connect` joins): a crash or an error leaves no half-done call behind, and a retry after a
        failure runs again. Answers holding a secret are not stored (a repeat answers 409)."""
        if len(key) > 255:
            raise InvalidArgument("must be at most 255 characters", field="Idempotency-Key")
        digest = hmac.new(
            self.request_hash_key,
            method.encode() + b"\0" + request.SerializeToString(deterministic=True),
            hashlib.sha256,
        ).hexdigest()
        async with unit_of_work(self.engine) as connection:
            claim = await idempotency.claim_or_conflict(connection, scope, key, method, digest)
            if claim is None:
                raise Conflict(
                    "a request with this Idempotency-Key is still in progress; retry shortly",
                    reason="IDEMPOTENCY_IN_PROGRESS",
                )
            if not claim.fresh:
                if claim.method != method or claim.request_hash != digest:
                    raise InvalidArgument(
                        "this Idempotency-Key was already used with a different request; use a new key for a new "
                        "request",
                        field="Idempotency-Key",
                        reason="IDEMPOTENCY_KEY_REUSED",
                    )
                if claim.response is None:
                    raise Conflict(
                        "a request with this Idempotency-Key is still in progress; retry shortly",
                        reason="IDEMPOTENCY_IN_PROGRESS",
                    )
                if not store_answer:
                    raise Conflict(
                        "this request already succeeded with this Idempotency-Key; its answer held a "
                        "secret shown only once, so it is not replayed",
                        reason="IDEMPOTENCY_NOT_REPLAYED",
                    )
                return _response_class(method).FromString(claim.response)
            response = await inner(request, context)
            await idempotency.complete(connection, scope, key, serializer(response) if store_answer else b"")
        return response


def _response_class(method: str) -> type[Message]:
    name = method.lstrip("/").replace("/", ".")
    return message_factory.GetMessageClass(descriptor_pool.Default().FindMethodByName(name).output_type)


async def _drain(requests: AsyncIterator[Message]) -> None:
    """Read and discard the rest of a refused client stream, so the refusal is sent after the client's last write.

    Answering mid-stream races the client: a grpc aio client whose write is still in flight when the status
    arrives records that failed write as INTERNAL ("Internal error from Core") over the status it received, so
    a 415/413/404 became a 500 at random under load. Bounded: past DRAIN_LIMIT_BYTES the refusal goes out anyway."""
    drained = 0
    try:
        async for message in requests:
            drained += message.ByteSize()
            if drained > DRAIN_LIMIT_BYTES:
                return
    except Exception:  # the stream broke (the client went away): nobody is left to race
        return


_TRAILER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


async def _abort(context: Context, failure: HyphaeError | None, trailers: Trailers) -> None:
    assert failure is not None
    trailers.append(("hyphae-reason", failure.reason))
    if isinstance(failure, InvalidArgument) and failure.field:
        # Metadata values must be printable ASCII, and a field path can hold a client's own keys (any Unicode,
        # control characters): percent-encoded UTF-8, as `hyphae-field` is documented to be.
        trailers.append(("hyphae-field", urllib.parse.quote(failure.field, safe=_TRAILER_SAFE)))
    await context.abort(failure.code, failure.message, trailing_metadata=tuple(trailers))
