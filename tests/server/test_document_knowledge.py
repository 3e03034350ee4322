"""Documents feed knowledge: every stored upload or version is indexed in the background (index_status on the
document), delete and ttl expiry remove it, and `GET /documents/search` answers cited passages of the caller's org
only."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import sqlalchemy as sa

from server.domain import knowledge
from server.runtime.indexer import MAX_INDEX_BYTES, Indexer
from server.services.documents import expire_due
from server.store.db import create_engine
from server.store.tables import documents, knowledge_chunks
from tests.conftest import ServerInfo, local_blobs
from tests.server.domain.test_knowledge import tiny_pdf
from tests.server.test_documents import upload

REFUNDS = b"""# Returns and refunds

## Damaged goods

Customers may return damaged goods within 45 days of delivery for a full refund to the original payment method.

## Gift cards

Gift cards are not refundable.
"""
SHIPPING = b"Shipping\n\nParcels leave our warehouse in Rotterdam within two business days. Tracking links are emailed."


def indexed(api: httpx.Client, document_id: str, until: tuple[str, ...] = ("indexed", "skipped", "failed")) -> Any:
    """The document once its indexing finished (the upload answers before it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        document = api.get(f"/documents/{document_id}").json()["document"]
        if document["index_status"] in until:
            return document
        time.sleep(0.05)
    raise AssertionError(f"document {document_id} was not indexed: {document}")


def search(api: httpx.Client, q: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/documents/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


def test_an_uploaded_document_is_indexed_and_found_with_its_citation(api: httpx.Client) -> None:
    stored = upload(api, REFUNDS, "refund-policy.md").json()["document"]
    assert stored["index_status"] in ("pending", "indexed")
    other = upload(api, SHIPPING, "shipping.txt").json()["document"]
    refunds = indexed(api, stored["id"])
    assert (refunds["index_status"], refunds["index_error"]) == ("indexed", "")
    assert refunds["chunk_count"] >= 1
    assert indexed(api, other["id"])["index_status"] == "indexed"

    hits = search(api, "how long can I return damaged goods for a refund?")
    best = hits[0]
    assert best["document_id"] == stored["id"]
    assert best["name"] == "refund-policy.md"
    assert best["version"] == 1
    assert best["heading"] == "Returns and refunds > Damaged goods"
    assert "45 days" in best["text"]
    assert "**" in best["snippet"]
    assert 0 < best["score"] <= 1
    extracted = knowledge.extract(REFUNDS, "text/markdown", "refund-policy.md").text
    assert extracted[best["start_offset"] : best["end_offset"]] == best["text"]  # offsets into the extracted text
    assert next(hit["document_id"] for hit in search(api, "warehouse in Rotterdam")) == other["id"]
    assert search(api, "Rotterdam", document_ids=[stored["id"]]) == []
    assert search(api, "zzzqqq unrelated") == []


def test_a_renamed_document_is_still_indexed_by_its_file_not_its_display_name(api: httpx.Client) -> None:
    # The display name is a title users may set to anything; the format is the stored file's (its content type and
    # file name). Each new version below is indexed after the rename, under the new name.
    report = upload(api, tiny_pdf(["Quarterly revenue grew in Lisbon"]), "report.pdf").json()["document"]
    notes = upload(api, b"Draft notes about the Oslo office.", "notes.txt").json()["document"]
    for document, name in ((report, "Q3 report"), (notes, "Q3 figures.pdf")):
        indexed(api, document["id"])
        renamed = api.patch(f"/documents/{document['id']}", json={"name": name})
        assert renamed.status_code == 200, renamed.text
    versions = (
        (report, tiny_pdf(["Quarterly revenue fell in Porto"]), "report.pdf"),
        (notes, b"Final notes about the Bergen office.", "notes.txt"),  # a .pdf display name: still plain text
    )
    for document, content, filename in versions:
        changed = api.post(f"/documents/{document['id']}/versions", files={"file": (filename, content)})
        assert changed.status_code == 201, changed.text
        state = indexed(api, document["id"])
        assert (state["index_status"], state["index_error"], state["current_version"]) == ("indexed", "", 2), state
    assert [(hit["document_id"], hit["name"]) for hit in search(api, "revenue Porto")][:1] == [
        (report["id"], "Q3 report")
    ]
    assert [(hit["document_id"], hit["name"]) for hit in search(api, "Bergen office")][:1] == [
        (notes["id"], "Q3 figures.pdf")
    ]


def test_a_renamed_document_is_found_by_its_new_name(api: httpx.Client) -> None:
    document = upload(api, SHIPPING, "shipping.txt").json()["document"]
    assert indexed(api, document["id"])["index_status"] == "indexed"
    assert search(api, "Zanzibar logistics") == []
    assert api.patch(f"/documents/{document['id']}", json={"name": "Zanzibar logistics"}).status_code == 200
    hits = search(api, "Zanzibar logistics")  # the title words, which the text itself never mentions
    assert [(hit["document_id"], hit["name"]) for hit in hits][:1] == [(document["id"], "Zanzibar logistics")]
    assert search(api, "Zanzibr")[:1] and search(api, "Zanzibr")[0]["document_id"] == document["id"]  # fuzzy too


def test_search_rejects_a_missing_query_and_a_bad_limit(api: httpx.Client) -> None:
    assert api.get("/documents/search").status_code == 400
    bad = api.get("/documents/search", params={"q": "refund", "limit": 500})
    assert bad.status_code == 400
    assert "limit" in bad.text


def test_a_new_version_replaces_the_indexed_text(api: httpx.Client) -> None:
    document = upload(api, SHIPPING, "shipping.txt").json()["document"]
    indexed(api, document["id"])
    changed = api.post(
        f"/documents/{document['id']}/versions",
        files={"file": ("shipping.txt", b"Parcels now leave from the Hamburg depot the same day.")},
    )
    assert changed.status_code == 201, changed.text
    assert indexed(api, document["id"])["index_status"] == "indexed"
    hits = search(api, "Hamburg depot")
    assert [(hit["document_id"], hit["version"]) for hit in hits] == [(document["id"], 2)]
    assert search(api, "Rotterdam") == []


def test_types_without_text_are_skipped_and_unreadable_ones_fail_with_the_reason(api: httpx.Client) -> None:
    image = upload(api, b"\x89PNG\r\n\x1a\n" + uuid.uuid4().bytes, "scan.png").json()["document"]
    broken = upload(api, b'{"refund": ', "broken.json").json()["document"]
    assert indexed(api, image["id"])["index_status"] == "skipped"
    failed = indexed(api, broken["id"])
    assert failed["index_status"] == "failed"
    assert "not valid JSON" in failed["index_error"]
    assert search(api, "refund") == []


def test_a_deleted_document_is_no_longer_found(api: httpx.Client) -> None:
    document = upload(api, REFUNDS, "refund-policy.md").json()["document"]
    indexed(api, document["id"])
    assert search(api, "damaged goods")
    assert api.delete(f"/documents/{document['id']}").status_code == 200
    assert search(api, "damaged goods") == []


def test_another_orgs_documents_are_never_found(server: ServerInfo, api: httpx.Client) -> None:
    mine = upload(api, REFUNDS, "refund-policy.md").json()["document"]
    indexed(api, mine["id"])
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"}) as theirs:
        assert search(theirs, "damaged goods refund") == []
        assert search(theirs, "damaged goods", document_ids=[mine["id"]]) == []
        their_doc = upload(theirs, REFUNDS + b"\nTheirs.", "their-refunds.md").json()["document"]
        indexed(theirs, their_doc["id"])
        assert {hit["document_id"] for hit in search(theirs, "damaged goods refund")} == {their_doc["id"]}
    assert {hit["document_id"] for hit in search(api, "damaged goods refund")} == {mine["id"]}


def run_with_engine(server: ServerInfo, work: Any) -> Any:
    async def main() -> Any:
        engine = create_engine(server.database_url, pool_size=2)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_ttl_expiry_removes_the_document_from_the_index(server: ServerInfo, api: httpx.Client, org: str) -> None:
    document = upload(api, REFUNDS, "refund-policy.md", ttl_days="1").json()["document"]
    indexed(api, document["id"])

    async def expire(engine: Any) -> int:
        async with engine.begin() as connection:
            await connection.execute(
                sa.update(documents)
                .where(documents.c.org_id == org, documents.c.id == document["id"])
                .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
            )
        return int(await expire_due(engine, local_blobs(server)))

    assert run_with_engine(server, expire) >= 1
    assert search(api, "damaged goods") == []

    async def chunks_left(engine: Any) -> int:
        async with engine.begin() as connection:
            query = sa.select(sa.func.count()).where(
                knowledge_chunks.c.org_id == org, knowledge_chunks.c.source_id == document["id"]
            )
            return int((await connection.execute(query)).scalar_one())

    assert run_with_engine(server, chunks_left) == 0


def test_a_document_left_pending_by_a_dead_process_is_indexed_by_a_sweep(
    server: ServerInfo, api: httpx.Client, org: str
) -> None:
    document = upload(api, REFUNDS, "refund-policy.md").json()["document"]
    before = indexed(api, document["id"])["chunk_count"]

    async def crash_then_sweep(engine: Any) -> int:
        # as if the uploading process died before indexing: pending, nothing in the index
        async with engine.begin() as connection:
            await connection.execute(
                sa.update(documents)
                .where(documents.c.org_id == org, documents.c.id == document["id"])
                .values(index_status="pending", index_chunks=0)
            )
            await connection.execute(
                sa.delete(knowledge_chunks).where(
                    knowledge_chunks.c.org_id == org, knowledge_chunks.c.source_id == document["id"]
                )
            )
        blobs = local_blobs(server)
        recent = Indexer(engine, blobs, stale_seconds=3600)
        assert await recent.sweep() == 0  # not stale yet: its own process may still be at it
        return await Indexer(engine, blobs, stale_seconds=0).sweep()

    assert search(api, "damaged goods")
    assert run_with_engine(server, crash_then_sweep) >= 1
    after = api.get(f"/documents/{document['id']}").json()["document"]
    assert after["index_status"] == "indexed"
    assert after["chunk_count"] == before > 0
    assert [hit["document_id"] for hit in search(api, "damaged goods")][:1] == [document["id"]]


def test_a_document_over_the_indexing_limit_is_stored_but_skipped_with_the_reason(api: httpx.Client) -> None:
    line = b"Refunds of damaged goods are paid within five working days of the return.\n"
    big = line * (MAX_INDEX_BYTES // len(line) + 1)
    document = upload(api, big, "huge-refund-notes.txt").json()["document"]
    state = indexed(api, document["id"])
    assert (state["index_status"], state["chunk_count"]) == ("skipped", 0)
    assert "indexing limit" in state["index_error"]
    assert api.get(f"/documents/{document['id']}/download").content == big
