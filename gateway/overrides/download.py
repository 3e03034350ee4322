"""A server-streaming download -> raw bytes: the first message gives Content-Type, Content-Length and the file
name (Content-Disposition), the following ones are written to the HTTP body as they arrive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import grpc
from grpc.aio import EOF  # type: ignore[attr-defined]  # exported at runtime, missing in the stubs
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway import codec
from gateway.errors import error_body
from gateway.overrides import Override
from gateway.transcode import build_request

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.bindings import Binding

CALL_TIMEOUT_SECONDS = 600.0


def content_disposition(filename: str) -> str:
    """attachment with an ASCII fallback name and the exact UTF-8 one (RFC 6266 / 5987)."""
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


async def download(
    gateway: Gateway,
    binding: Binding,
    request: Request,
    path_params: dict[str, str],
    metadata: list[tuple[str, str]],
    headers: dict[str, str],
) -> Response:
    try:
        message = build_request(binding, None, path_params, request.query_params)
    except codec.WireError as exc:
        return Response(
            codec.dumps(error_body(binding.dialect, 400, str(exc), "VALIDATION_FAILED")),
            status_code=400,
            headers=headers,
            media_type="application/json",
        )
    stream = gateway.call(binding)(message, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
    try:
        first: Any = await stream.read()
    except grpc.aio.AioRpcError as exc:
        return gateway.error_response(binding, exc, headers)
    if first is EOF or first.WhichOneof("part") != "info":
        stream.cancel()
        raise RuntimeError("a download stream must start with the file's description")
    info = first.info
    headers.update(
        {
            "content-length": str(info.size_bytes),
            "content-disposition": content_disposition(info.filename),
            "etag": f'"{info.checksum_sha256}"',
            "x-document-version": str(info.version),
        }
    )

    async def body() -> AsyncIterator[bytes]:
        try:
            while (item := await stream.read()) is not EOF:
                yield bytes(getattr(item, "chunk"))  # noqa: B009 - the stub types read() as object
        finally:
            stream.cancel()  # a client that went away stops the server's reading too

    return StreamingResponse(body(), headers=headers, media_type=info.content_type)


OVERRIDES = {
    "hyphae.documents.v1.DocumentService.DownloadDocument": Override(
        download,
        None,
        {
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "The file's bytes; Content-Type is the document's type, Content-Disposition "
                    "carries its file name.",
                }
            }
        },
    ),
}
