"""Domain errors. Services raise these; the interceptor turns them into gRPC statuses, the gateway into HTTP.

`reason` is a stable machine code sent as the `hyphae-reason` trailer; the gateway's one status table maps the
gRPC code (and the few reasons REST needs to tell apart, e.g. 422 and 413) to HTTP.
"""

from __future__ import annotations

import grpc


class HyphaeError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidArgument(HyphaeError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "VALIDATION_FAILED"

    def __init__(self, message: str, *, field: str = "", reason: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message, reason=reason)
        self.field = field


class Unauthenticated(HyphaeError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(HyphaeError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(HyphaeError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(HyphaeError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(HyphaeError):
    """The system is not in a state where the call can work (misconfiguration the operator must fix)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Conflict(HyphaeError):
    """The resource is in a state that forbids the call (answered twice, not waiting, in flight)."""

    code = grpc.StatusCode.ABORTED
    reason = "CONFLICT"


class RateLimited(HyphaeError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(HyphaeError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class PayloadTooLarge(HyphaeError):
    """A body (an uploaded file) larger than the server accepts; REST answers 413."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(HyphaeError):
    """A file type the server does not store; REST answers 415."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "UNSUPPORTED_MEDIA_TYPE"
