"""The REST gateway: a Starlette app whose routes are the `google.api.http` bindings of the contract.

Every request is transcoded and sent over a gRPC channel, so REST can never do what gRPC cannot, and the
server's interceptor (auth, tenancy, limits, idempotency, errors) runs the same for both.
"""

from __future__ import annotations

import asyncio
import html
import importlib.resources
import json
import logging
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from hyphae.api.v1 import options_pb2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from gateway import codec
from gateway.bindings import Binding, Router, bindings_of, load_services
from gateway.errors import error_body, http_status, trailer
from gateway.overrides import overrides
from gateway.streaming import apply_resume, stream_response, wants_ndjson
from gateway.transcode import build_request

log = logging.getLogger("hyphae.gateway")
OPENAPI = Path(__file__).resolve().parent.parent / "generated" / "openapi.json"
FORWARDED_HEADERS = ("authorization", "x-org-id", "idempotency-key", "x-request-id")
RETURNED_TRAILERS = (
    "x-request-id",
    "ratelimit",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "retry-after",
)
CALL_TIMEOUT_SECONDS = 60.0
MAX_HEADER_BYTES = 8 * 1024


class BodyTooLarge(Exception):
    pass


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(codec.dumps(data), status_code=status, headers=headers, media_type="application/json")


class Gateway:
    def __init__(
        self, grpc_target: str, *, max_body_bytes: int, services: list[ServiceDescriptor] | None = None
    ) -> None:
        self.grpc_target = grpc_target
        self.max_body_bytes = max_body_bytes
        self.router = Router(bindings_of(services if services is not None else load_services()))
        self.channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Callable[..., Any]] = {}
        self.overrides = overrides()
        self.closing = asyncio.Event()  # set when the HTTP server begins to shut down: open streams end

    async def open(self) -> None:
        options = [
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ]
        self.channel = grpc.aio.insecure_channel(self.grpc_target, options=options)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close(None)

    def call(self, binding: Binding) -> Callable[..., Any]:
        """The method's call object (unary or server-streaming), made once per method and reused."""
        call = self._calls.get(binding.grpc_path)
        if call is None:
            assert self.channel is not None, "the gateway's channel opens in the app lifespan"
            factory = self.channel.unary_stream if binding.server_streaming else self.channel.unary_unary
            call = factory(
                binding.grpc_path,
                request_serializer=binding.request_class.SerializeToString,
                response_deserializer=binding.response_class.FromString,
            )
            self._calls[binding.grpc_path] = call
        return call

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isascii() and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise BodyTooLarge
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def handle(self, request: Request, request_id: str) -> Response:
        path = request.scope["path"]
        # the raw path: the router percent-decodes each segment exactly once
        raw_path = request.scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0] or path
        match, allowed = self.router.match(request.method, raw_path)
        if match is None:
            if allowed:
                text = f"{request.method} is not allowed on {path}; use {', '.join(allowed)}"
                headers = {"x-request-id": request_id, "allow": ", ".join(allowed)}
                return _json(error_body(options_pb2.DIALECT_HYPHEN, 405, text), 405, headers)
            text = f"no route for {request.method} {path}"
            return _json(error_body(options_pb2.DIALECT_HYPHEN, 404, text), 404, {"x-request-id": request_id})
        binding = match.binding
        headers = {"x-request-id": request_id}
        override = self.overrides.get(binding.method.full_name)
        if override is not None:  # multipart upload, file download: gateway/overrides/
            metadata, problem = self._metadata(request, request_id, binding, headers)
            return problem or await override.handle(self, binding, request, match.path_params, metadata, headers)
        try:
            body: object | None = None
            if binding.body:
                raw = await self._body(request)
                body = codec.loads(raw) if raw.strip() else None
            message = build_request(binding, body, match.path_params, request.query_params)
            if binding.server_streaming:
                apply_resume(binding, message, request.headers.get("last-event-id"))
        except BodyTooLarge:
            return _json(
                error_body(
                    binding.dialect, 413, f"request body exceeds {self.max_body_bytes} bytes", "PAYLOAD_TOO_LARGE"
                ),
                413,
                headers,
            )
        except codec.WireError as exc:
            return _json(error_body(binding.dialect, 400, str(exc), "VALIDATION_FAILED"), 400, headers)
        metadata, problem = self._metadata(request, request_id, binding, headers)
        if problem is not None:
            return problem
        if binding.server_streaming:
            stream = self.call(binding)(message, metadata=metadata)
            try:
                ndjson = wants_ndjson(request.headers.get("accept", ""))
                return await stream_response(binding, stream, ndjson, headers, self.closing)
            except grpc.aio.AioRpcError as exc:
                return self._error(binding, exc, headers)
        call = self.call(binding)(message, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
        try:
            response = await call
            trailers = await call.trailing_metadata()
        except grpc.aio.AioRpcError as exc:
            return self._error(binding, exc, headers)
        headers.update(_returned(trailers))
        payload = getattr(response, binding.response_body) if binding.response_body else response
        data = codec.message_value_to_wire(payload) if isinstance(payload, Message) else payload
        return _json(data, binding.rule.success_status or 200, headers)

    def _metadata(
        self, request: Request, request_id: str, binding: Binding, headers: dict[str, str]
    ) -> tuple[list[tuple[str, str]], Response | None]:
        """The gRPC metadata of a request, or the 400 answer when a forwarded header cannot be sent."""
        metadata = [(name, request.headers[name]) for name in FORWARDED_HEADERS if name in request.headers]
        for name, value in metadata:
            problem = _header_problem(value)
            if problem:
                body = error_body(binding.dialect, 400, f"{_HEADER_NAMES[name]}: {problem}", "VALIDATION_FAILED")
                return metadata, _json(body, 400, headers)
        if "x-request-id" not in request.headers:
            metadata.append(("x-request-id", request_id))
        if request.client is not None:  # the caller's address, for per-address limits on anonymous calls
            metadata.append(("x-forwarded-for", request.client.host))
        return metadata, None

    @staticmethod
    def returned(trailers: Any) -> dict[str, str]:
        """The trailers a REST caller sees as headers (request id, rate limit, Retry-After)."""
        return _returned(trailers)

    def error_response(self, binding: Binding, exc: grpc.aio.AioRpcError, headers: dict[str, str]) -> Response:
        """The dialect's error answer to a failed call (used by gateway/overrides too)."""
        return self._error(binding, exc, headers)

    def _error(self, binding: Binding, exc: grpc.aio.AioRpcError, headers: dict[str, str]) -> Response:
        headers.update(_returned(exc.trailing_metadata()))
        reason = trailer(exc.trailing_metadata(), "hyphae-reason")
        message = exc.details() or exc.code().name.lower()
        field = urllib.parse.unquote(trailer(exc.trailing_metadata(), "hyphae-field"))  # percent-encoded UTF-8
        if (
            field
            and binding.body not in ("", "*")
            and field.startswith(binding.body + ".")
            and message.startswith(field + ":")
        ):
            message = field[len(binding.body) + 1 :] + message[len(field) :]  # name the field as the client sent it
        if exc.code() == grpc.StatusCode.UNAVAILABLE and not reason:
            message = "the engine is unavailable; retry shortly"
        status = http_status(exc.code(), reason)
        return _json(error_body(binding.dialect, status, message, reason), status, headers)


_HEADER_NAMES = {
    "authorization": "Authorization",
    "x-org-id": "X-Org-Id",
    "idempotency-key": "Idempotency-Key",
    "x-request-id": "X-Request-Id",
}


def _header_problem(value: str) -> str:
    """Forwarded headers become gRPC metadata: printable ASCII only, and not huge."""
    if len(value) > MAX_HEADER_BYTES:
        return f"must be at most {MAX_HEADER_BYTES} bytes"
    if not all(" " <= char <= "~" for char in value):
        return "must hold printable ASCII characters only"
    return ""


def _returned(trailers: Any) -> dict[str, str]:
    return {key: str(value) for key, value in (trailers or ()) if key in RETURNED_TRAILERS}


def load_openapi() -> bytes | None:
    """The generated OpenAPI document: packaged next to the stubs in a wheel, or generated/ in a checkout."""
    packaged = importlib.resources.files("hyphae").joinpath("openapi.json")
    if packaged.is_file():
        return packaged.read_bytes()
    return OPENAPI.read_bytes() if OPENAPI.is_file() else None


class Documentation:
    """/openapi.json and /docs, rendered once at start-up."""

    def __init__(self) -> None:
        self.document = load_openapi()
        self.page = self._page(json.loads(self.document)) if self.document else None

    @staticmethod
    def _page(document: dict[str, Any]) -> str:
        rows = []
        for path, operations in document.get("paths", {}).items():
            for verb, operation in operations.items():
                rows.append(
                    f"<tr><td><b>{verb.upper()}</b></td><td><code>{html.escape(path)}</code></td>"
                    f"<td>{html.escape(operation.get('summary') or operation.get('description') or '')}</td></tr>"
                )
        return (
            f"<!doctype html><title>Hyphae API</title><h1>{html.escape(document['info']['title'])}</h1>"
            "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a></p>"
            f"<table border=1 cellpadding=4>{''.join(rows)}</table>"
        )

    def respond(self, path: str) -> Response:
        if self.document is None or self.page is None:
            message = "the OpenAPI document is missing; regenerate it with `python3 scripts/gen.py`"
            return _json(error_body(options_pb2.DIALECT_HYPHEN, 404, message), 404)
        if path == "/docs":
            return HTMLResponse(self.page)
        return Response(self.document, media_type="application/json")


class GatewayApp:
    """The ASGI app: two documentation routes, then the bindings' router (no framework routing per request)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.documentation = Documentation()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        path = scope["path"]
        request_id = request.headers.get("x-request-id") or f"req-{uuid.uuid4()}"
        try:
            if path in ("/openapi.json", "/docs") and request.method == "GET":
                response = self.documentation.respond(path)
            else:
                response = await self.gateway.handle(request, request_id)
        except Exception:
            log.exception("unhandled gateway error on %s %s (request id %s)", request.method, path, request_id)
            message = f"internal error; quote request id {request_id} when reporting it"
            response = _json(error_body(options_pb2.DIALECT_HYPHEN, 500, message), 500, {"x-request-id": request_id})
        await response(scope, receive, send)

    def end_streams(self) -> None:
        """The server is shutting down: open event streams end now instead of being cut after the grace period."""
        self.gateway.closing.set()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.gateway.open()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.gateway.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    grpc_target: str, *, max_body_bytes: int = 4 * 1024 * 1024, services: list[ServiceDescriptor] | None = None
) -> GatewayApp:
    """The REST app for the contract's services (or, for tests, the given ones)."""
    return GatewayApp(Gateway(grpc_target, max_body_bytes=max_body_bytes, services=services))
