"""gRPC status -> HTTP status (one table) and each dialect's error body."""

from __future__ import annotations

from typing import Any

import grpc
from hyphae.api.v1 import options_pb2

# google.rpc.Code -> HTTP, as grpc-gateway and Envoy map it.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
# The few reasons REST tells apart from their gRPC code.
REASON_STATUS = {"IDEMPOTENCY_KEY_REUSED": 422, "PAYLOAD_TOO_LARGE": 413, "UNSUPPORTED_MEDIA_TYPE": 415}
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def trailer(metadata: Any, key: str) -> str:
    """One value of gRPC (trailing) metadata, or ""."""
    for name, value in metadata or ():
        if name == key:
            return str(value)
    return ""


def http_status(code: grpc.StatusCode, reason: str = "") -> int:
    return REASON_STATUS.get(reason) or HTTP_STATUS.get(code, 500)


def error_body(dialect: int, status: int, message: str, reason: str = "") -> dict[str, Any]:
    title = TITLES.get(status, "Error")
    if dialect == options_pb2.DIALECT_HYFN:
        return {"error": title, "details": message}
    if dialect == options_pb2.DIALECT_THYGON:
        return {"success": False, "error": message}
    body: dict[str, Any] = {"error": title, "message": message}
    if reason:
        body["code"] = reason
    if dialect == options_pb2.DIALECT_HYPONEMA:
        body["error_kind"] = (reason or title).lower().replace(" ", "_")
    return body
