"""Documents of one org: the documents, their versions and their audit trail (the blob bytes are in blobstore)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server import jsonvalue
from server.errors import NotFound
from server.ids import new_document_id, new_id
from server.store import pagination
from server.store.repository import TenantRepository
from server.store.tables import document_audit, document_versions, documents


def _not_found(document_id: str) -> NotFound:
    return NotFound(f"document {document_id!r} not found")


async def lock_blob(repo: TenantRepository, checksum: str) -> None:
    """Serialise everything that creates or removes a reference to one blob of the org, until the transaction
    ends: dedup sees a concurrent upload of the same bytes, and a blob is never removed while one is added."""
    key = f"{repo.org_id}:{checksum}"
    await repo.connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(key, 0))))


async def find_by_checksum(repo: TenantRepository, checksum: str) -> sa.Row[Any] | None:
    query = repo.select(documents, documents.c.checksum_sha256 == checksum).order_by(documents.c.id).limit(1)
    row: sa.Row[Any] | None = (await repo.connection.execute(query)).first()
    return row


async def create(
    repo: TenantRepository,
    *,
    name: str,
    filename: str,
    content_type: str,
    size_bytes: int,
    checksum: str,
    tags: list[str],
    metadata: str,
    expires_at: datetime | None,
    actor: str,
) -> sa.Row[Any]:
    document_id = new_document_id()
    row = await repo.insert(
        documents,
        {
            "id": document_id,
            "name": name,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size_bytes,
            "checksum_sha256": checksum,
            "current_version": 1,
            "status": "ready",
            "tags": tags,
            "metadata": metadata,
            "expires_at": expires_at,
        },
    )
    await _add_version(repo, document_id, 1, filename, content_type, size_bytes, checksum, actor)
    return row


async def _add_version(
    repo: TenantRepository,
    document_id: str,
    version: int,
    filename: str,
    content_type: str,
    size_bytes: int,
    checksum: str,
    actor: str,
) -> None:
    await repo.insert(
        document_versions,
        {
            "document_id": document_id,
            "version": version,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size_bytes,
            "checksum_sha256": checksum,
            "created_by": actor,
        },
    )


async def get(repo: TenantRepository, document_id: str, *, for_update: bool = False) -> sa.Row[Any]:
    query = repo.select(documents, documents.c.id == document_id)
    if for_update:
        query = query.with_for_update()
    row: sa.Row[Any] | None = (await repo.connection.execute(query)).first()
    if row is None:
        raise _not_found(document_id)
    return row


async def get_version(repo: TenantRepository, document_id: str, version: int) -> sa.Row[Any]:
    row = await repo.get(document_versions, document_id=document_id, version=version)
    if row is None:
        raise NotFound(f"document {document_id!r} has no version {version}")
    return row


async def add_version(
    repo: TenantRepository,
    document: sa.Row[Any],
    *,
    filename: str,
    content_type: str,
    size_bytes: int,
    checksum: str,
    actor: str,
) -> sa.Row[Any]:
    """The next version of a document (its row locked by the caller) becomes the current one."""
    version = int(document.current_version) + 1
    await _add_version(repo, document.id, version, filename, content_type, size_bytes, checksum, actor)
    row = await repo.update(
        documents,
        {"id": document.id},
        {
            "current_version": version,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size_bytes,
            "checksum_sha256": checksum,
            "updated_at": sa.func.now(),
            # the new version joins the indexers' queue (server/runtime/indexer.py)
            "index_status": "pending",
            "index_chunks": 0,
            "index_error": "",
        },
    )
    assert row is not None, "the caller holds the row lock"
    return row


async def claim_unindexed(
    connection: AsyncConnection, *, document: tuple[str, str] | None = None, stale_seconds: float = 0.0
) -> sa.Row[Any] | None:
    """A document whose current version waits for indexing, locked until the caller's transaction ends (rows
    another indexer holds are skipped; a crash before commit leaves it pending): the given (org, id), or the
    oldest of any org that has waited at least `stale_seconds`."""
    # not tenant-scoped: the indexers' queue spans every org (the claimed row names its org)
    query = sa.select(documents).where(documents.c.index_status == "pending")
    if document is not None:
        query = query.where(documents.c.org_id == document[0], documents.c.id == document[1])
    else:
        cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, stale_seconds)
        query = query.where(documents.c.updated_at <= cutoff).order_by(documents.c.updated_at)
    row: sa.Row[Any] | None = (await connection.execute(query.limit(1).with_for_update(skip_locked=True))).first()
    return row


async def set_index_state(repo: TenantRepository, document_id: str, status: str, chunks: int, error: str) -> None:
    """Record the indexing outcome of the current version (not `updated_at`: the document did not change)."""
    await repo.update(
        documents, {"id": document_id}, {"index_status": status, "index_chunks": chunks, "index_error": error}
    )


async def update(repo: TenantRepository, document_id: str, values: dict[str, Any]) -> sa.Row[Any]:
    row = await repo.update(documents, {"id": document_id}, {**values, "updated_at": sa.func.now()})
    if row is None:
        raise _not_found(document_id)
    return row


async def delete(repo: TenantRepository, document_id: str) -> list[str]:
    """Delete a document and its versions; returns the checksums its versions used."""
    checksums = [
        str(value)
        for value in (
            await repo.connection.execute(
                repo.select(document_versions, document_versions.c.document_id == document_id)
                .with_only_columns(document_versions.c.checksum_sha256)
                .distinct()
            )
        ).scalars()
    ]
    if not await repo.delete(documents, id=document_id):
        raise _not_found(document_id)
    return checksums


async def blob_in_use(repo: TenantRepository, checksum: str) -> bool:
    query = repo.select(document_versions, document_versions.c.checksum_sha256 == checksum).with_only_columns(
        sa.literal(1)
    )
    return (await repo.connection.execute(query.limit(1))).first() is not None


async def page(
    repo: TenantRepository, request: pagination.PageRequest, *, tag: str, content_type: str, name: str
) -> tuple[list[sa.Row[Any]], str]:
    where: list[sa.ColumnElement[bool]] = []
    if tag:
        where.append(documents.c.tags.contains([tag]))
    if content_type:
        where.append(documents.c.content_type == content_type)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append(documents.c.name.ilike(f"%{escaped}%", escape="\\"))
    return await repo.page(documents, request, sort="id", descending=True, where=where)


async def usage(repo: TenantRepository) -> dict[str, int]:
    versions = repo.select(document_versions).with_only_columns(
        sa.func.count(), sa.func.coalesce(sa.func.sum(document_versions.c.size_bytes), 0)
    )
    version_count, total_bytes = (await repo.connection.execute(versions)).one()
    blobs = (
        repo.select(document_versions)
        .with_only_columns(
            document_versions.c.checksum_sha256, sa.func.max(document_versions.c.size_bytes).label("size")
        )
        .group_by(document_versions.c.checksum_sha256)
        .subquery()
    )
    stored = (await repo.connection.execute(sa.select(sa.func.coalesce(sa.func.sum(blobs.c.size), 0)))).scalar_one()
    count = (await repo.connection.execute(repo.select(documents).with_only_columns(sa.func.count()))).scalar_one()
    return {
        "total_bytes": int(total_bytes),
        "document_count": int(count),
        "version_count": int(version_count),
        "stored_bytes": int(stored),
    }


async def audit(
    repo: TenantRepository, document_id: str, action: str, actor: str, *, version: int = 0, details: Any = None
) -> None:
    await repo.insert(
        document_audit,
        {
            "id": new_id("document_audit"),
            "document_id": document_id,
            "action": action,
            "actor": actor,
            "version": version,
            "details": jsonvalue.dumps(details or {}),
        },
    )


async def audit_page(
    repo: TenantRepository, document_id: str, request: pagination.PageRequest
) -> tuple[list[sa.Row[Any]], str]:
    return await repo.page(
        document_audit, request, sort="id", descending=False, where=[document_audit.c.document_id == document_id]
    )


async def expired(connection: AsyncConnection, limit: int = 100) -> list[tuple[str, str]]:
    """(org_id, id) of documents past their expiry, across orgs (the expiry timer then works per org)."""
    # not tenant-scoped: the ttl sweep runs for every org
    query = (
        sa.select(documents.c.org_id, documents.c.id)
        .where(documents.c.expires_at.is_not(None), documents.c.expires_at <= sa.func.now())
        .order_by(documents.c.expires_at)
        .limit(limit)
    )
    return [(str(org), str(doc)) for org, doc in (await connection.execute(query)).all()]
