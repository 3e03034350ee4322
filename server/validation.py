"""Generic request checks driven by the contract: fields marked REQUIRED (google.api.field_behavior)."""

from __future__ import annotations

from google.api import field_behavior_pb2
from google.protobuf import descriptor as d
from google.protobuf.message import Message

from server.errors import InvalidArgument


def check_required(message: Message, prefix: str = "") -> None:
    """Raise InvalidArgument naming the first REQUIRED field left empty, depth first."""
    for field in message.DESCRIPTOR.fields:
        path = f"{prefix}{field.name}"
        required = field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        repeated = bool(field.is_repeated)
        if field.type == d.FieldDescriptor.TYPE_MESSAGE and not repeated:
            present = message.HasField(field.name)
            if required and not present:
                raise InvalidArgument("is required", field=path)
            if present and not str(field.message_type.full_name).startswith("google.protobuf."):  # type: ignore[union-attr]
                check_required(getattr(message, field.name), path + ".")
        elif required:
            value = getattr(message, field.name)
            if (repeated and len(value) == 0) or (not repeated and value == field.default_value):
                raise InvalidArgument("is required", field=path)
