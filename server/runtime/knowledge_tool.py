"""Knowledge search over an org's documents with citations: the agents' built-in `knowledge_search` tool and
`GET /documents/search` (server/services/documents.py) share it.

A citation names the document (id, current name), the indexed version, the chunk (index and character offsets in
the version's extracted text, heading path), the best fragments (`snippet`, matches between ** **), the chunk's
text and the blended score. Everything runs within one org (`server.store.knowledge.search` filters by org).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.domain.knowledge import Embedder
from server.store import TenantRepository
from server.store import knowledge as index
from server.store.db import connect
from server.store.tables import documents

DEFAULT_LIMIT = 5
MAX_LIMIT = 50
MAX_DOCUMENT_IDS = 100


async def search(
    engine: AsyncEngine,
    org_id: str,
    query: str,
    limit: int = DEFAULT_LIMIT,
    document_ids: Sequence[str] | None = None,
    embedder: Embedder | None = None,
) -> list[dict[str, Any]]:
    """The org's best passages for `query`, best first, as citations."""
    async with connect(engine) as connection:
        hits = await index.search(connection, org_id, query, limit, document_ids, embedder=embedder)
        if not hits:
            return []
        repo = TenantRepository(connection, org_id)
        ids = sorted({hit.source_id for hit in hits})
        rows = await connection.execute(
            repo.select(documents, documents.c.id.in_(ids)).with_only_columns(documents.c.id, documents.c.name)
        )
        names: dict[str, str] = {row.id: row.name for row in rows}
    # a document deleted since its chunks were read is no citation
    return [
        {
            "document_id": hit.source_id,
            "name": names[hit.source_id],
            "version": hit.version,
            "chunk_index": hit.chunk_index,
            "start_offset": hit.start,
            "end_offset": hit.end,
            "heading": hit.heading,
            "snippet": hit.snippet,
            "text": hit.text,
            "score": hit.score,
        }
        for hit in hits
        if hit.source_id in names
    ]


def _arguments(arguments: dict[str, Any]) -> tuple[str, int, list[str] | None]:
    """The tool's action_input checked; ValueError says what is wrong (the model sees it)."""
    query = arguments.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("knowledge_search needs 'query': a non-empty string")
    limit = arguments.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"'limit' must be an integer from 1 to {MAX_LIMIT}")
    ids = arguments.get("document_ids")
    if ids is None:
        return query, limit, None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_DOCUMENT_IDS:
        raise ValueError(f"'document_ids' must be a list of at most {MAX_DOCUMENT_IDS} document ids")
    return query, limit, ids


async def run(
    engine: AsyncEngine, org_id: str, arguments: dict[str, Any], embedder: Embedder | None = None
) -> tuple[Any, bool]:
    """The `knowledge_search` tool: (observation, success). Bad input is an observation, not a crash."""
    try:
        query, limit, ids = _arguments(arguments)
    except ValueError as exc:
        return {"error": str(exc)}, False
    hits = await search(engine, org_id, query, limit, ids, embedder)
    return {"query": query, "hits": hits, **({} if hits else {"note": "no document matched"})}, True
