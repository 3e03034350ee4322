"""Thin gRPC services: validate -> domain/store -> proto."""

from __future__ import annotations

from datetime import datetime
from typing import Any, overload

from google.protobuf import timestamp_pb2
from grpc import aio

Context = aio.ServicerContext[Any, Any]


@overload
def timestamp(value: datetime) -> timestamp_pb2.Timestamp: ...
@overload
def timestamp(value: None) -> None: ...
def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A database timestamp as a proto Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
