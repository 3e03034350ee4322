"""DocumentService: uploads (client streams), downloads (server streams), versions, audit, dedup, expiry.

Bytes go to the blob store while they arrive (hashed and counted there, refused past the size limit); the rows are
written afterwards, in one transaction per document that holds the blob's advisory lock, so dedup and blob removal
never race. `on_version_stored` is the one place a stored version is announced: the knowledge indexer
(server/runtime/indexer.py) is woken there; the version itself was queued for indexing (`index_status` pending)
in the transaction that stored it.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from hyphae.api.v1 import json_pb2
from hyphae.documents.v1 import document_pb2, document_service_pb2_grpc
from hyphae.documents.v1 import document_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.blobstore import CHUNK_BYTES, BlobStore, BlobWriter
from server.domain.knowledge import Embedder
from server.errors import InvalidArgument, PayloadTooLarge, UnsupportedMediaType
from server.runtime import knowledge_tool, outbound
from server.services import Context, timestamp
from server.store import documents as store
from server.store import knowledge, pagination, tenant
from server.store.db import connect

log = logging.getLogger("hyphae.documents")

# Hyphen's supported types ("CSV, JSON, plain text, PDF, Excel, images"), decided by the file extension; markdown
# and HTML are our addition (text the knowledge index reads).
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".json": "application/json",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".html": "text/html",
    ".pdf": "application/pdf",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".xls": "application/vnd.ms-excel",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
SUPPORTED = ", ".join(CONTENT_TYPES)
MAX_TAGS = 100
MAX_BULK_FILES = 50
MAX_TTL_DAYS = 36_500

# Called after a version's bytes are stored and committed: (org_id, document_id). The knowledge indexer plugs in
# here; it reads the current version (its row, then the bytes) in its own claiming transaction.
VersionHook = Callable[[str, str], Awaitable[None]]


def content_type_of(filename: str) -> str:
    """The stored media type of a file name, or UnsupportedMediaType (415) naming the supported extensions."""
    extension = posixpath.splitext(filename.lower())[1]
    if extension not in CONTENT_TYPES:
        shown = repr(extension) if extension else "no extension"
        raise UnsupportedMediaType(f"file: {filename!r} has {shown}; supported file types are {SUPPORTED}")
    return CONTENT_TYPES[extension]


def actor() -> str:
    principal = auth.principal()
    if principal.key_id:
        return f"key:{principal.key_id}"
    if principal.account_id:
        return f"account:{principal.account_id}"
    return f"org:{principal.org_id}"


def to_proto(row: Any) -> document_pb2.Document:
    document = document_pb2.Document(
        id=row.id,
        name=row.name,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        checksum_sha256=row.checksum_sha256,
        current_version=row.current_version,
        status=row.status,
        tags=list(row.tags),
        filename=row.filename,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        index_status=row.index_status,
        chunk_count=row.index_chunks,
        index_error=row.index_error,
    )
    document.metadata.raw = row.metadata
    if row.expires_at is not None:
        document.expires_at.CopyFrom(timestamp(row.expires_at))
    return document


@dataclass
class Fields:
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    metadata: str = "{}"
    expires_at: datetime | None = None


def _tags(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(tag, str) and tag for tag in value):
        raise InvalidArgument('must be a JSON array of non-empty strings, e.g. ["finance"]', field=name)
    if len(value) > MAX_TAGS:
        raise InvalidArgument(f"at most {MAX_TAGS} tags", field=name)
    return list(dict.fromkeys(value))


def _metadata(raw: str, name: str) -> str:
    if not isinstance(jsonvalue.parse(json_pb2.Json(raw=raw), name), dict):
        raise InvalidArgument('must be a JSON object, e.g. {"department": "accounting"}', field=name)
    return raw


def _expiry(ttl_days: int) -> datetime:
    if not 1 <= ttl_days <= MAX_TTL_DAYS:
        raise InvalidArgument(f"must be between 1 and {MAX_TTL_DAYS}", field="ttl_days")
    return datetime.now(UTC) + timedelta(days=ttl_days)


def _fields(message: document_pb2.UploadFields) -> Fields:
    fields = Fields()
    if message.HasField("name"):
        if not message.name.strip():
            raise InvalidArgument("must not be blank", field="name")
        fields.name = message.name
    if message.HasField("tags"):
        fields.tags = _tags(jsonvalue.parse(message.tags, "tags"), "tags")
    if message.HasField("metadata"):
        fields.metadata = _metadata(message.metadata.raw, "metadata")
    if message.HasField("ttl_days"):
        fields.expires_at = _expiry(message.ttl_days)
    return fields


@dataclass
class Received:
    filename: str
    content_type: str
    writer: BlobWriter


class Upload:
    """The files of one upload stream, each spooled to the blob store's temporary area as it arrives."""

    def __init__(self, blobs: BlobStore, limit: int) -> None:
        self.blobs = blobs
        self.limit = limit
        self.files: list[Received] = []
        self.fields = document_pb2.UploadFields()

    async def open(self, file: document_pb2.UploadFile, *, many: bool) -> None:
        if self.files and not many:
            raise InvalidArgument("only one file per upload; use POST /documents/bulk-upload", field="file")
        if len(self.files) >= MAX_BULK_FILES:
            raise InvalidArgument(f"at most {MAX_BULK_FILES} files per bulk upload", field="file")
        filename = posixpath.basename(file.filename.replace("\\", "/")).strip()
        if not filename:
            raise InvalidArgument("needs a file name (its extension decides the type)", field="file")
        content_type = content_type_of(filename)
        await self._finish_last()
        self.files.append(Received(filename, content_type, self.blobs.writer(self.limit)))

    async def chunk(self, data: bytes) -> None:
        if not self.files:
            raise InvalidArgument("bytes arrived before any file was opened", field="file")
        await self.files[-1].writer.write(data)

    async def _finish_last(self) -> None:
        if self.files and not self.files[-1].writer.closed:
            await self.files[-1].writer.finish()

    async def finish(self) -> None:
        if not self.files:
            raise InvalidArgument("is required: send the file as a multipart part named 'file'", field="file")
        await self._finish_last()

    async def discard(self) -> None:
        for received in self.files:
            await received.writer.abort()


class DocumentService(document_service_pb2_grpc.DocumentServiceServicer):
    def __init__(
        self,
        engine: AsyncEngine,
        blobs: BlobStore,
        *,
        max_bytes: int,
        policy: outbound.OutboundPolicy,
        on_version_stored: VersionHook | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.engine = engine
        self.blobs = blobs
        self.max_bytes = max_bytes
        # from-url: the server's allow-list, and a body cap of one byte more than a document may have
        self.policy = outbound.OutboundPolicy(
            allow=policy.allow, timeout_seconds=policy.timeout_seconds, max_response_bytes=max_bytes
        )
        self.on_version_stored = on_version_stored
        self.embedder = embedder  # for SearchDocuments; None = full text + trigrams
        self._client: httpx.AsyncClient | None = None

    async def _stored(self, org_id: str, row: Any) -> None:
        """A new version's bytes are stored and committed: hand them on (indexing) — failures only logged."""
        if self.on_version_stored is None:
            return
        try:
            await self.on_version_stored(org_id, row.id)
        except Exception:
            log.exception("indexing hook failed for %s version %s", row.id, row.current_version)

    # uploads

    async def _receive(self, requests: AsyncIterator[Any], upload: Upload, *, many: bool) -> None:
        async for message in requests:
            part = message.WhichOneof("part")
            if part == "file":
                await upload.open(message.file, many=many)
            elif part == "chunk":
                await upload.chunk(message.chunk)
            elif part == "fields":
                upload.fields.MergeFrom(message.fields)
        await upload.finish()

    async def _create(self, org_id: str, received: Received, fields: Fields) -> tuple[Any, bool]:
        """One document from a finished file, or the org's existing document with the same bytes."""
        checksum = received.writer.sha256
        who = actor()
        async with tenant(self.engine, org_id) as repo:
            await store.lock_blob(repo, checksum)
            existing = await store.find_by_checksum(repo, checksum)
            if existing is not None:
                await received.writer.abort()
                return existing, True
            await self.blobs.commit(received.writer, org_id)
            row = await store.create(
                repo,
                name=fields.name or received.filename,
                filename=received.filename,
                content_type=received.content_type,
                size_bytes=received.writer.size,
                checksum=checksum,
                tags=fields.tags,
                metadata=fields.metadata,
                expires_at=fields.expires_at,
                actor=who,
            )
            await store.audit(
                repo,
                row.id,
                "upload",
                who,
                version=1,
                details={"filename": received.filename, "size_bytes": row.size_bytes},
            )
        await self._stored(org_id, row)
        return row, False

    async def UploadDocument(
        self, request_iterator: AsyncIterator[pb.UploadDocumentRequest], context: Context
    ) -> pb.UploadDocumentResponse:
        org_id = auth.org_id()
        upload = Upload(self.blobs, self.max_bytes)
        try:
            await self._receive(request_iterator, upload, many=False)
            row, deduplicated = await self._create(org_id, upload.files[0], _fields(upload.fields))
        finally:
            await upload.discard()
        return pb.UploadDocumentResponse(document=to_proto(row), deduplicated=deduplicated)

    async def BulkUploadDocuments(
        self, request_iterator: AsyncIterator[pb.BulkUploadDocumentsRequest], context: Context
    ) -> pb.BulkUploadDocumentsResponse:
        org_id = auth.org_id()
        upload = Upload(self.blobs, self.max_bytes)
        response = pb.BulkUploadDocumentsResponse()
        try:
            await self._receive(request_iterator, upload, many=True)
            fields = _fields(upload.fields)
            fields.name = None  # each document is named after its file
            for received in upload.files:
                row, deduplicated = await self._create(org_id, received, fields)
                response.documents.append(to_proto(row))
                if deduplicated:
                    response.deduplicated_ids.append(row.id)
        finally:
            await upload.discard()
        return response

    async def CreateDocumentVersion(
        self, request_iterator: AsyncIterator[pb.CreateDocumentVersionRequest], context: Context
    ) -> pb.CreateDocumentVersionResponse:
        org_id = auth.org_id()
        upload = Upload(self.blobs, self.max_bytes)
        document_id = ""
        try:
            async for message in request_iterator:
                if not document_id:
                    document_id = message.id
                    if not document_id:
                        raise InvalidArgument("is required in the first message", field="id")
                    async with tenant(self.engine, org_id) as repo:
                        await store.get(repo, document_id)  # 404 before spooling 50 MiB
                part = message.WhichOneof("part")
                if part == "file":
                    await upload.open(message.file, many=False)
                elif part == "chunk":
                    await upload.chunk(message.chunk)
            if not document_id:
                raise InvalidArgument("is required in the first message", field="id")
            await upload.finish()
            received = upload.files[0]
            checksum, who = received.writer.sha256, actor()
            async with tenant(self.engine, org_id) as repo:
                await store.lock_blob(repo, checksum)
                document = await store.get(repo, document_id, for_update=True)
                if document.checksum_sha256 == checksum:  # same bytes as now: no new version (a retry is harmless)
                    return pb.CreateDocumentVersionResponse(document=to_proto(document), deduplicated=True)
                await self.blobs.commit(received.writer, org_id)
                row = await store.add_version(
                    repo,
                    document,
                    filename=received.filename,
                    content_type=received.content_type,
                    size_bytes=received.writer.size,
                    checksum=checksum,
                    actor=who,
                )
                await store.audit(
                    repo,
                    document_id,
                    "version",
                    who,
                    version=row.current_version,
                    details={"filename": received.filename, "size_bytes": row.size_bytes},
                )
        finally:
            await upload.discard()
        await self._stored(org_id, row)
        return pb.CreateDocumentVersionResponse(document=to_proto(row))

    async def CreateDocumentFromUrl(
        self, request: pb.CreateDocumentFromUrlRequest, context: Context
    ) -> pb.CreateDocumentFromUrlResponse:
        org_id = auth.org_id()
        upload_fields = document_pb2.UploadFields(tags=jsonvalue.of(list(request.tags)))
        if request.HasField("name"):
            upload_fields.name = request.name
        if request.HasField("metadata"):
            upload_fields.metadata.CopyFrom(request.metadata)
        if request.HasField("ttl_days"):
            upload_fields.ttl_days = request.ttl_days
        fields = _fields(upload_fields)
        if self._client is None:
            self._client = outbound.new_client()
        try:
            response = await outbound.send(self._client, "GET", request.url, policy=self.policy, max_retries=1)
        except outbound.OutboundError as exc:
            if exc.rule == "too_large":
                raise PayloadTooLarge(f"url: the file is larger than {self.max_bytes} bytes") from None
            raise InvalidArgument(f"{exc.message} (rule: {exc.rule})", field="url", reason=exc.rule.upper()) from None
        if not 200 <= response.status < 300:
            raise InvalidArgument(f"{response.url} answered HTTP {response.status}", field="url", reason="FETCH_FAILED")
        filename = _url_filename(response.url, response.headers.get("content-type", ""))
        writer = self.blobs.writer(self.max_bytes)
        try:
            for start in range(0, len(response.body), CHUNK_BYTES):
                await writer.write(response.body[start : start + CHUNK_BYTES])
            await writer.finish()
            received = Received(filename, content_type_of(filename), writer)
            row, deduplicated = await self._create(org_id, received, fields)
        finally:
            await writer.abort()
        return pb.CreateDocumentFromUrlResponse(document=to_proto(row), deduplicated=deduplicated)

    # reads

    async def ListDocuments(self, request: pb.ListDocumentsRequest, context: Context) -> pb.ListDocumentsResponse:
        filters = {"tag": request.tag, "content_type": request.content_type, "name": request.name}
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters=filters,
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, **filters)
        return pb.ListDocumentsResponse(documents=[to_proto(row) for row in rows], next_page_token=token)

    async def GetStorageUsage(self, request: pb.GetStorageUsageRequest, context: Context) -> pb.GetStorageUsageResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            usage = await store.usage(repo)
        return pb.GetStorageUsageResponse(**usage)

    async def SearchDocuments(self, request: pb.SearchDocumentsRequest, context: Context) -> pb.SearchDocumentsResponse:
        limit = request.limit or knowledge_tool.DEFAULT_LIMIT
        if not 1 <= limit <= knowledge_tool.MAX_LIMIT:
            raise InvalidArgument(f"must be between 1 and {knowledge_tool.MAX_LIMIT}", field="limit")
        if len(request.document_ids) > knowledge_tool.MAX_DOCUMENT_IDS:
            raise InvalidArgument(f"at most {knowledge_tool.MAX_DOCUMENT_IDS} ids", field="document_ids")
        ids = list(request.document_ids) or None
        hits = await knowledge_tool.search(self.engine, auth.org_id(), request.q, limit, ids, self.embedder)
        return pb.SearchDocumentsResponse(hits=[document_pb2.KnowledgeHit(**hit) for hit in hits])

    async def GetDocument(self, request: pb.GetDocumentRequest, context: Context) -> pb.GetDocumentResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.id)
        return pb.GetDocumentResponse(document=to_proto(row))

    async def DownloadDocument(
        self, request: pb.DownloadDocumentRequest, context: Context
    ) -> AsyncIterator[pb.DownloadDocumentResponse]:
        org_id = auth.org_id()
        if request.version < 0:
            raise InvalidArgument("must not be negative", field="version")
        async with tenant(self.engine, org_id) as repo:
            document = await store.get(repo, request.id)
            version = await store.get_version(repo, request.id, request.version or int(document.current_version))
            await store.audit(repo, request.id, "download", actor(), version=version.version)
        yield pb.DownloadDocumentResponse(
            info=pb.DownloadInfo(
                content_type=version.content_type,
                filename=version.filename,
                size_bytes=version.size_bytes,
                checksum_sha256=version.checksum_sha256,
                version=version.version,
            )
        )
        async for chunk in self.blobs.read(org_id, version.checksum_sha256):
            yield pb.DownloadDocumentResponse(chunk=chunk)

    async def ListDocumentAudit(
        self, request: pb.ListDocumentAuditRequest, context: Context
    ) -> pb.ListDocumentAuditResponse:
        page = pagination.page_request(page_size=request.page_size, page_token=request.page_token)
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.audit_page(repo, request.id, page)
            if not rows and not request.page_token:
                await store.get(repo, request.id)  # no trail and no document: 404
        entries = []
        for row in rows:
            entry = document_pb2.DocumentAuditEntry(
                id=row.id,
                document_id=row.document_id,
                action=row.action,
                actor=row.actor,
                version=row.version,
                created_at=timestamp(row.created_at),
            )
            entry.details.raw = row.details
            entries.append(entry)
        return pb.ListDocumentAuditResponse(entries=entries, next_page_token=token)

    # changes

    async def UpdateDocument(self, request: pb.UpdateDocumentRequest, context: Context) -> pb.UpdateDocumentResponse:
        values: dict[str, Any] = {}
        if request.HasField("name"):
            if not request.name.strip():
                raise InvalidArgument("must not be blank", field="name")
            values["name"] = request.name
        if request.HasField("tags"):
            values["tags"] = _tags(jsonvalue.parse(request.tags, "tags"), "tags")
        if request.HasField("metadata"):
            values["metadata"] = _metadata(request.metadata.raw, "metadata")
        if request.HasField("ttl_days"):
            values["expires_at"] = None if request.ttl_days == 0 else _expiry(request.ttl_days)
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.get(repo, request.id)
            row = await store.update(repo, request.id, values) if values else await store.get(repo, request.id)
            if "name" in values:  # searches by the new name find it (the title weighs above the body)
                await knowledge.retitle_source(repo.connection, repo.org_id, request.id, request.name)
            await store.audit(repo, request.id, "patch", actor(), details={"fields": sorted(values)})
        return pb.UpdateDocumentResponse(document=to_proto(row))

    async def DeleteDocument(self, request: pb.DeleteDocumentRequest, context: Context) -> pb.DeleteDocumentResponse:
        await remove(self.engine, self.blobs, auth.org_id(), request.id, actor(), "delete")
        return pb.DeleteDocumentResponse(id=request.id, deleted=True)


def _url_filename(url: str, content_type: str) -> str:
    """A file name with a supported extension: the URL path's, else one from the answer's Content-Type."""
    name = posixpath.basename(unquote(urlsplit(url).path)) or "download"
    if posixpath.splitext(name.lower())[1] in CONTENT_TYPES:
        return name
    media = content_type.split(";", 1)[0].strip().lower()
    for extension, known in CONTENT_TYPES.items():
        if known == media:
            return f"{name}{extension}"
    raise UnsupportedMediaType(
        f"url: neither the file name {name!r} nor the Content-Type {media or 'none'!r} is a supported type "
        f"({SUPPORTED})"
    )


async def remove(engine: AsyncEngine, blobs: BlobStore, org_id: str, document_id: str, who: str, action: str) -> None:
    """Delete a document (and, once no version of the org uses them any more, its blobs)."""
    async with tenant(engine, org_id) as repo:
        checksums = await store.delete(repo, document_id)
        await knowledge.delete_source(repo.connection, org_id, document_id)  # its passages go with it
        await store.audit(repo, document_id, action, who)
    for checksum in checksums:
        async with tenant(engine, org_id) as repo:
            await store.lock_blob(repo, checksum)  # an upload of the same bytes waits, then writes the blob again
            if not await store.blob_in_use(repo, checksum):
                await blobs.delete(org_id, checksum)


async def expire_due(engine: AsyncEngine, blobs: BlobStore) -> int:
    """Delete the documents whose ttl_days ran out; returns how many."""
    async with connect(engine) as connection:
        due = await store.expired(connection)
    removed = 0
    for org_id, document_id in due:
        try:
            await remove(engine, blobs, org_id, document_id, "system", "expire")
            removed += 1
        except Exception:  # another process expired it first (404), or a blob error: logged, retried next round
            log.debug("could not expire %s/%s", org_id, document_id, exc_info=True)
    return removed
