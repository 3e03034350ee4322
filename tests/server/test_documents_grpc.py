"""Documents over gRPC: uploads are client streams of chunks, downloads server streams (no 50 MiB message)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import grpc
from hyphae.documents.v1 import document_pb2, document_service_pb2_grpc
from hyphae.documents.v1 import document_service_pb2 as pb

from tests.conftest import ServerInfo

CHUNK = 1024 * 1024


def _messages(content: bytes, filename: str) -> Iterator[pb.UploadDocumentRequest]:
    yield pb.UploadDocumentRequest(fields=document_pb2.UploadFields(name="From gRPC", ttl_days=5))
    yield pb.UploadDocumentRequest(file=document_pb2.UploadFile(filename=filename))
    for start in range(0, len(content), CHUNK):
        yield pb.UploadDocumentRequest(chunk=content[start : start + CHUNK])


def test_upload_and_download_stream_in_chunks(server: ServerInfo, org: str) -> None:
    content = os.urandom(5 * CHUNK + 3)
    metadata = (("x-org-id", org),)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = document_service_pb2_grpc.DocumentServiceStub(channel)
        answer = stub.UploadDocument(_messages(content, "blob.png"), metadata=metadata)
        assert answer.document.name == "From gRPC"
        assert answer.document.checksum_sha256 == hashlib.sha256(content).hexdigest()
        assert answer.document.HasField("expires_at")
        parts = list(stub.DownloadDocument(pb.DownloadDocumentRequest(id=answer.document.id), metadata=metadata))
    assert parts[0].WhichOneof("part") == "info"
    assert parts[0].info.size_bytes == len(content)
    chunks = [part.chunk for part in parts[1:]]
    assert max(len(chunk) for chunk in chunks) <= CHUNK
    assert b"".join(chunks) == content


def test_an_upload_without_credentials_or_messages_is_refused(server: ServerInfo, org: str) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = document_service_pb2_grpc.DocumentServiceStub(channel)
        try:
            stub.UploadDocument(_messages(b"a", "a.txt"))
            raise AssertionError("an anonymous upload was accepted")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        try:
            stub.UploadDocument(iter([]), metadata=(("x-org-id", org),))
            raise AssertionError("an empty upload was accepted")
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
