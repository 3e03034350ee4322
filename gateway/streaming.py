"""Server-streaming RPCs over REST: Server-Sent Events by default, NDJSON with `Accept: application/x-ndjson`.

SSE events carry `id:` = the message's sequence field (MethodRule.sequence_field), and a reconnect's
`Last-Event-ID` fills the request's resume field (MethodRule.resume_field), so nothing is lost or repeated.
Errors in the first moments are ordinary error responses; after that, a final `event: error` (SSE) or an
`{"error": …}` line (NDJSON). A comment line every HEARTBEAT_SECONDS keeps idle proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import Message
from starlette.responses import StreamingResponse

from gateway import codec
from gateway.bindings import Binding
from gateway.errors import error_body, http_status, trailer

HEARTBEAT_SECONDS = 15.0
# How long to hold the response for a first message (or an early error) before sending headers regardless.
FIRST_MESSAGE_GRACE_SECONDS = 0.5
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def wants_ndjson(accept: str) -> bool:
    return NDJSON in accept and SSE not in accept


def apply_resume(binding: Binding, message: Message, last_event_id: str | None) -> None:
    """Last-Event-ID -> the request's resume field (only when the request did not set it itself)."""
    field_name = binding.rule.resume_field
    if not last_event_id or not field_name:
        return
    target, field = codec.resolve_path(message, field_name)
    already_set = target.HasField(field.name) if codec.has_presence(field) else bool(getattr(target, field.name))
    if already_set:
        return
    codec.set_field(target, field, last_event_id.strip(), "Last-Event-ID", from_text=True)


def _frame(binding: Binding, item: Message, ndjson: bool) -> str:
    data = codec.dumps(codec.message_value_to_wire(item))
    if ndjson:
        return data + "\n"
    sequence_field = binding.rule.sequence_field
    event_id = f"id: {getattr(item, sequence_field)}\n" if sequence_field else ""
    return f"{event_id}data: {data}\n\n"


def _error_frame(binding: Binding, exc: grpc.aio.AioRpcError, ndjson: bool) -> str:
    reason = trailer(exc.trailing_metadata(), "hyphae-reason")
    status = http_status(exc.code(), reason)
    body = error_body(binding.dialect, status, exc.details() or exc.code().name.lower(), reason)
    if ndjson:
        return codec.dumps({"error": body}) + "\n"
    return f"event: error\ndata: {codec.dumps(body)}\n\n"


async def stream_response(
    binding: Binding, call: Any, ndjson: bool, headers: dict[str, str], closing: asyncio.Event
) -> StreamingResponse:
    """Wait briefly for the first message, so early errors (auth, not found) keep their HTTP status; a stream with
    nothing to say yet (a live feed, a paused run) gets its headers after FIRST_MESSAGE_GRACE_SECONDS anyway.
    `closing` set (the server is shutting down) ends the stream cleanly; SSE clients resume with Last-Event-ID."""
    iterator = call.__aiter__()
    first: asyncio.Future[Message] = asyncio.ensure_future(iterator.__anext__())
    await asyncio.wait({first}, timeout=FIRST_MESSAGE_GRACE_SECONDS)
    early = first.exception() if first.done() else None
    if isinstance(early, grpc.aio.AioRpcError):
        raise early  # the caller answers it as an ordinary error response

    async def body() -> AsyncIterator[str]:
        pending: asyncio.Future[Message] | None = first
        shutdown: asyncio.Future[Any] = asyncio.ensure_future(closing.wait())
        try:
            while pending is not None:
                waiting: set[asyncio.Future[Any]] = {pending, shutdown}
                done, _ = await asyncio.wait(waiting, timeout=HEARTBEAT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                if shutdown in done and pending not in done:
                    break
                if not done:
                    yield "\n" if ndjson else ": keepalive\n\n"
                    continue
                try:
                    item = pending.result()
                except StopAsyncIteration:
                    break
                yield _frame(binding, item, ndjson)
                pending = asyncio.ensure_future(iterator.__anext__())
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                yield _error_frame(binding, exc, ndjson)
        finally:
            shutdown.cancel()
            if pending is not None:
                pending.cancel()
            call.cancel()  # the client went away, or we are done: stop the server-side stream

    media_type = NDJSON if ndjson else SSE
    return StreamingResponse(
        body(), media_type=media_type, headers={**headers, "cache-control": "no-cache", "x-accel-buffering": "no"}
    )
