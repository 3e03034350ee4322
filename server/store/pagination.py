"""The one pagination helper: page_size + opaque keyset page_token, or the limit + offset spelling."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from server.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class PageRequest:
    size: int
    after: str | None  # sort key of the last row of the previous page
    offset: int
    filter_hash: str


def page_request(
    *,
    page_size: int = 0,
    page_token: str = "",
    limit: int = 0,
    offset: int = 0,
    page: int = 0,
    filters: dict[str, Any] | None = None,
) -> PageRequest:
    """Validate paging fields of a List request; errors name the offending field. `page` (1-based, for listings that
    offer page numbers) is the offset of that many pages of this size."""
    for name, value in (("page_size", page_size), ("limit", limit), ("offset", offset)):
        if value < 0:
            raise InvalidArgument("must not be negative", field=name)
    size = min(page_size or limit or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    if page:
        if page < 0 or offset:
            raise InvalidArgument("must be 1 or more, and not combined with offset", field="page")
        offset = (page - 1) * size
    filter_hash = hashlib.sha256(json.dumps(filters or {}, sort_keys=True, default=str).encode()).hexdigest()[:16]
    after = None
    if page_token:
        try:
            token = json.loads(base64.urlsafe_b64decode(page_token + "=" * (-len(page_token) % 4)))
            after, token_filter = str(token["a"]), str(token["f"])
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument("is not a token this server issued", field="page_token") from None
        if token_filter != filter_hash:
            raise InvalidArgument("belongs to a listing with other filters", field="page_token")
        if offset:
            raise InvalidArgument("cannot be combined with page_token", field="offset")
    return PageRequest(size=size, after=after, offset=offset, filter_hash=filter_hash)


def apply(
    query: sa.Select[Any], sort_column: sa.ColumnElement[Any], page: PageRequest, *, descending: bool
) -> sa.Select[Any]:
    """Keyset on a unique, time-ordered (or otherwise total) sort column; fetches one extra row to know if more."""
    if page.after is not None:
        query = query.where(sort_column < page.after if descending else sort_column > page.after)
    query = query.order_by(sort_column.desc() if descending else sort_column.asc()).limit(page.size + 1)
    return query.offset(page.offset) if page.offset else query


def next_token(rows: list[Any], page: PageRequest, sort_key: str) -> tuple[list[Any], str]:
    """Trim the extra row and return (rows, next_page_token)."""
    if len(rows) <= page.size:
        return rows, ""
    rows = rows[: page.size]
    raw = json.dumps({"a": getattr(rows[-1], sort_key), "f": page.filter_hash}).encode()
    return rows, base64.urlsafe_b64encode(raw).decode().rstrip("=")
