"""The OpenAPI 3.1 document of the REST surface, generated from the same contract the gateway serves.

Operations come from the binding table (`gateway.bindings`), names and value spellings from the wire codec
(`gateway.codec`), and descriptions from the comments kept in the descriptor set that `scripts/gen.py` builds
with source info (runtime descriptors carry no comments). The output is deterministic: paths and components
are sorted, everything else follows declaration order, so CI can regenerate `generated/openapi.json` and
diff it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any

from google.protobuf import descriptor as d
from google.protobuf import descriptor_pb2
from hyphae.api.v1 import options_pb2

from gateway import codec
from gateway.bindings import Binding, bindings_of, load_services
from gateway.overrides import overrides

Schema = dict[str, Any]

OPENAPI_VERSION = "3.1.0"
TITLE = "Hyphae API"
VERSION = "0.1.0"
SERVER_URL = "http://localhost:3009"
JSON_VALUE_DESCRIPTION = "Any JSON value, returned exactly as sent."
OPENAPI_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

DESCRIPTION = """\
REST transcoding of the Hyphae gRPC services; every operation here is also a gRPC method of the same name.

**Dialects.** Each service speaks one REST dialect, named in its tag: Hyphen (snake_case fields, errors \
`{"error", "message"}`), Hyfn (camelCase, errors `{"error", "details"}`), Hyponema (snake_case, \
validation errors carry `error_kind`) or Thygon (camelCase, every body wrapped in `{"success", "data"}`). \
The shared error responses below describe the Hyphen body.

**Fields.** Property names are the wire names of the dialect; input also accepts the proto name and the \
lowerCamel JSON name. Unknown input fields are rejected. Fields without presence (plain scalars, enums, \
repeated fields and maps) are always present in answers, with their zero value when unset; fields with \
presence (`optional` scalars and messages) are left out when unset. 64-bit integers are JSON numbers, \
enums are their wire literals (e.g. `running`), timestamps are RFC 3339 strings, and free-form JSON values \
are returned exactly as sent (number spelling and key order kept).

**Auth.** Send `Authorization: Bearer <key>` (sk-hyp-... secret keys, mt-hyp-... management tokens for \
/gateway routes, pk_live_... publishable keys for /sdk routes) or, in direct engine mode, `X-Org-Id`. \
`Idempotency-Key` makes a POST safe to retry (file uploads are idempotent by content instead); `X-Request-Id` is \
echoed for tracing.

**Streams.** Server-streaming operations answer server-sent events (`text/event-stream`) by default: the \
`data` of each event is one streamed message as JSON and, where the operation has a sequence field, its `id` \
is that message's sequence number, so a client that reconnects with `Last-Event-ID` resumes after the last \
event it saw. With `Accept: application/x-ndjson` the answer is newline-delimited JSON instead: one message \
object per line, as is (no wrapper). An error before the first message is an ordinary error response; after \
it, the stream ends with an `error` event (SSE) or a final `{"error": {...}}` line (NDJSON) holding the error \
body. Comment lines (SSE) or blank lines (NDJSON) keep idle connections open.
"""

_ERROR_RESPONSES: tuple[tuple[int, str, str], ...] = (
    (400, "BadRequest", "Validation failed: the body, a path or a query parameter breaks the contract."),
    (401, "Unauthorized", "Missing or unknown credential."),
    (403, "Forbidden", "The credential may not call this operation."),
    (404, "NotFound", "No such resource in this org."),
    (409, "Conflict", "The resource already exists or changed meanwhile."),
    (413, "PayloadTooLarge", "The request body is larger than the server accepts."),
    (
        422,
        "UnprocessableEntity",
        "The request is well-formed but cannot be applied (e.g. an Idempotency-Key reused with a different body).",
    ),
    (429, "TooManyRequests", "Rate limit exceeded; retry after the `Retry-After` seconds."),
    (500, "InternalError", "Unexpected server error."),
)
# Only the operations that take a file can answer it (added by their override).
_UNSUPPORTED_MEDIA_TYPE: tuple[int, str, str] = (415, "UnsupportedMediaType", "The file's type is not supported.")
_AUTH_STATUSES = frozenset({401, 403})
_ACCESS_NAMES: dict[int, str] = {
    options_pb2.ACCESS_UNSPECIFIED: "write",
    options_pb2.ACCESS_PUBLIC: "public",
    options_pb2.ACCESS_READ: "read",
    options_pb2.ACCESS_WRITE: "write",
    options_pb2.ACCESS_EXECUTE: "execute",
    options_pb2.ACCESS_MANAGEMENT: "management",
}
_DIALECT_NAMES: dict[int, str] = {
    options_pb2.DIALECT_HYPHEN: "Hyphen",
    options_pb2.DIALECT_HYFN: "Hyfn",
    options_pb2.DIALECT_HYPONEMA: "Hyponema",
    options_pb2.DIALECT_THYGON: "Thygon",
}

_F = d.FieldDescriptor
_SCALARS: dict[int, Schema] = {
    _F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    _F.TYPE_FLOAT: {"type": "number", "format": "float"},
    _F.TYPE_INT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    _F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    _F.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    _F.TYPE_FIXED32: {"type": "integer", "format": "uint32"},
    _F.TYPE_INT64: {"type": "integer", "format": "int64"},
    _F.TYPE_SINT64: {"type": "integer", "format": "int64"},
    _F.TYPE_SFIXED64: {"type": "integer", "format": "int64"},
    _F.TYPE_UINT64: {"type": "integer", "format": "uint64"},
    _F.TYPE_FIXED64: {"type": "integer", "format": "uint64"},
    _F.TYPE_BOOL: {"type": "boolean"},
    _F.TYPE_STRING: {"type": "string"},
    _F.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types as google.protobuf.json_format spells them (the codec delegates them to json_format).
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "description": 'Seconds with an `s` suffix, e.g. "1.5s".',
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": 'Comma-separated lowerCamel field paths, e.g. "name,definition".',
    },
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
    },
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "uint32"},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "uint64"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
}


# --- comments ---------------------------------------------------------------------------------------------

_INTERNAL_COMMENT = re.compile(r"\(--.*?--\)", re.DOTALL)


def _clean(comment: str) -> str:
    """A protoc comment as documentation: one leading space per line dropped, AIP-192 `(-- --)` removed."""
    text = _INTERNAL_COMMENT.sub("", comment)
    lines = [line[1:] if line.startswith(" ") else line for line in text.split("\n")]
    return "\n".join(line.rstrip() for line in lines).strip()


def load_comments(descriptor_set_path: Path) -> dict[str, str]:
    """Full name -> comment of services, methods, messages, fields, enums and values (`<enum>.<VALUE>`)."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set_path.read_bytes())
    comments: dict[str, str] = {}
    for file in files.file:
        by_path: dict[tuple[int, ...], str] = {}
        for location in file.source_code_info.location:
            text = _clean(location.leading_comments or location.trailing_comments)
            if text:
                by_path[tuple(location.path)] = text
        names: dict[tuple[int, ...], str] = {}
        prefix = f"{file.package}." if file.package else ""
        for i, message in enumerate(file.message_type):
            _name_message(message, (4, i), prefix, names)
        for i, enum in enumerate(file.enum_type):
            _name_enum(enum, (5, i), prefix, names)
        for i, service in enumerate(file.service):
            service_name = prefix + service.name
            names[(6, i)] = service_name
            for j, method in enumerate(service.method):
                names[(6, i, 2, j)] = f"{service_name}.{method.name}"
        for path, name in names.items():
            if path in by_path:
                comments[name] = by_path[path]
    return comments


def _name_message(
    message: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str, names: dict[tuple[int, ...], str]
) -> None:
    full_name = prefix + message.name
    names[path] = full_name
    for j, field in enumerate(message.field):
        names[(*path, 2, j)] = f"{full_name}.{field.name}"
    for j, nested in enumerate(message.nested_type):
        _name_message(nested, (*path, 3, j), f"{full_name}.", names)
    for j, enum in enumerate(message.enum_type):
        _name_enum(enum, (*path, 4, j), f"{full_name}.", names)


def _name_enum(
    enum: descriptor_pb2.EnumDescriptorProto, path: tuple[int, ...], prefix: str, names: dict[tuple[int, ...], str]
) -> None:
    full_name = prefix + enum.name
    names[path] = full_name
    for j, value in enumerate(enum.value):
        names[(*path, 2, j)] = f"{full_name}.{value.name}"


def _summary(comment: str) -> str:
    """The first sentence of a comment's first paragraph, on one line."""
    paragraph = " ".join(comment.split("\n\n", 1)[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return match.group(1) if match else paragraph


# --- schemas ----------------------------------------------------------------------------------------------


def _ref(kind: str, name: str) -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _is_repeated(field: d.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


class _Builder:
    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.schemas: dict[str, Schema] = {}

    # components

    def message_schema(self, message: d.Descriptor) -> Schema:
        """A reference to (or, for Json and well-known types, the inline schema of) a message."""
        if message.full_name == codec.JSON_MESSAGE:
            return {"description": JSON_VALUE_DESCRIPTION}
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name.startswith("google.protobuf."):
            return {}
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder: recursive messages terminate here
            self.schemas[message.full_name] = self.object_schema(message)
        return _ref("schemas", message.full_name)

    def object_schema(self, message: d.Descriptor, omit: Iterable[str] = ()) -> Schema:
        skipped = set(omit)
        schema: Schema = {"type": "object"}
        if message.full_name in self.comments:
            schema["description"] = self.comments[message.full_name]
        properties: Schema = {}
        required: list[str] = []
        for field in message.fields:
            if field.name in skipped:
                continue
            name = codec.wire_name(field)
            properties[name] = self.field_schema(field)
            if codec.is_required(field):
                required.append(name)
        schema["properties"] = properties
        if required:
            schema["required"] = required
        return schema

    def enum_schema(self, enum: d.EnumDescriptor) -> Schema:
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        if enum.full_name not in self.schemas:
            literals: list[str] = []
            notes: list[str] = []
            wire = codec.enum_wire_names(enum)
            for value in enum.values:
                named = bool(value.GetOptions().Extensions[options_pb2.value_name])
                if value.number == 0 and value.name.endswith("_UNSPECIFIED") and not named:
                    continue
                literal = wire[value.number]
                if literal in literals:  # aliases
                    continue
                literals.append(literal)
                comment = self.comments.get(f"{enum.full_name}.{value.name}")
                if comment:
                    notes.append(f"- `{literal}`: {' '.join(comment.split())}")
            schema: Schema = {"type": "string"}
            description = "\n\n".join(filter(None, [self.comments.get(enum.full_name), "\n".join(notes)]))
            if description:
                schema["description"] = description
            schema["enum"] = literals
            self.schemas[enum.full_name] = schema
        return _ref("schemas", enum.full_name)

    # fields

    def value_schema(self, field: d.FieldDescriptor) -> Schema:
        """The schema of one value of a field (an item of a repeated field)."""
        if field.message_type is not None:
            return self.message_schema(field.message_type)
        if field.enum_type is not None:
            return self.enum_schema(field.enum_type)
        return dict(_SCALARS[field.type])

    def type_schema(self, field: d.FieldDescriptor) -> Schema:
        """The schema of a field's whole value, without documentation keywords."""
        if codec.is_map(field):
            assert field.message_type is not None
            value_field = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self.value_schema(value_field)}
        if _is_repeated(field):
            return {"type": "array", "items": self.value_schema(field)}
        return self.value_schema(field)

    def field_schema(self, field: d.FieldDescriptor) -> Schema:
        schema = self.type_schema(field)
        descriptions = [self.comments.get(field.full_name, ""), schema.pop("description", "")]
        description = "\n\n".join(text for text in descriptions if text)
        if description:
            schema["description"] = description
        if codec.is_output_only(field):
            schema["readOnly"] = True
        if field.GetOptions().deprecated:
            schema["deprecated"] = True
        return schema


# --- operations -------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\{([^}=]+)(?:=([^}]*))?\}")


def openapi_path(template: str) -> str:
    """`/a/{b.c}/{d=x/**}:verb` -> `/a/{b.c}/{d}:verb`."""
    return _VARIABLE.sub(lambda match: "{" + match.group(1) + "}", template)


def _resolve(message: d.Descriptor, dotted: str) -> tuple[list[d.FieldDescriptor], str]:
    """The fields along a dotted proto path, and the path in wire names."""
    chain: list[d.FieldDescriptor] = []
    current: d.Descriptor | None = message
    for name in dotted.split("."):
        if current is None or name not in current.fields_by_name:
            raise ValueError(f"{message.full_name} has no field {dotted!r}")
        field = current.fields_by_name[name]
        chain.append(field)
        current = field.message_type
    return chain, ".".join(codec.wire_name(field) for field in chain)


def _sse_description(binding: Binding) -> str:
    """What the server-sent events of a streaming operation carry (see `gateway.streaming`)."""
    rule = binding.rule
    text = "Server-sent events (the default): the `data` of each event is one streamed message as JSON"
    if rule.sequence_field:
        _, wire = _resolve(binding.method.output_type, rule.sequence_field)
        text += f"; its `id` is the message's `{wire}`"
        if rule.resume_field:
            text += ", and a reconnect sending it back as `Last-Event-ID` resumes after that message"
    return text + ". A failure after the first event comes as an `error` event carrying the error body."


class _Operations:
    def __init__(self, builder: _Builder) -> None:
        self.b = builder

    def build(self, binding: Binding) -> Schema:
        method = binding.method
        service = method.containing_service
        rule = binding.rule
        op: Schema = {"tags": [service.name]}
        comment = self.b.comments.get(method.full_name, "")
        if comment:
            op["summary"] = _summary(comment)
            if comment != op["summary"]:
                op["description"] = comment
        op["operationId"] = f"{service.name}_{method.name}" + (f"_{binding.index}" if binding.index else "")
        parameters = [*self.path_parameters(binding), *self.query_parameters(binding)]
        # Not for uploads (client streams): they are idempotent by content (the same bytes are the same document),
        # and the server ignores the header there (server/interceptors.py).
        if binding.http_method == "POST" and not binding.method.client_streaming:
            parameters.append(_ref("parameters", "IdempotencyKey"))
        parameters.append(_ref("parameters", "RequestId"))
        op["parameters"] = parameters
        override = overrides().get(method.full_name)
        if override is not None:  # hand-written routes (multipart upload, file download) describe their bodies
            if override.request_body is not None:
                op["requestBody"] = override.request_body
        elif binding.body:
            op["requestBody"] = self.request_body(binding)
        op["responses"] = self.responses(binding)
        if override is not None and override.success_content is not None:
            status = str(binding.rule.success_status or 200)
            op["responses"][status] = {"description": "The file", "content": override.success_content}
        if override is not None and override.request_body is not None:
            op["responses"]["415"] = _ref("responses", _UNSUPPORTED_MEDIA_TYPE[1])
        if rule.access == options_pb2.ACCESS_PUBLIC:
            op["security"] = []
        elif rule.access == options_pb2.ACCESS_MANAGEMENT:
            op["security"] = [{"bearer": []}]
        else:
            op["security"] = [{"bearer": []}, {"orgHeader": []}]
        if method.GetOptions().deprecated:
            op["deprecated"] = True
        op["x-hyphae-access"] = _ACCESS_NAMES.get(rule.access, "write")
        if rule.publishable:
            op["x-hyphae-publishable"] = True
        return op

    def path_parameters(self, binding: Binding) -> list[Schema]:
        patterns = {match.group(1): match.group(2) or "*" for match in _VARIABLE.finditer(binding.template)}
        out: list[Schema] = []
        for variable in binding.variables:
            chain, _ = _resolve(binding.method.input_type, variable)
            leaf = chain[-1]
            param: Schema = {"name": variable, "in": "path", "required": True}
            pattern = patterns.get(variable, "*")
            notes = [self.b.comments.get(leaf.full_name, "")]
            if pattern not in ("*", "**"):
                notes.append(f"Matches `{pattern}`.")
            description = "\n\n".join(note for note in notes if note)
            if description:
                param["description"] = description
            param["schema"] = self.b.type_schema(leaf)
            if "/" in pattern or "**" in pattern:
                param["x-hyphae-multi-segment"] = True
            out.append(param)
        return out

    def query_parameters(self, binding: Binding) -> list[Schema]:
        if binding.body == "*":
            return []
        bound = [*binding.variables, *([binding.body] if binding.body else [])]
        out: list[Schema] = []
        request = binding.method.input_type
        for dotted, field in codec.iter_fields(request):
            if field.type == _F.TYPE_MESSAGE:
                continue
            if any(dotted == name or dotted.startswith(name + ".") for name in bound):
                continue
            chain, wire = _resolve(request, dotted)
            if any(codec.is_output_only(link) for link in chain):
                continue
            param: Schema = {"name": wire, "in": "query"}
            if codec.is_required(field):
                param["required"] = True
            comment = self.b.comments.get(field.full_name)
            if comment:
                param["description"] = comment
            param["schema"] = self.b.type_schema(field)
            out.append(param)
        return out

    def request_body(self, binding: Binding) -> Schema:
        request = binding.method.input_type
        if binding.body == "*":
            top_bound = [name for name in binding.variables if "." not in name]
            schema = self.b.object_schema(request, omit=top_bound) if top_bound else self.b.message_schema(request)
            required = any(codec.is_required(f) for f in request.fields if f.name not in top_bound)
            description = None  # the request message's own comment only repeats the operation's
        else:
            chain, _ = _resolve(request, binding.body)
            schema = self.b.type_schema(chain[-1])
            required = True
            description = self.b.comments.get(chain[-1].full_name)
        body: Schema = {}
        if description:
            body["description"] = description
        body["required"] = required
        body["content"] = {"application/json": {"schema": schema}}
        return body

    def responses(self, binding: Binding) -> Schema:
        status = binding.rule.success_status or 200
        response = binding.method.output_type
        if binding.response_body:
            chain, _ = _resolve(response, binding.response_body)
            schema = self.b.type_schema(chain[-1])
        else:
            schema = self.b.message_schema(response)
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Success"
        success: Schema = {}
        if binding.server_streaming:
            success["description"] = f"{phrase} (streaming responses)"
            success["content"] = {
                "text/event-stream": {"schema": {"type": "string", "description": _sse_description(binding)}},
                "application/x-ndjson": {
                    "schema": {
                        "description": "With `Accept: application/x-ndjson`: one JSON object per line, each a "
                        "streamed message as is (no wrapper); a failure after the first message ends the stream "
                        'with a `{"error": {...}}` line.',
                        "anyOf": [
                            schema,
                            {
                                "type": "object",
                                "properties": {"error": _ref("schemas", "Error")},
                                "required": ["error"],
                                "additionalProperties": False,
                            },
                        ],
                    }
                },
            }
        else:
            success["description"] = phrase
            success["content"] = {"application/json": {"schema": schema}}
        out: Schema = {str(status): success}
        public = binding.rule.access == options_pb2.ACCESS_PUBLIC
        for code, name, _ in _ERROR_RESPONSES:
            if public and code in _AUTH_STATUSES:
                continue
            out[str(code)] = _ref("responses", name)
        return out


# --- document ---------------------------------------------------------------------------------------------


def _components(schemas: dict[str, Schema]) -> Schema:
    error: Schema = {
        "type": "object",
        "description": "Error body of the Hyphen dialect.",
        "properties": {
            "error": {"type": "string", "description": 'Title of the failure, e.g. "Validation failed".'},
            "message": {"type": "string", "description": "What went wrong, naming the field if any."},
            "code": {"type": "string", "description": 'Machine-readable reason, e.g. "NOT_FOUND".'},
        },
        "required": ["error", "message"],
    }
    all_schemas = {**schemas, "Error": error}
    responses: Schema = {}
    for code, name, description in (*_ERROR_RESPONSES, _UNSUPPORTED_MEDIA_TYPE):
        response: Schema = {"description": description}
        if code == 429:
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
            }
        response["content"] = {"application/json": {"schema": _ref("schemas", "Error")}}
        responses[name] = response
    return {
        "schemas": {name: all_schemas[name] for name in sorted(all_schemas)},
        "responses": responses,
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes the request safe to retry: a repeat with the same key and body answers "
                "the stored response; the same key with another body answers 422.",
                "schema": {"type": "string", "maxLength": 255},
            },
            "RequestId": {
                "name": "X-Request-Id",
                "in": "header",
                "required": False,
                "description": "Caller's id of the request, echoed in the response and logs.",
                "schema": {"type": "string"},
            },
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key: sk-hyp-... (secret key of one org), mt-hyp-... (management "
                "token, /gateway routes) or pk_live_... (publishable key, /sdk routes only).",
            },
            "orgHeader": {
                "type": "apiKey",
                "in": "header",
                "name": "X-Org-Id",
                "description": "Direct engine mode: the org id, trusted without a key "
                "(local, or behind a gateway that sets it).",
            },
        },
    }


def build_document(descriptor_set_path: Path, services: list[d.ServiceDescriptor] | None = None) -> Schema:
    """The OpenAPI 3.1 document of every REST binding; `services` defaults to every generated service."""
    comments = load_comments(descriptor_set_path)
    builder = _Builder(comments)
    operations = _Operations(builder)
    services = load_services() if services is None else services
    bindings = bindings_of(services)
    paths: dict[str, Schema] = {}
    for binding in bindings:
        method = binding.http_method.lower()
        if method not in OPENAPI_METHODS:
            raise ValueError(f"{binding.method.full_name}: {binding.http_method} has no OpenAPI form")
        item = paths.setdefault(openapi_path(binding.template), {})
        if method in item:
            raise ValueError(f"{binding.method.full_name}: {method.upper()} {binding.template} bound twice")
        item[method] = operations.build(binding)
    tags: list[Schema] = []
    for service in sorted({b.method.containing_service for b in bindings}, key=lambda s: s.full_name):
        tag: Schema = {"name": service.name}
        dialect = _DIALECT_NAMES.get(int(service.GetOptions().Extensions[options_pb2.dialect]))
        texts = [comments.get(service.full_name, ""), f"Dialect: {dialect}." if dialect else ""]
        description = "\n\n".join(text for text in texts if text)
        if description:
            tag["description"] = description
        tags.append(tag)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": SERVER_URL}],
        "tags": tags,
        "paths": {
            path: {method: paths[path][method] for method in OPENAPI_METHODS if method in paths[path]}
            for path in sorted(paths)
        },
        "components": _components(builder.schemas),
    }


def render(document: Schema) -> str:
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_document(descriptor_set_path: Path, target: Path) -> None:
    target.write_text(render(build_document(descriptor_set_path)), encoding="utf-8")
