"""The one wire codec: proto messages <-> each dialect's JSON.

`json_format` gets four things wrong for our clients, and this module is where they are fixed, driven by the
options in `hyphae/api/v1/options.proto`:

- free-form JSON (`hyphae.api.v1.Json`) is embedded verbatim: integers stay integers, big integers keep their
  digits, keys keep their order, and every number keeps its spelling (decoding parses floats as `JsonNumber`, a
  `Decimal` that remembers its source text, and re-serialises that text);
- field spelling per file (`field_case`) or per field (`wire_name`); input also accepts the proto name and
  the lowerCamel JSON name;
- enum values by their `value_name` option ("running" rather than "RUN_STATUS_RUNNING");
- fields without presence are always printed (`"passthrough": false`), fields with presence only when set;
  int64 values are printed as JSON numbers, not strings.

Decoding is strict: unknown fields, wrong types and out-of-range numbers raise `WireError` naming the field path.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeAlias

from google.api import field_behavior_pb2
from google.protobuf import descriptor as d
from google.protobuf import json_format
from google.protobuf.message import Message
from hyphae.api.v1 import json_pb2, options_pb2

# The upb runtime and the pure-Python runtime have different descriptor classes and the stubs name both;
# these aliases keep signatures readable.
Field: TypeAlias = Any
MessageType: TypeAlias = Any
JSON_MESSAGE = json_pb2.Json.DESCRIPTOR.full_name
_INT32 = (-(2**31), 2**31 - 1)
_UINT32 = (0, 2**32 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT64 = (0, 2**64 - 1)
_RANGES = {
    d.FieldDescriptor.TYPE_INT32: _INT32,
    d.FieldDescriptor.TYPE_SINT32: _INT32,
    d.FieldDescriptor.TYPE_SFIXED32: _INT32,
    d.FieldDescriptor.TYPE_UINT32: _UINT32,
    d.FieldDescriptor.TYPE_FIXED32: _UINT32,
    d.FieldDescriptor.TYPE_INT64: _INT64,
    d.FieldDescriptor.TYPE_SINT64: _INT64,
    d.FieldDescriptor.TYPE_SFIXED64: _INT64,
    d.FieldDescriptor.TYPE_UINT64: _UINT64,
    d.FieldDescriptor.TYPE_FIXED64: _UINT64,
}
_FLOATS = {d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT}
_FLOAT32_MAX = 3.4028234663852886e38
# Every integer field fits in 20 digits (2**64 - 1 has 20); longer ones are out of range before any conversion,
# which matters because int(str) and int(Decimal) are quadratic in the number of digits.
_MAX_FIELD_DIGITS = 20


class WireError(ValueError):
    """A request body or parameter that does not fit the contract. `path` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class RawJson(str):
    """JSON text to embed verbatim by `dumps`."""


class JsonNumber(Decimal):
    """A number parsed by `loads`: its exact value as a `Decimal`, and in `text` its spelling in the source.

    `dumps` writes `text` back, so free-form JSON keeps `1e2`, `0.0000001` or `-0.0` as they were sent.
    Arithmetic on it gives plain `Decimal`s (which `dumps` writes with `str`).
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number


# --- JSON text -------------------------------------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise WireError("", f"duplicate key {key!r} in JSON object")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise WireError("", f"{name} is not valid JSON")


def _parse_float(text: str) -> JsonNumber:
    try:
        return JsonNumber(text)
    except InvalidOperation:  # an exponent beyond what Decimal can hold, e.g. 1e9999999999999999999
        raise WireError("", f"request body holds a number out of range: {text[:40]}") from None


def _parse_int(text: str) -> int | JsonNumber:
    """Short integers as `int`; long ones (and `-0`) as `JsonNumber`, never through quadratic int(str)."""
    if len(text) > _MAX_FIELD_DIGITS or text == "-0":
        return JsonNumber(text)
    return int(text)


def loads(text: str | bytes) -> Any:
    """Parse JSON exactly: numbers keep their digits and spelling, duplicate keys and NaN rejected.

    Floats (and integers of more than 20 digits, and `-0`) become `JsonNumber`, other integers `int`.
    """
    try:
        return json.loads(
            text,
            parse_float=_parse_float,
            parse_int=_parse_int,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise WireError("", f"request body is not valid JSON: {exc.msg} at {where}") from None
    except UnicodeDecodeError:
        raise WireError("", "request body is not valid UTF-8") from None
    except RecursionError:
        raise WireError("", "request body nests too deeply") from None
    except WireError:
        raise
    except (ValueError, ArithmeticError):  # e.g. a number too long for int(), whatever the parser hit
        raise WireError("", "request body holds a number too long to parse") from None


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, RawJson):
        out.append(value)
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise WireError("", "numbers must be finite")
        out.append(value.text if isinstance(value, JsonNumber) else str(value))
    elif isinstance(value, float):
        out.append(
            json.dumps(value)
            if value == value and value not in (float("inf"), float("-inf"))
            else json.dumps(str(value))
        )
    elif isinstance(value, dict):
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out.append(",")
            out.append(json.dumps(str(key), ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def dumps(value: Any) -> str:
    """Compact JSON; `RawJson` pieces are embedded as they are, `Decimal` keeps its digits."""
    out: list[str] = []
    _write(value, out)
    return "".join(out)


def canonical_json(value: Any) -> str:
    """Compact text of an already-parsed JSON value (used to fill `hyphae.api.v1.Json.raw`)."""
    return dumps(value)


# --- naming ----------------------------------------------------------------------------------------------------


def _lower_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@cache
def field_case(message: MessageType) -> int:
    options = message.file.GetOptions()
    return int(options.Extensions[options_pb2.field_case])


@cache
def wire_name(field: Field) -> str:
    """The name a field has on the wire in its file's dialect."""
    explicit = field.GetOptions().Extensions[options_pb2.wire_name]
    if explicit:
        return str(explicit)
    if field_case(field.containing_type) == options_pb2.FIELD_CASE_CAMEL:
        return _lower_camel(field.name)
    return str(field.name)


@cache
def input_names(message: MessageType) -> dict[str, Field]:
    """Every spelling accepted on input: the wire name, the proto name and the lowerCamel JSON name."""
    names: dict[str, Field] = {}
    for field in message.fields:
        for name in (field.name, field.json_name, wire_name(field)):
            names.setdefault(name, field)
    return names


@cache
def enum_wire_names(enum: Any) -> dict[int, str]:
    """Number -> wire literal (the `value_name` option, else the proto name)."""
    names = {}
    for value in enum.values:
        literal = value.GetOptions().Extensions[options_pb2.value_name]
        names[value.number] = str(literal) if literal else value.name
    return names


@cache
def _enum_inputs(enum: Any) -> dict[str, int]:
    accepted: dict[str, int] = {}
    for value in enum.values:
        accepted[value.name] = value.number
        accepted[value.name.lower()] = value.number
    for number, literal in enum_wire_names(enum).items():
        accepted[literal] = number
        accepted[literal.lower()] = number
    return accepted


def has_presence(field: Field) -> bool:
    return bool(field.has_presence) and not _is_repeated(field)


def _is_repeated(field: Field) -> bool:
    return bool(field.is_repeated)


def is_map(field: Field) -> bool:
    return bool(_is_repeated(field) and field.message_type is not None and field.message_type.GetOptions().map_entry)


@cache
def behaviors(field: Field) -> frozenset[int]:
    return frozenset(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def is_output_only(field: Field) -> bool:
    return field_behavior_pb2.OUTPUT_ONLY in behaviors(field)


def is_required(field: Field) -> bool:
    return field_behavior_pb2.REQUIRED in behaviors(field)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- message -> wire -------------------------------------------------------------------------------------------


def to_wire(message: Message) -> dict[str, Any]:
    """A message as a JSON-ready tree in its dialect's spelling."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        if has_presence(field) and not message.HasField(field.name):
            continue
        value = getattr(message, field.name)
        if is_map(field):
            value_field = field.message_type.fields_by_name["value"]  # type: ignore[union-attr]
            out[wire_name(field)] = {str(k): _value_to_wire(value_field, v) for k, v in value.items()}
        elif _is_repeated(field):
            out[wire_name(field)] = [_value_to_wire(field, item) for item in value]
        else:
            out[wire_name(field)] = _value_to_wire(field, value)
    return out


def _value_to_wire(field: Field, value: Any) -> Any:
    if field.type == d.FieldDescriptor.TYPE_MESSAGE:
        return message_value_to_wire(value)
    if field.type == d.FieldDescriptor.TYPE_ENUM:
        return enum_wire_names(field.enum_type).get(value, value)
    if field.type == d.FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode()
    return value


def message_value_to_wire(value: Message) -> Any:
    full_name = value.DESCRIPTOR.full_name
    if full_name == JSON_MESSAGE:
        return RawJson(value.raw) if value.raw else None  # type: ignore[attr-defined]
    if full_name.startswith("google.protobuf."):
        return json_format.MessageToDict(value)
    return to_wire(value)


# --- wire -> message -------------------------------------------------------------------------------------------


def from_wire(data: Any, message: Message, path: str = "") -> None:
    """Fill `message` from a parsed JSON object; raises WireError naming the first offending field."""
    if not isinstance(data, dict):
        raise WireError(path, "must be a JSON object")
    names = input_names(message.DESCRIPTOR)
    for key, value in data.items():
        field = names.get(key)
        if field is None:
            raise WireError(_join(path, key), "unknown field")
        if is_output_only(field) or value is None:
            continue
        set_field(message, field, value, _join(path, wire_name(field)))


def set_field(message: Message, field: Field, value: Any, path: str, *, from_text: bool = False) -> None:
    """Set one field from a JSON value (or, with from_text, from a query/path string)."""
    if is_map(field):
        if not isinstance(value, dict):
            raise WireError(path, "must be a JSON object")
        target = getattr(message, field.name)
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            map_key = _scalar(key_field, key, f"{path}.{key}", from_text=True)
            if value_field.type == d.FieldDescriptor.TYPE_MESSAGE:
                _message_from_wire(item, target[map_key], f"{path}.{key}")
            else:
                target[map_key] = _scalar(value_field, item, f"{path}.{key}", from_text=from_text)
        return
    if _is_repeated(field):
        items = value if isinstance(value, list) else ([value] if from_text else None)
        if items is None:
            raise WireError(path, "must be a JSON array")
        target_list = getattr(message, field.name)
        for i, item in enumerate(items):
            if field.type == d.FieldDescriptor.TYPE_MESSAGE:
                _message_from_wire(item, target_list.add(), f"{path}[{i}]")
            else:
                target_list.append(_scalar(field, item, f"{path}[{i}]", from_text=from_text))
        return
    if field.type == d.FieldDescriptor.TYPE_MESSAGE:
        _message_from_wire(value, getattr(message, field.name), path, from_text=from_text)
        return
    setattr(message, field.name, _scalar(field, value, path, from_text=from_text))


def _message_from_wire(value: Any, target: Message, path: str, *, from_text: bool = False) -> None:
    full_name = target.DESCRIPTOR.full_name
    if full_name == JSON_MESSAGE:
        if from_text:
            value = loads(value) if isinstance(value, str) and value[:1] in '[{"' else value
        _check_json_numbers(value, path)
        raw = canonical_json(value)
        _check_unicode(raw, path)
        target.raw = raw  # type: ignore[attr-defined]
        return
    if full_name.startswith("google.protobuf."):
        try:
            json_format.ParseDict(_plain(value, path), target)
        except json_format.ParseError as exc:
            raise WireError(path, str(exc)) from None
        return
    from_wire(value, target, path)


def _plain(value: Any, path: str) -> Any:
    """Decimal -> float for json_format (only used for well-known types)."""
    if isinstance(value, Decimal):
        number = float(value)
        if not math.isfinite(number):
            raise WireError(path, "must hold finite numbers")
        return number
    if isinstance(value, dict):
        return {k: _plain(v, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, path) for v in value]
    return value


def _check_json_numbers(value: Any, path: str) -> None:
    """Free-form JSON goes to the server as text, which it parses again: refuse integers it cannot parse."""
    limit = sys.get_int_max_str_digits()
    if not limit:
        return
    # (value, trail): the trail is a linked (parent trail, key or index) pair, spelled out only for an error
    stack: list[tuple[Any, Any]] = [(value, None)]
    while stack:
        item, trail = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, (trail, str(key))) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((child, (trail, i)) for i, child in enumerate(item))
        elif (
            isinstance(item, JsonNumber)
            and len(item.text) > limit
            and item.text.lstrip("-").isascii()
            and item.text.lstrip("-").isdigit()
        ):
            pieces: list[str | int] = []
            while trail is not None:
                trail, piece = trail
                pieces.append(piece)
            where = path
            for piece in reversed(pieces):
                where = f"{where}[{piece}]" if isinstance(piece, int) else _join(where, piece)
            raise WireError(where, f"integer literal has more than {limit} digits")


_BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
_INT_TEXT = re.compile(r"^-?\d+$")


def _scalar(field: Field, value: Any, path: str, *, from_text: bool = False) -> Any:
    kind = field.type
    if kind == d.FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            _check_unicode(value, path)
            return value
        raise WireError(path, "must be a string")
    if kind == d.FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        if from_text and isinstance(value, str) and value.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[value.lower()]
        raise WireError(path, "must be true or false")
    if kind in _RANGES:
        low, high = _RANGES[kind]
        return _integer(value, path, low, high)
    if kind in _FLOATS:
        number = _float(value, path)
        if kind == d.FieldDescriptor.TYPE_FLOAT and abs(number) > _FLOAT32_MAX:
            raise WireError(path, f"must be between {-_FLOAT32_MAX:g} and {_FLOAT32_MAX:g}")
        return number
    if kind == d.FieldDescriptor.TYPE_ENUM:
        accepted = _enum_inputs(field.enum_type)
        if isinstance(value, str) and (value in accepted or value.lower() in accepted):
            return accepted.get(value, accepted.get(value.lower()))
        if isinstance(value, int) and not isinstance(value, bool) and value in enum_wire_names(field.enum_type):
            return value
        choices = ", ".join(literal for number, literal in enum_wire_names(field.enum_type).items() if number)
        raise WireError(path, f"invalid value {value!r}; expected one of {choices}")
    if kind == d.FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str):
            try:
                return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value else None)
            except (binascii.Error, ValueError):
                pass
        raise WireError(path, "must be base64 text")
    raise WireError(path, "unsupported field type")


def _check_unicode(text: str, path: str) -> None:
    """JSON may escape lone surrogates ("\\ud800"); protobuf strings must be valid UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise WireError(path, "must be valid Unicode (it holds a lone surrogate escape)") from None


def _integer(value: Any, path: str, low: int, high: int) -> int:
    """An integer within [low, high]; long inputs are refused before int() (quadratic in their digits) runs."""
    out_of_range = WireError(path, f"must be between {low} and {high}")
    if isinstance(value, bool):
        raise WireError(path, "must be an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, Decimal) and value.is_finite():
        if value.is_zero():
            return 0
        if value.adjusted() >= _MAX_FIELD_DIGITS:  # at least 10**20: beyond every integer field
            raise out_of_range
        if value != value.to_integral_value():
            raise WireError(path, "must be an integer")
        number = int(value)
    elif isinstance(value, str) and _INT_TEXT.match(value.strip()):
        text = value.strip()
        if len(text.lstrip("-").lstrip("0")) > _MAX_FIELD_DIGITS:
            raise out_of_range
        number = int(text)
    else:
        raise WireError(path, "must be an integer")
    if not low <= number <= high:
        raise out_of_range
    return number


def _float(value: Any, path: str) -> float:
    """A finite double from a JSON number or (query, path) text; NaN and infinities in any spelling refused."""
    if isinstance(value, bool):
        raise WireError(path, "must be a number")
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except (InvalidOperation, ValueError):
            raise WireError(path, "must be a number") from None
    if isinstance(value, Decimal) and not value.is_finite():  # NaN, sNaN, Infinity; float(sNaN) would raise
        raise WireError(path, "must be a finite number")
    if not isinstance(value, (int, float, Decimal)):
        raise WireError(path, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an int beyond the double range
        raise WireError(path, "must be a finite number") from None
    if not math.isfinite(number):
        raise WireError(path, "must be a finite number")
    return number


# --- helpers for the transcoder --------------------------------------------------------------------------------


def resolve_path(message: Message, dotted: str) -> tuple[Message, Field]:
    """The message holding the last segment of a dotted proto field path, and that field."""
    *parents, leaf = dotted.split(".")
    for name in parents:
        message = getattr(message, name)
    field = message.DESCRIPTOR.fields_by_name.get(leaf)
    if field is None:
        raise WireError(dotted, "unknown field")
    return message, field


def iter_fields(message: MessageType, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Field]]:
    """Every (dotted proto path, field) reachable for query parameters, bounded in depth."""
    for field in message.fields:
        dotted = f"{prefix}{field.name}"
        yield dotted, field
        if (
            field.type == d.FieldDescriptor.TYPE_MESSAGE
            and not _is_repeated(field)
            and depth < 3
            and not field.message_type.full_name.startswith("google.protobuf.")
            and field.message_type.full_name != JSON_MESSAGE
        ):
            yield from iter_fields(field.message_type, dotted + ".", depth + 1)
