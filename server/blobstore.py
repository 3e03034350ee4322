"""Where document bytes live: content-addressed blobs, one namespace per org (so dedup never crosses orgs).

`LocalBlobStore` (the default) keeps them under `<data dir>/blobs/<org>/<sha[:2]>/<sha>`. A blob is written to a
temporary file while it is hashed and counted (an upload is refused as soon as it passes the limit, so at most
limit + one chunk is ever written), fsync'ed, and only then renamed into place — a crash leaves a stray temporary
file, never a truncated blob under a real checksum. Readers stream the file in chunks. A writer hashes each 1 MiB
buffer in its hashing thread and writes it in its disk thread while the next ones are received (hashlib and file
writes release the GIL, and a write into new blocks costs several times the hash); one thread each, so the order
holds, and at most IN_FLIGHT buffers queued, so memory stays flat and a slow write does not stall the receiver.

`S3BlobStore` (HYPHAE_BLOB_URL=s3://bucket/prefix) spools the same way to a local temporary file, then uploads it
with boto3 (in a thread); credentials, region and endpoint come from boto3's standard configuration (AWS_*).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from server.errors import PayloadTooLarge

CHUNK_BYTES = 1024 * 1024  # read size of downloads, and how much a writer buffers before a disk write
IN_FLIGHT = 4  # buffers a writer has handed to its threads and not seen done


class BlobWriter:
    """A blob being received: bytes go to a temporary file while SHA-256 and size are computed."""

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=".part")
        self.path = Path(name)
        self._file = os.fdopen(handle, "wb")
        self._hash = hashlib.sha256()
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="blob-hash")
        self._disk = ThreadPoolExecutor(1, thread_name_prefix="blob-write")
        self._in_flight: collections.deque[asyncio.Future[Any]] = collections.deque()  # oldest first
        self.limit = limit
        self.size = 0
        self.sha256 = ""
        self.closed = False

    async def write(self, data: bytes) -> None:
        """Append bytes; raises PayloadTooLarge (and discards the file) once the total passes the limit."""
        self.size += len(data)
        if self.size > self.limit:
            await self.abort()
            raise PayloadTooLarge(
                f"file: larger than the {self.limit} bytes ({self.limit / 1024 / 1024:g} MiB) a document may have"
            )
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered >= CHUNK_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        """Hand the buffer to the threads (once fewer than IN_FLIGHT are queued); returns without waiting for it."""
        data = b"".join(self._buffer)
        self._buffer, self._buffered = [], 0
        if not data:
            return
        await self._written(keep=IN_FLIGHT - 1)
        loop = asyncio.get_running_loop()
        hashed = loop.run_in_executor(self._hashing, self._hash.update, data)
        self._in_flight.append(asyncio.gather(hashed, loop.run_in_executor(self._disk, self._file.write, data)))

    async def _written(self, keep: int = 0) -> None:
        """Wait until at most `keep` buffers are queued (an error, e.g. a full disk, is raised here)."""
        while len(self._in_flight) > keep:
            await self._in_flight[0]  # kept while awaited: a cancelled or failed wait leaves it for `abort`
            self._in_flight.popleft()

    def _stop_threads(self) -> None:
        self._hashing.shutdown(wait=False)
        self._disk.shutdown(wait=False)

    async def finish(self) -> str:
        """Flush and fsync; returns the hex SHA-256."""
        await self._flush()
        await self._written()
        self._stop_threads()
        await asyncio.to_thread(self._close_synced)
        self.sha256 = self._hash.hexdigest()
        return self.sha256

    def _close_synced(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.closed = True

    async def abort(self) -> None:
        """Discard the temporary file (idempotent)."""
        self._buffer = []
        if self._in_flight:  # the threads must be done with the file before it is closed
            in_flight, self._in_flight = list(self._in_flight), collections.deque()
            await asyncio.wait(in_flight)
            for done in in_flight:
                if not done.cancelled():
                    done.exception()  # retrieved: the upload is discarded either way
        self._stop_threads()
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)


class BlobStore(Protocol):
    def writer(self, limit: int) -> BlobWriter:
        """A temporary writer; `commit` moves it into place."""
        ...

    async def commit(self, writer: BlobWriter, org_id: str) -> None:
        """Store the finished writer's bytes as the org's blob `writer.sha256` (same bytes: a no-op)."""
        ...

    def read(self, org_id: str, sha256: str) -> AsyncIterator[bytes]:
        """The blob's bytes in chunks."""
        ...

    async def delete(self, org_id: str, sha256: str) -> None:
        """Remove the blob (missing: nothing to do)."""
        ...


def _org_dir(org_id: str) -> str:
    return quote(org_id, safe="-_.") or "_"


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path(self, org_id: str, sha256: str) -> Path:
        return self.root / _org_dir(org_id) / sha256[:2] / sha256

    def writer(self, limit: int) -> BlobWriter:
        return BlobWriter(self.tmp, limit)

    async def commit(self, writer: BlobWriter, org_id: str) -> None:
        await asyncio.to_thread(self._commit, writer, self.path(org_id, writer.sha256))

    @staticmethod
    def _commit(writer: BlobWriter, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(writer.path, target)  # atomic; same bytes already there: replaced by identical bytes
        directory = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    async def read(self, org_id: str, sha256: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self.path(org_id, sha256), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            handle.close()

    async def delete(self, org_id: str, sha256: str) -> None:
        await asyncio.to_thread(self.path(org_id, sha256).unlink, True)


class S3BlobStore:
    """Blobs as objects `<prefix>/<org>/<sha>` in an S3-compatible bucket, through boto3 in threads."""

    def __init__(self, bucket: str, prefix: str, spool: Path) -> None:
        try:
            import boto3  # only needed when S3 is configured: the `s3` extra
        except ImportError:
            raise ValueError("HYPHAE_BLOB_URL=s3://... needs boto3: install hyphae[s3]") from None

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.tmp = spool
        self.client: Any = boto3.client("s3")

    def key(self, org_id: str, sha256: str) -> str:
        return "/".join(part for part in (self.prefix, _org_dir(org_id), sha256) if part)

    def writer(self, limit: int) -> BlobWriter:
        return BlobWriter(self.tmp, limit)

    async def commit(self, writer: BlobWriter, org_id: str) -> None:
        try:
            await asyncio.to_thread(
                self.client.upload_file, str(writer.path), self.bucket, self.key(org_id, writer.sha256)
            )
        finally:
            await writer.abort()

    async def read(self, org_id: str, sha256: str) -> AsyncIterator[bytes]:
        answer = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=self.key(org_id, sha256))
        body = answer["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def delete(self, org_id: str, sha256: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self.key(org_id, sha256))


def from_settings(blob_url: str, data_dir: Path) -> BlobStore:
    """HYPHAE_BLOB_URL: "" (local disk under the data dir), a file:// path, or s3://bucket/prefix."""
    if not blob_url:
        return LocalBlobStore(data_dir / "blobs")
    parts = urlsplit(blob_url)
    if parts.scheme == "file":
        return LocalBlobStore(Path(parts.path))
    if parts.scheme == "s3" and parts.netloc:
        return S3BlobStore(parts.netloc, parts.path, data_dir / "blobs" / "tmp")
    raise ValueError(f"HYPHAE_BLOB_URL: {blob_url!r} is neither file:///path nor s3://bucket/prefix")
