"""Checks on a registered action before it is stored. Field names in errors are the wire names."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from hyphae.actions.v1 import action_pb2

from server.domain import custom_tables
from server.domain.dsl import PRIMITIVES
from server.errors import InvalidArgument

ACTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
KIND_NAMES = {
    action_pb2.ACTION_KIND_HTTP: "http",
    action_pb2.ACTION_KIND_LLM: "llm",
    action_pb2.ACTION_KIND_DB: "db",
    action_pb2.ACTION_KIND_MATCHER: "matcher",
    action_pb2.ACTION_KIND_CUSTOM_TABLE: "custom-table",
}


def _require(action: action_pb2.Action, field: str, wire: str, kind: str) -> None:
    if not action.HasField(field) or not getattr(action, field):  # type: ignore[arg-type]
        raise InvalidArgument(f"is required for {kind} actions", field=f"action.{wire}")


def _between(value: float, low: float, high: float, wire: str) -> None:
    if not low <= value <= high:
        raise InvalidArgument(f"must be between {low:g} and {high:g}", field=f"action.{wire}")


def validate(action: action_pb2.Action) -> None:
    """Raise InvalidArgument for the first problem; normalises http_method to upper case."""
    if not ACTION_NAME.match(action.action_name):
        raise InvalidArgument(
            "must start with a letter or '_' and hold only letters, digits, '_', '-' or '.' (at most 100)",
            field="action.action_name",
        )
    if action.action_name in PRIMITIVES:
        raise InvalidArgument(
            f"{action.action_name!r} is a built-in primitive; choose another name", field="action.action_name"
        )
    kind = KIND_NAMES.get(action.kind)
    if kind is None:
        raise InvalidArgument("must be one of http, llm, db, matcher, custom-table", field="action.kind")
    if kind == "http":
        _require(action, "url", "url", kind)
        parts = urlsplit(action.url)
        templated_origin = action.url.lstrip().startswith("{{")  # e.g. "{{base_url}}/orders": checked when sent
        if not templated_origin and (parts.scheme not in ("http", "https") or not parts.netloc):
            raise InvalidArgument(
                "must be an absolute http:// or https:// URL (or start with a {{ }} template)", field="action.url"
            )
        _require(action, "http_method", "http_method", kind)
        action.http_method = action.http_method.upper()
        if action.http_method not in HTTP_METHODS:
            raise InvalidArgument(f"must be one of {', '.join(HTTP_METHODS)}", field="action.http_method")
        if action.HasField("timeout_ms"):
            _between(action.timeout_ms, 1, 300_000, "timeout_ms")
        if action.HasField("max_retries"):
            _between(action.max_retries, 0, 10, "max_retries")
    elif kind == "llm":
        _require(action, "template", "template", kind)
        if action.HasField("max_tokens"):
            _between(action.max_tokens, 1, 1_000_000, "max_tokens")
        if action.HasField("temperature"):
            _between(action.temperature, 0, 2, "temperature")
    elif kind == "db":
        _require(action, "datasource", "datasource", kind)
        _require(action, "query", "query", kind)
        if action.HasField("params") and not action.params.raw.lstrip().startswith("["):
            raise InvalidArgument("must be a JSON array", field="action.params")
    elif kind == "matcher":
        _require(action, "left", "left", kind)
        _require(action, "right", "right", kind)
        if not action.match_on:
            raise InvalidArgument("needs at least one field", field="action.matchOn")
        if action.HasField("tolerance"):
            _between(action.tolerance, 0, 1e12, "tolerance")
        if action.HasField("fuzzy_threshold"):
            _between(action.fuzzy_threshold, 0, 100, "fuzzyThreshold")
        if action.HasField("date_window_days"):
            _between(action.date_window_days, 0, 36_500, "dateWindowDays")
    if action.HasField("operation") and action.operation not in custom_tables.OPERATIONS:
        raise InvalidArgument(f"must be one of {', '.join(custom_tables.OPERATIONS)}", field="action.operation")
