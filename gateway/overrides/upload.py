"""multipart/form-data uploads -> the client-streaming upload methods, parsed as a stream.

The body is read from ASGI one piece at a time and fed to python-multipart's push parser; file bytes are forwarded
as `chunk` messages (coalesced to CHUNK_BYTES, the contract's 1 MiB) while they arrive, so memory stays flat
whatever the file size. A chunk message is encoded here, straight from views of the body pieces into its wire bytes
(one copy, instead of slicing, joining, building a message and serializing it: four). The
text fields (`name`, `tags`, `metadata`, `ttl_days`) go in one `fields` message at the end — forms may send them
after the file. The server enforces the size limit and the file types; it reads a refused stream to its end before
answering (413, 415, 404), so normally the whole body has been read by then; should the call end earlier, the rest
of the body is read and discarded (up to DRAIN_LIMIT), so the client receives the answer instead of a reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import Message
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import Response

from gateway import codec
from gateway.errors import error_body
from gateway.overrides import Override

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.bindings import Binding

CHUNK_BYTES = 1024 * 1024  # the contract's largest chunk
MAX_FIELD_BYTES = 64 * 1024
DRAIN_LIMIT = 256 * 1024 * 1024
FORM_FIELDS = ("name", "tags", "metadata", "ttl_days")
CALL_TIMEOUT_SECONDS = 600.0


class FormError(Exception):
    """The form breaks the contract: 400 naming the part."""


class _Form:
    """Callback state of the push parser: events become messages in `out`."""

    def __init__(self, request_class: type[Message], accepts_fields: bool, many: bool) -> None:
        self.request_class = request_class
        self.accepts_fields = accepts_fields
        self.many = many
        self.out: list[Message | bytes] = []  # bytes: an encoded chunk message
        self.files = 0
        self.fields: dict[str, bytearray] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._part: str | None = None  # "file" or a field name
        self._pending: list[memoryview] = []  # file bytes not yet sent: views of the body pieces
        self._pending_bytes = 0
        # the wire prefix of a `chunk` (a length-delimited field): the tag; the length follows as a varint
        self._chunk_tag = _varint(request_class.DESCRIPTOR.fields_by_name["chunk"].number << 3 | 2)

    # python-multipart callbacks (synchronous, called from parser.write)

    def on_part_begin(self) -> None:
        self._headers = {}
        self._part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_name).decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name in ("file", "files") and b"filename" in options:
            if self.files and not self.many:
                raise FormError("file: send one file part (several: POST /documents/bulk-upload)")
            self.files += 1
            self._part = "file"
            filename = options[b"filename"].decode("utf-8", "replace")
            content_type = self._headers.get("content-type", b"").decode("latin-1")
            self.out.append(self.request_class(file={"filename": filename, "content_type": content_type}))
        elif name in FORM_FIELDS and self.accepts_fields:
            if name in self.fields:
                raise FormError(f"{name}: sent twice")
            self._part = name
            self.fields[name] = bytearray()
        elif name in ("file", "files"):
            raise FormError(f"{name}: must be a file part (with a filename)")
        else:
            allowed = "file" + (", " + ", ".join(FORM_FIELDS) if self.accepts_fields else "")
            raise FormError(f"{name or 'a part without a name'}: unknown form field; expected {allowed}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            view = memoryview(data)[start:end]
            while view:  # split at CHUNK_BYTES: a chunk never exceeds the contract's size
                room = CHUNK_BYTES - self._pending_bytes
                self._pending.append(view[:room])
                self._pending_bytes += min(room, len(view))
                view = view[room:]
                if self._pending_bytes >= CHUNK_BYTES:
                    self._flush()
        elif self._part is not None:
            value = self.fields[self._part]
            value += data[start:end]
            if len(value) > MAX_FIELD_BYTES:
                raise FormError(f"{self._part}: longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._part == "file":
            self._flush()
        self._part = None

    def _flush(self) -> None:
        if self._pending_bytes:
            self.out.append(b"".join([self._chunk_tag, _varint(self._pending_bytes), *self._pending]))
        self._pending.clear()
        self._pending_bytes = 0

    def fields_message(self) -> Message | None:
        if not self.fields:
            return None
        fields: dict[str, Any] = {}
        for name, raw in self.fields.items():
            text = raw.decode("utf-8", "replace")
            if name == "ttl_days":
                if not (text.strip().isascii() and text.strip().isdigit()):
                    raise FormError(f"ttl_days: {text[:100]!r} is not a whole number of days")
                if len(text.strip()) > 9:  # the contract's int32; the server checks the real limit
                    raise FormError(f"ttl_days: {text[:100]!r} is far more days than a document may be kept")
                fields[name] = int(text)
            elif name in ("tags", "metadata"):
                try:
                    codec.loads(text)  # strict, as every JSON body: NaN, Infinity and duplicate keys refused
                except ValueError:
                    raise FormError(f"{name}: is not JSON ({text[:100]!r})") from None
                fields[name] = {"raw": text}
            else:
                fields[name] = text
        return self.request_class(fields=fields)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _serialize(message: Message | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body straight from ASGI, piece by piece (not Starlette's stream: it may be resumed to drain)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise FormError("the client disconnected")
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def upload(
    gateway: Gateway,
    binding: Binding,
    request: Request,
    path_params: dict[str, str],
    metadata: list[tuple[str, str]],
    headers: dict[str, str],
) -> Response:
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        return _error(binding, 400, "send multipart/form-data with the file in a part named 'file'", headers)
    request_class = binding.request_class
    has_id = "id" in request_class.DESCRIPTOR.fields_by_name
    form = _Form(request_class, accepts_fields=not has_id, many=binding.method.name.startswith("Bulk"))
    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": form.on_part_begin,
            "on_header_field": form.on_header_field,
            "on_header_value": form.on_header_value,
            "on_header_end": form.on_header_end,
            "on_headers_finished": form.on_headers_finished,
            "on_part_data": form.on_part_data,
            "on_part_end": form.on_part_end,
        },
    )
    problem: list[str] = []
    unexpected: list[Exception] = []
    body = _body(request)
    finished = [False]

    async def messages() -> AsyncIterator[Message | bytes]:
        if has_id:
            yield request_class(id=path_params.get("id", ""))
        try:
            async for piece in body:
                parser.write(piece)
                for message in form.out:
                    yield message
                form.out.clear()
            finished[0] = True
            parser.finalize()
            for message in form.out:
                yield message
            if not form.files:
                raise FormError("file: is required: send the file as a multipart part named 'file'")
            fields = form.fields_message()
            if fields is not None:
                yield fields
        except (FormError, MultipartParseError) as exc:
            problem.append(str(exc) if isinstance(exc, FormError) else f"the multipart body is malformed ({exc})")
            raise
        except Exception as exc:  # a bug: answered as one (JSON 500 with a request id), not as a cancelled call
            unexpected.append(exc)
            raise

    assert gateway.channel is not None, "the gateway's channel opens in the app lifespan"
    call = gateway.channel.stream_unary(
        binding.grpc_path,
        request_serializer=_serialize,
        response_deserializer=binding.response_class.FromString,
    )(messages(), metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
    try:
        response = await call
        trailers = await call.trailing_metadata()
    except grpc.aio.AioRpcError as exc:  # the server refused (413, 415, 404, ...) or failed
        if not finished[0]:
            await _drain(body)
        return _error(binding, 400, problem[0], headers) if problem else gateway.error_response(binding, exc, headers)
    except asyncio.CancelledError:
        # grpc cancels the call when the request iterator raises: a bad form. Anything else is our own cancellation.
        if unexpected and call.cancelled():
            raise unexpected[0] from None
        if not problem or not call.cancelled():
            raise
        if not finished[0]:
            await _drain(body)
        return _error(binding, 400, problem[0], headers)
    if problem:  # the request iterator failed after the server answered (cannot happen, but never store silently)
        return _error(binding, 400, problem[0], headers)
    headers.update(gateway.returned(trailers))
    return Response(
        codec.dumps(codec.message_value_to_wire(response)),
        status_code=binding.rule.success_status or 200,
        headers=headers,
        media_type="application/json",
    )


async def _drain(body: AsyncIterator[bytes]) -> None:
    """Read what is left of a refused upload, so the client gets the answer rather than a connection reset."""
    drained = 0
    try:
        async for piece in body:
            drained += len(piece)
            if drained > DRAIN_LIMIT:
                return
    except (FormError, RuntimeError):
        return


def _error(binding: Binding, status: int, message: str, headers: dict[str, str]) -> Response:
    return Response(
        codec.dumps(error_body(binding.dialect, status, message, "VALIDATION_FAILED")),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _form_schema(many: bool, with_fields: bool) -> dict[str, Any]:
    file_schema: dict[str, Any] = {"type": "string", "format": "binary", "description": "The file."}
    properties: dict[str, Any] = {
        "file": {"type": "array", "items": file_schema, "description": "The files."} if many else file_schema
    }
    if with_fields:
        if not many:
            properties["name"] = {"type": "string", "description": "Display name (defaults to the file name)."}
        properties["tags"] = {"type": "string", "description": 'JSON array of strings, e.g. ["finance"].'}
        properties["metadata"] = {"type": "string", "description": "JSON object."}
        properties["ttl_days"] = {"type": "integer", "minimum": 1, "description": "Days until deletion."}
    return {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": properties, "required": ["file"]}}
        },
    }


OVERRIDES = {
    "hyphae.documents.v1.DocumentService.UploadDocument": Override(upload, _form_schema(False, True), None),
    "hyphae.documents.v1.DocumentService.BulkUploadDocuments": Override(upload, _form_schema(True, True), None),
    "hyphae.documents.v1.DocumentService.CreateDocumentVersion": Override(upload, _form_schema(False, False), None),
}
