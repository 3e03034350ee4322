"""Custom tables, pure logic: table and field definitions, and the checking and coercion of row values by type.

Every error is an InvalidArgument naming the offending field in the caller's terms (`fields[2].type`,
`rows[3].amount`, `where.status`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from server.errors import InvalidArgument

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
NAME_RULE = "must start with a letter or '_' and hold only letters, digits or '_' (at most 63)"
TYPES = ("text", "integer", "numeric", "boolean", "timestamptz")
SQL_TYPES = {
    "text": "text",
    "integer": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "timestamptz": "timestamptz",
}
# Columns every physical table has, set by the server.
RESERVED = ("id", "created_at", "updated_at")
MAX_FIELDS = 100
MAX_BULK_ROWS = 100_000  # rows per bulk insert call
DEFAULT_READ_ROWS = 1000  # rows a workflow step's `read` answers without a `limit`
MAX_READ_ROWS = 10_000  # the largest `limit` of a step's `read` (and what its update/upsert reads back)
MAX_TEXT_LENGTH = 1_000_000
OPERATIONS = ("read", "write", "update", "upsert")
_INT_TEXT = re.compile(r"^\s*[-+]?\d{1,19}\s*$")
_BIGINT = (-(2**63), 2**63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    max_length: int | None = None

    def spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "required": self.required}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


def check_name(name: str, field: str) -> None:
    if not NAME.fullmatch(name):
        raise InvalidArgument(NAME_RULE, field=field)


def check_fields(fields: list[Field]) -> None:
    """The declared fields of a new table; `fields[i].<attr>` named in errors."""
    if not fields:
        raise InvalidArgument("needs at least one field", field="fields")
    if len(fields) > MAX_FIELDS:
        raise InvalidArgument(f"at most {MAX_FIELDS} fields", field="fields")
    seen: set[str] = set()
    for index, item in enumerate(fields):
        where = f"fields[{index}]"
        check_name(item.name, f"{where}.name")
        if item.name.lower() in RESERVED:
            raise InvalidArgument(f"{item.name!r} is kept by the server ({', '.join(RESERVED)})", field=f"{where}.name")
        if item.name.lower() in seen:
            raise InvalidArgument(f"{item.name!r} is declared twice", field=f"{where}.name")
        seen.add(item.name.lower())
        if item.type not in TYPES:
            raise InvalidArgument(f"must be one of {', '.join(TYPES)}, got {item.type!r}", field=f"{where}.type")
        if item.max_length is not None:
            if item.type != "text":
                raise InvalidArgument("applies to text fields only", field=f"{where}.maxLength")
            if not 1 <= item.max_length <= MAX_TEXT_LENGTH:
                raise InvalidArgument(f"must be between 1 and {MAX_TEXT_LENGTH}", field=f"{where}.maxLength")


def _number_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value.strip()
    return None


def coerce(field: Field, value: Any, path: str) -> Any:
    """One value for `field` as the database takes it (None for null); InvalidArgument naming `path`."""
    if value is None:
        if field.required:
            raise InvalidArgument("is required and cannot be null", field=path)
        return None
    kind = field.type
    if kind == "text":
        if not isinstance(value, str):
            raise InvalidArgument(f"must be a string (text field), got {_type_name(value)}", field=path)
        if "\x00" in value:
            raise InvalidArgument("must not contain NUL characters", field=path)
        if not value.isascii() and _SURROGATE.search(value):
            raise InvalidArgument("must be valid Unicode (a lone surrogate such as \\ud800 is not)", field=path)
        if field.max_length is not None and len(value) > field.max_length:
            raise InvalidArgument(f"is longer than maxLength {field.max_length} ({len(value)} characters)", field=path)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidArgument(f"must be true or false (boolean field), got {_type_name(value)}", field=path)
        return value
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, (float, Decimal)) and _integral(value)) or (
            isinstance(value, str) and _INT_TEXT.match(value)
        ):
            number = int(value)
        else:
            raise InvalidArgument(f"must be a whole number (integer field), got {_short(value)}", field=path)
        if not _BIGINT[0] <= number <= _BIGINT[1]:
            raise InvalidArgument("is out of the 64-bit integer range", field=path)
        return number
    if kind == "numeric":
        text = _number_text(value)
        try:
            decimal: Decimal | None = Decimal(text) if text else None
        except InvalidOperation:
            decimal = None
        if decimal is None or not decimal.is_finite():
            raise InvalidArgument(
                f"must be a number or a numeric string (numeric field), got {_short(value)}", field=path
            )
        return decimal
    if kind == "timestamptz":
        if not isinstance(value, str):
            raise InvalidArgument(f"must be an ISO 8601 timestamp string, got {_type_name(value)}", field=path)
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidArgument(f"must be an ISO 8601 timestamp, got {_short(value)}", field=path) from None
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)
    raise InvalidArgument(f"has an unknown type {kind!r}", field=path)  # not reachable for checked definitions


def _integral(value: float | Decimal) -> bool:
    try:
        return bool(Decimal(value) == Decimal(value).to_integral_value())
    except (InvalidOperation, ValueError, OverflowError):
        return False


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Schema:
    """The declared fields of one table, for checking rows."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        self.by_name = {f.name: f for f in fields}

    def field(self, name: str, path: str) -> Field:
        found = self.by_name.get(name)
        if found is None:
            if name in RESERVED:
                raise InvalidArgument(f"{name!r} is set by the server and cannot be written", field=path)
            raise InvalidArgument(f"is not a field of this table (fields: {', '.join(self.by_name)})", field=path)
        return found

    def row(self, row: Any, path: str) -> dict[str, Any]:
        """A whole new row: unknown fields refused, required ones present, every value coerced."""
        if not isinstance(row, dict):
            raise InvalidArgument(f"must be an object, got {_type_name(row)}", field=path or "row")
        out: dict[str, Any] = {}
        for name, value in row.items():
            where = _join(path, name)
            out[name] = coerce(self.field(name, where), value, where)
        for field in self.fields:
            if field.required and out.get(field.name) is None:
                raise InvalidArgument("is required", field=_join(path, field.name))
        return out

    def changes(self, changes: Any, path: str) -> dict[str, Any]:
        """Values to set on existing rows: at least one, each declared and coerced (required ones not null)."""
        if not isinstance(changes, dict):
            raise InvalidArgument(f"must be an object, got {_type_name(changes)}", field=path)
        if not changes:
            raise InvalidArgument("must set at least one field", field=path)
        return {name: coerce(self.field(name, _join(path, name)), v, _join(path, name)) for name, v in changes.items()}

    def selection(self, where: Any, path: str) -> dict[str, Any]:
        """Equalities selecting rows: field -> value, or -> list of values (any of). `id` selects by row id."""
        if not isinstance(where, dict):
            raise InvalidArgument(f"must be an object, got {_type_name(where)}", field=path)
        out: dict[str, Any] = {}
        id_field = Field("id", "integer")
        for name, value in where.items():
            where_path = _join(path, name)
            field = id_field if name == "id" else self.field(name, where_path)
            loose = Field(field.name, field.type, required=False)  # null selects rows where the field is null
            if isinstance(value, list):
                out[name] = [coerce(loose, item, f"{where_path}[{i}]") for i, item in enumerate(value)]
            else:
                out[name] = coerce(loose, value, where_path)
        return out

    def keys_values(self, keys: Any, values: Any, path: str = "") -> dict[str, Any]:
        """The primitive's `keys` / `values` pairs as a selection (keys[i] = values[i])."""
        keys_path, values_path = _join(path, "keys"), _join(path, "values")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InvalidArgument("must be a list of field names", field=keys_path)
        if not isinstance(values, list):
            raise InvalidArgument(f"must be a list (one value per key), got {_type_name(values)}", field=values_path)
        if len(keys) != len(values):
            raise InvalidArgument(f"has {len(values)} value(s) for {len(keys)} key(s)", field=values_path)
        pairs: dict[str, Any] = {}
        for index, (key, value) in enumerate(zip(keys, values, strict=True)):
            field = Field("id", "integer") if key == "id" else self.field(key, f"{keys_path}[{index}]")
            if isinstance(value, list):
                raise InvalidArgument("must be a single value", field=f"{values_path}[{index}]")
            pairs[key] = coerce(Field(field.name, field.type), value, f"{values_path}[{index}]")
        return pairs


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def fields_from_spec(spec: list[dict[str, Any]]) -> list[Field]:
    return [Field(str(f["name"]), str(f["type"]), bool(f.get("required")), f.get("maxLength")) for f in spec]


# --------------------------------------------------------------------------- rows as COPY text

# COPY's text format: tab between columns, \N for null, and backslash, tab, newline and carriage return escaped.
COPY_NULL = "\\N"
_COPY_SPECIAL = re.compile("[\x00\\\\\t\n\r]")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COPY_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_COPY_UNESCAPES = {"t": "\t", "n": "\n", "r": "\r", "b": "\b", "f": "\f", "v": "\v"}


def copy_fields(line: str) -> list[str | None]:
    """The columns of one COPY text line as the text each column's input function receives (None: null). Reverses
    `copy_text`; any other backslashed character is taken as itself, as COPY does (octal and hex escapes, which
    this module never writes, are not read)."""
    return [
        None if column == COPY_NULL else _COPY_UNESCAPE.sub(lambda m: _COPY_UNESCAPES.get(m[1], m[1]), column)
        for column in line.split("\t")
    ]


def copy_text(value: Any) -> str:
    """One coerced value (as `coerce` returns it) in COPY text format."""
    if value is None:
        return COPY_NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES) if _COPY_SPECIAL.search(value) else value
    return str(value)  # int, Decimal


class _Slow(Exception):
    """A value the fast converter does not take as it is: the row goes through `Schema.row` instead."""


def _fast_converter(field: Field) -> Any:
    """A function from one JSON value to COPY text for the common, exactly typed case; _Slow for anything else
    (nulls of required fields, strings for numbers, floats for integers, bad values), which `Schema.row` then
    coerces or refuses with its own message. Both accept and render the same values the same way."""
    required, kind, max_length = field.required, field.type, field.max_length
    low, high = _BIGINT

    def text(value: Any) -> str:
        if type(value) is not str:
            if value is None and not required:
                return COPY_NULL
            raise _Slow
        if max_length is not None and len(value) > max_length:
            raise _Slow
        if not value.isascii() and _SURROGATE.search(value):
            raise _Slow
        if _COPY_SPECIAL.search(value):
            if "\x00" in value:
                raise _Slow
            return value.translate(_COPY_ESCAPES)
        return value

    def integer(value: Any) -> str:
        if type(value) is int and low <= value <= high:
            return str(value)
        if value is None and not required:
            return COPY_NULL
        raise _Slow

    def numeric(value: Any) -> str:
        kind_of = type(value)
        if kind_of is Decimal and value.is_finite():
            return str(value)
        if kind_of is int:
            return str(value)
        if value is None and not required:
            return COPY_NULL
        raise _Slow

    def boolean(value: Any) -> str:
        if value is True:
            return "t"
        if value is False:
            return "f"
        if value is None and not required:
            return COPY_NULL
        raise _Slow

    def timestamptz(value: Any) -> str:
        if type(value) is not str:
            if value is None and not required:
                return COPY_NULL
            raise _Slow
        try:
            stamp = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Slow from None
        return stamp.isoformat() if stamp.tzinfo is not None else stamp.isoformat() + "+00:00"

    return {"text": text, "integer": integer, "numeric": numeric, "boolean": boolean, "timestamptz": timestamptz}[kind]


class CopyEncoder:
    """A table's rows (parsed JSON objects) as COPY text lines of its declared fields, in declared order.

    Built once per call from the schema: each field has a converter for its exactly typed values; a row holding
    anything else (an unknown field, a number as a string, a bad value) goes through `Schema.row`, which either
    coerces it or raises the InvalidArgument naming `<path>.<field>` that a single insert would."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.names = [f.name for f in schema.fields]
        self._known = frozenset(self.names)
        self._pairs = [(f.name, _fast_converter(f)) for f in schema.fields]

    def line(self, row: Any, path: str) -> str:
        if type(row) is dict and self._known.issuperset(row):
            get = row.get
            try:
                return "\t".join([convert(get(name)) for name, convert in self._pairs])
            except _Slow:
                pass
        coerced = self.schema.row(row, path)  # raises the error naming the field, or coerces what it may
        return "\t".join([copy_text(coerced.get(name)) for name in self.names])
