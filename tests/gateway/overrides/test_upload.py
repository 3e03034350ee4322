"""The upload override encodes `chunk` messages itself (the whole upload path: tests/server/test_documents*)."""

from __future__ import annotations

import os

from hyphae.documents.v1 import document_service_pb2 as pb

from gateway.overrides.upload import CHUNK_BYTES, _Form


def test_file_bytes_become_chunk_messages_of_at_most_the_contract_size_with_the_same_bytes() -> None:
    form = _Form(pb.UploadDocumentRequest, accepts_fields=True, many=False)
    form._part = "file"
    first = os.urandom(2 * CHUNK_BYTES + 10)
    form.on_part_data(first, 3, len(first) - 1)  # a piece larger than two chunks, taken from inside a buffer
    form.on_part_data(b"tail", 0, 4)
    form.on_part_end()
    assert all(isinstance(message, bytes) for message in form.out)
    chunks = [pb.UploadDocumentRequest.FromString(message).chunk for message in form.out]  # type: ignore[arg-type]
    assert [len(chunk) for chunk in chunks] == [CHUNK_BYTES, CHUNK_BYTES, 6 + 4]
    assert b"".join(chunks) == first[3:-1] + b"tail"


def test_a_file_without_bytes_sends_no_chunk_message() -> None:
    form = _Form(pb.BulkUploadDocumentsRequest, accepts_fields=True, many=True)
    form._part = "file"
    form.on_part_end()
    assert form.out == []
