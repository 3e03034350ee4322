"""Indexes documents into knowledge (server/store/knowledge.py) in the background, durably.

The queue is the documents table itself: a new document or version is `index_status = 'pending'` in the
transaction that stores it, so the upload's answer does not wait for text extraction. Every serving process runs
an `Indexer`: it claims a pending document with FOR UPDATE SKIP LOCKED and, in that same transaction, reads the
current version's bytes, replaces the source's chunks (`index_source`, source id = document id) and records the
outcome. A crash or a lost connection rolls all of it back, so the row is pending again; nothing is left
half-indexed or forgotten. The process that stored a version indexes it at once (`DocumentService._stored` hands
it over); every process also sweeps documents pending for more than STALE_SECONDS (their process died first, or
they predate indexing). Outcomes: `indexed` (with the chunk count), `skipped` (a type without text: images, Excel;
or more than MAX_INDEX_BYTES, with that reason), `failed` (unreadable bytes: invalid JSON, an encrypted PDF, a lost
blob — with the reason; not retried until a new version arrives). The row lock is held while one document is
indexed, so a PATCH, delete or new version of that document waits for it (seconds at most: extraction runs in a
thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from server.blobstore import BlobStore
from server.domain import knowledge
from server.domain.knowledge import Embedder
from server.store import TenantRepository
from server.store import documents as store
from server.store import knowledge as index
from server.store.db import connect, log_will_retry

log = logging.getLogger("hyphae.indexer")
POLL_SECONDS = 5.0
# Pending this long, a document is taken by any process's sweep: the process that stored it indexes it at once
# unless it died (or the document predates indexing).
STALE_SECONDS = 30.0
# Bigger documents are stored and downloadable but not indexed (`skipped`, with the reason): extracting and chunking
# tens of MiB of text would hold a core and the document's row lock for long, for text nobody searches page by page.
MAX_INDEX_BYTES = 8 * 1024 * 1024


class Indexer:
    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        embedder: Embedder | None = None,
        *,
        poll_seconds: float = POLL_SECONDS,
        stale_seconds: float = STALE_SECONDS,
        max_bytes: int = MAX_INDEX_BYTES,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.embedder = embedder
        self.max_bytes = max_bytes
        self.poll_seconds = poll_seconds
        self.stale_seconds = stale_seconds
        self._stored: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def on_version_stored(self, org_id: str, document_id: str) -> None:
        """DocumentService's hook: the version is already queued (pending); index it now, in this process."""
        self._stored.put_nowait((org_id, document_id))

    async def index_document(self, org_id: str, document_id: str) -> bool:
        """Index this document if it is still pending and no other indexer holds it; False otherwise."""
        return await self._index_one((org_id, document_id))

    async def sweep(self) -> int:
        """Index every document left pending for stale_seconds (its process died, or it predates indexing)."""
        handled = 0
        while await self._index_one(None):
            handled += 1
        return handled

    async def _index_one(self, document: tuple[str, str] | None) -> bool:
        async with connect(self.engine) as connection:
            row = await store.claim_unindexed(connection, document=document, stale_seconds=self.stale_seconds)
            if row is None:
                return False
            repo = TenantRepository(connection, row.org_id)
            status, chunks, error = await self._index(connection, row)
            if status != "indexed":  # the previous version's chunks must not answer for this one
                await index.delete_source(connection, row.org_id, row.id)
            await store.set_index_state(repo, row.id, status, chunks, error)
        log.debug("document %s/%s version %s: %s (%d chunks)", row.org_id, row.id, row.current_version, status, chunks)
        return True

    async def _index(self, connection: Any, row: Any) -> tuple[str, int, str]:
        try:
            knowledge.detect_format(row.content_type, row.filename)
        except knowledge.UnsupportedContent:
            return "skipped", 0, ""
        if int(row.size_bytes) > self.max_bytes:
            limit = f"{self.max_bytes / 1024 / 1024:g} MiB"
            return "skipped", 0, f"larger than the {limit} indexing limit: stored and downloadable, not searchable"
        try:
            content = b"".join([chunk async for chunk in self.blobs.read(row.org_id, row.checksum_sha256)])
            async with connection.begin_nested():  # a failure undoes a partial index, not the claim
                count = await index.index_source(
                    connection,
                    row.org_id,
                    row.id,
                    int(row.current_version),
                    content,
                    row.content_type,
                    row.name,
                    filename=row.filename,  # the format is the file's (as detected above), never the display name's
                    embedder=self.embedder,
                )
        except knowledge.UnsupportedContent as exc:
            return "failed", 0, exc.message
        except sa.exc.DBAPIError:
            raise  # the database: roll back, the row stays pending
        except Exception as exc:  # a lost blob, a bug, a model failure: recorded and logged, not retried forever
            log.exception("indexing %s/%s failed", row.org_id, row.id)
            return "failed", 0, f"internal error: {type(exc).__name__}"
        return "indexed", count, ""

    async def run(self) -> None:
        """Forever: index what this process stored as it arrives, and every poll interval the stale backlog (also
        under a steady stream of uploads)."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            if loop.time() >= next_sweep:
                try:
                    await self.sweep()
                except Exception:
                    log_will_retry(log, "indexing the backlog failed; will retry")
                next_sweep = loop.time() + self.poll_seconds
            try:
                async with asyncio.timeout(max(next_sweep - loop.time(), 0.0)):
                    org_id, document_id = await self._stored.get()
            except TimeoutError:
                continue
            try:
                await self.index_document(org_id, document_id)
            except Exception:  # the database is away: the row stays pending and a sweep takes it later
                log_will_retry(log, "indexing %s/%s failed; will retry", org_id, document_id)


@contextlib.asynccontextmanager
async def running_indexer(indexer: Indexer) -> AsyncIterator[Indexer]:
    task = asyncio.create_task(indexer.run())
    try:
        yield indexer
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
