"""REST bindings read from `google.api.http` annotations, and the router that matches requests to them.

Every generated `*_pb2` module under `hyphae` is imported so its services land in the default descriptor pool;
each `HttpRule` (and its `additional_bindings`) becomes a `Binding`. Path templates follow google/api/http.proto:
literal segments, `{field}`, `{field=pattern/*}`, `*`, `**` and a trailing `:verb`. Matching prefers literal
segments over variables segment by segment, so `/workflows/runs` never reaches `/workflows/{id}`.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import unquote

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor as d
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message
from hyphae.api.v1 import options_pb2

HTTP_VERBS = ("get", "put", "post", "delete", "patch")


@dataclass(frozen=True)
class Segment:
    literal: str | None = None  # a fixed segment
    variable: str | None = None  # dotted field path bound by this segment (or by the run it starts)
    wildcard: str = ""  # "*" one segment, "**" the rest of the path; "" for a literal


@dataclass(frozen=True)
class Binding:
    method: d.MethodDescriptor
    http_method: str
    template: str
    body: str
    response_body: str
    segments: tuple[Segment, ...]
    verb: str = ""
    variables: tuple[str, ...] = field(default=())
    index: int = 0  # position of this binding's rule in its method's `google.api.http` list (0 = the main rule)

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def request_class(self) -> type[Message]:
        return message_class(self.method.input_type)

    @property
    def response_class(self) -> type[Message]:
        return message_class(self.method.output_type)

    @property
    def dialect(self) -> int:
        return int(self.method.containing_service.GetOptions().Extensions[options_pb2.dialect])

    @property
    def rule(self) -> options_pb2.MethodRule:
        return self.method.GetOptions().Extensions[options_pb2.rule]

    @property
    def server_streaming(self) -> bool:
        return bool(self.method.server_streaming)

    def specificity(self) -> tuple[tuple[int, str], ...]:
        """Sort key: literal segments first, then single wildcards, then `**`; the verb-bearing path first."""
        rank = {"": 0, "*": 1, "**": 2}
        return (*((rank[s.wildcard], s.literal or "") for s in self.segments), (0 if self.verb else 1, ""))


@cache
def message_class(descriptor: d.Descriptor) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


class TemplateError(ValueError):
    pass


_VARIABLE = re.compile(r"^\{([a-zA-Z_][\w.]*)(?:=(.+))?\}$")


def parse_template(template: str) -> tuple[tuple[Segment, ...], str, tuple[str, ...]]:
    """Split a path template into segments, its `:verb` and the variables it binds."""
    if not template.startswith("/"):
        raise TemplateError(f"template {template!r} must start with '/'")
    path, verb = template, ""
    last = template.rsplit("/", 1)[-1]
    if ":" in last and "}" not in last.split(":", 1)[1]:
        path, verb = template.rsplit(":", 1)
    segments: list[Segment] = []
    variables: list[str] = []
    # split on "/" but keep "{a=b/*}" together
    parts = re.findall(r"\{[^}]*\}|[^/]+", path)
    for part in parts:
        match = _VARIABLE.match(part)
        if match:
            name, pattern = match.group(1), match.group(2) or "*"
            variables.append(name)
            for sub in pattern.split("/"):
                if sub in ("*", "**"):
                    segments.append(Segment(variable=name, wildcard=sub))
                else:
                    segments.append(Segment(literal=sub, variable=name))
        elif part in ("*", "**"):
            segments.append(Segment(wildcard=part))
        else:
            segments.append(Segment(literal=part))
    if any(s.wildcard == "**" for s in segments[:-1]):
        raise TemplateError(f"template {template!r}: '**' must be the last segment")
    return tuple(segments), verb, tuple(variables)


def load_services(package: str = "hyphae") -> list[d.ServiceDescriptor]:
    """Import every generated module of `package` and return the services in the default pool."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("_pb2"):
            importlib.import_module(info.name)
    services: list[d.ServiceDescriptor] = []
    pool = descriptor_pool.Default()
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.endswith("_pb2"):
            file = pool.FindFileByName(importlib.import_module(info.name).DESCRIPTOR.name)
            services.extend(file.services_by_name.values())
    return sorted(services, key=lambda s: s.full_name)


def _rules(method: d.MethodDescriptor) -> list[http_pb2.HttpRule]:
    options = method.GetOptions()
    if not options.HasExtension(annotations_pb2.http):
        return []
    rule = options.Extensions[annotations_pb2.http]
    return [rule, *rule.additional_bindings]


def bindings_of(services: list[d.ServiceDescriptor]) -> list[Binding]:
    """Every REST binding, most specific first."""
    out: list[Binding] = []
    for service in services:
        for method in service.methods:
            for index, rule in enumerate(_rules(method)):
                kind = rule.WhichOneof("pattern")
                if kind is None:
                    continue
                if kind == "custom":
                    http_method, template = rule.custom.kind.upper(), rule.custom.path
                else:
                    http_method, template = kind.upper(), getattr(rule, kind)
                if http_method in ("GET", "DELETE") and rule.body:
                    raise TemplateError(f"{method.full_name}: {http_method} binding must not have a body")
                segments, verb, variables = parse_template(template)
                out.append(
                    Binding(
                        method, http_method, template, rule.body, rule.response_body, segments, verb, variables, index
                    )
                )
    return sorted(out, key=Binding.specificity)


@dataclass
class Match:
    binding: Binding
    path_params: dict[str, str]


class Router:
    """Finds the binding of a request; literal segments beat variables because bindings are pre-sorted."""

    def __init__(self, bindings: list[Binding]) -> None:
        self.bindings = bindings

    def match(self, http_method: str, path: str) -> tuple[Match | None, list[str]]:
        """The binding for a request, and the HTTP methods the path allows when none matched.

        `path` is the raw request path, still percent-encoded (ASGI `scope["raw_path"].decode("latin-1")`, without
        the query string), not the decoded `scope["path"]`: segments are split on a literal "/" first, then each
        is percent-decoded exactly once, so `%2F` stays inside its segment and `%2525` binds `%25`.

        Returns `(match, [])` on a match; `(None, allowed)` otherwise, where `allowed` is the sorted HTTP methods
        of the bindings whose template matches the path (for a 405 with an `Allow` header), empty when no
        binding knows the path (a 404).
        """
        raw = path.rstrip("/") or "/"
        last = raw.rsplit("/", 1)[-1]  # a `:verb` is matched undecoded: `%3A` is data, not a verb separator
        raw_parts = [p for p in raw.split("/") if p]
        decoded = [unquote(p) for p in raw_parts]
        allowed: set[str] = set()
        for binding in self.bindings:
            parts = decoded
            if binding.verb:
                if not last.endswith(":" + binding.verb):
                    continue
                parts = [*decoded[:-1], unquote(last[: -len(binding.verb) - 1])]
            params = _match_segments(binding.segments, parts)
            if params is None:
                continue
            if binding.http_method == http_method:
                return Match(binding, params), []
            allowed.add(binding.http_method)
        return None, sorted(allowed)


def _match_segments(segments: tuple[Segment, ...], parts: list[str]) -> dict[str, str] | None:
    """Bind already-decoded path segments to a template; a `**` run is joined back with "/"."""
    params: dict[str, list[str]] = {}
    i = 0
    for segment in segments:
        if segment.wildcard == "**":
            taken = parts[i:]
            i = len(parts)
        elif i < len(parts) and (segment.literal is None or parts[i] == segment.literal):
            taken = parts[i : i + 1]
            i += 1
        else:
            return None
        if segment.variable is not None:
            params.setdefault(segment.variable, []).extend(taken)
    if i != len(parts):
        return None
    return {name: "/".join(values) for name, values in params.items()}


def collisions(bindings: list[Binding]) -> list[tuple[Binding, Binding]]:
    """Pairs of bindings of the same HTTP method whose templates match exactly the same paths.

    A literal-vs-variable overlap (`/workflows/runs` vs `/workflows/{id}`) is not a collision: the router tries
    the literal first. Two templates with the same shape are, since one of them can never be reached.
    """
    seen: dict[tuple[str, str, tuple[str, ...]], Binding] = {}
    found: list[tuple[Binding, Binding]] = []
    for binding in bindings:
        shape = tuple(s.literal if s.literal is not None else s.wildcard for s in binding.segments)
        key = (binding.http_method, binding.verb, shape)
        if key in seen:
            found.append((seen[key], binding))
        else:
            seen[key] = binding
    return found
