"""Generic request checks driven by the contract, for REST and gRPC callers alike: fields marked REQUIRED
(google.api.field_behavior) are set, no string holds a NUL character (Postgres text cannot store one), and every
free-form `hyphae.api.v1.Json` holds strict JSON (so nothing unreadable is ever stored and served back)."""

from __future__ import annotations

from google.api import field_behavior_pb2
from google.protobuf import descriptor as d
from google.protobuf.message import Message

from server import jsonvalue
from server.errors import InvalidArgument

JSON_MESSAGE = "hyphae.api.v1.Json"


def _check_text(value: object, path: str) -> None:
    if isinstance(value, str) and "\x00" in value:
        raise InvalidArgument("must not contain NUL characters", field=path)


def check_request(message: Message, prefix: str = "") -> None:
    """Raise InvalidArgument naming the first REQUIRED field left empty or the first string holding NUL."""
    for field in message.DESCRIPTOR.fields:
        path = f"{prefix}{field.name}"
        required = field_behavior_pb2.REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        repeated = bool(field.is_repeated)
        if field.type == d.FieldDescriptor.TYPE_STRING:
            value = getattr(message, field.name)
            for item in value if repeated else (value,):
                _check_text(item, path)
        elif field.type == d.FieldDescriptor.TYPE_MESSAGE and repeated:
            value = getattr(message, field.name)
            if field.message_type.GetOptions().map_entry:  # type: ignore[union-attr]
                for key, item in value.items():
                    _check_text(key, f"{path}.{key}")
                    if isinstance(item, Message):
                        check_request(item, f"{path}.{key}.")
                    else:
                        _check_text(item, f"{path}.{key}")
            elif str(field.message_type.full_name) == JSON_MESSAGE:  # type: ignore[union-attr]
                # what the recursion below would check, without walking the descriptor once per item (a bulk
                # insert carries up to 100,000 rows); the service parses each item itself
                for index, item in enumerate(value):
                    _check_text(item.raw, f"{path}[{index}].raw")
            else:
                for index, item in enumerate(value):
                    check_request(item, f"{path}[{index}].")
        if field.type == d.FieldDescriptor.TYPE_MESSAGE and not repeated:
            present = message.HasField(field.name)
            if required and not present:
                raise InvalidArgument("is required", field=path)
            type_name = str(field.message_type.full_name)  # type: ignore[union-attr]
            if present and type_name == JSON_MESSAGE:
                jsonvalue.parse(getattr(message, field.name), path)
            elif present and not type_name.startswith("google.protobuf."):
                check_request(getattr(message, field.name), path + ".")
        elif required:
            value = getattr(message, field.name)
            if (repeated and len(value) == 0) or (not repeated and value == field.default_value):
                raise InvalidArgument("is required", field=path)
