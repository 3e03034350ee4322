"""Documents over REST: upload, dedup, versions, download, PATCH, delete, audit, storage usage, limits, types."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerInfo, local_blobs

CSV = b"invoice_id,vendor,amount\nINV-001,Acme Corp,10000.00\nINV-002,Globex Inc,4500.00\n"


def upload(api: httpx.Client, content: bytes, filename: str = "data.csv", **fields: Any) -> httpx.Response:
    data = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items()}
    return api.post("/documents", files={"file": (filename, content, "application/octet-stream")}, data=data)


def blobs_of(server: ServerInfo, org: str) -> list[Path]:
    root = local_blobs(server).root / org
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def temp_files(server: ServerInfo) -> list[Path]:
    root = local_blobs(server).tmp
    return sorted(root.iterdir()) if root.exists() else []


def no_temp_files_left(server: ServerInfo) -> bool:
    """A refused upload's temporary file is removed (the server may finish just after the answer is sent)."""
    deadline = time.monotonic() + 10
    while temp_files(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    return temp_files(server) == []


def test_upload_answers_201_with_the_documented_fields(api: httpx.Client) -> None:
    answer = upload(
        api,
        CSV,
        "transactions_q4.csv",
        name="Q4 Transactions",
        tags=["finance", "quarterly"],
        metadata={"department": "accounting"},
        ttl_days="90",
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["deduplicated"] is False
    document = body["document"]
    assert document["id"].startswith("doc_")
    assert document["name"] == "Q4 Transactions"
    assert document["content_type"] == "text/csv"
    assert document["size_bytes"] == len(CSV)
    assert document["checksum_sha256"] == hashlib.sha256(CSV).hexdigest()
    assert document["current_version"] == 1
    assert document["status"] == "ready"
    assert document["tags"] == ["finance", "quarterly"]
    assert document["metadata"] == {"department": "accounting"}
    assert document["filename"] == "transactions_q4.csv"
    assert document["expires_at"] > document["created_at"]
    assert api.get(f"/documents/{document['id']}").json()["document"] == document


def test_the_same_bytes_twice_give_one_document_and_one_blob(api: httpx.Client, server: ServerInfo, org: str) -> None:
    first = upload(api, CSV, "a.csv").json()
    second = upload(api, CSV, "b.csv", name="other name")
    assert second.status_code == 201
    assert second.json()["deduplicated"] is True
    assert second.json()["document"]["id"] == first["document"]["id"]
    assert len(blobs_of(server, org)) == 1
    assert len(api.get("/documents").json()["documents"]) == 1


def test_a_new_version_increments_current_version_and_both_download(api: httpx.Client) -> None:
    document = upload(api, CSV).json()["document"]
    newer = CSV + b"INV-003,Initech,7250.00\n"
    answer = api.post(f"/documents/{document['id']}/versions", files={"file": ("data-v2.csv", newer)})
    assert answer.status_code == 201, answer.text
    assert answer.json()["document"]["current_version"] == 2
    assert answer.json()["document"]["checksum_sha256"] == hashlib.sha256(newer).hexdigest()
    current = api.get(f"/documents/{document['id']}/download")
    assert current.status_code == 200
    assert current.content == newer
    assert current.headers["content-type"].startswith("text/csv")
    assert 'filename="data-v2.csv"' in current.headers["content-disposition"]
    old = api.get(f"/documents/{document['id']}/download", params={"version": 1})
    assert old.content == CSV
    assert api.get(f"/documents/{document['id']}/download", params={"version": 3}).status_code == 404


def test_download_bytes_equal_upload_bytes(api: httpx.Client) -> None:
    content = os.urandom(3 * 1024 * 1024 + 17)
    document = upload(api, content, "photo.png").json()["document"]
    assert document["content_type"] == "image/png"
    with api.stream("GET", f"/documents/{document['id']}/download") as answer:
        digest = hashlib.sha256()
        for piece in answer.iter_bytes():
            digest.update(piece)
        assert answer.headers["content-length"] == str(len(content))
    assert digest.hexdigest() == hashlib.sha256(content).hexdigest() == document["checksum_sha256"]


def test_a_file_one_byte_over_50_mib_is_413_and_nothing_is_stored(
    api: httpx.Client, server: ServerInfo, org: str
) -> None:
    limit = server.settings.max_document_bytes
    assert limit == 50 * 1024 * 1024
    answer = upload(api, b"x" * (limit + 1), "big.txt")
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "Payload Too Large"
    assert blobs_of(server, org) == []
    assert no_temp_files_left(server)
    assert api.get("/documents").json()["documents"] == []
    assert api.get("/documents/storage-usage").json()["document_count"] == 0
    exactly = upload(api, b"y" * limit, "big.txt")
    assert exactly.status_code == 201, exactly.text
    assert exactly.json()["document"]["size_bytes"] == limit


def test_an_unsupported_type_is_415(api: httpx.Client, server: ServerInfo) -> None:
    answer = upload(api, b"MZ..." * 300_000, "tool.exe")
    assert answer.status_code == 415
    assert "'.exe'" in answer.json()["message"]
    assert ".csv" in answer.json()["message"]
    assert answer.json()["error"] == "Unsupported Media Type"
    assert upload(api, b"a", "no-extension").status_code == 415
    assert api.get("/documents").json()["documents"] == []
    assert no_temp_files_left(server)


def test_refused_uploads_keep_their_status_while_many_race(server: ServerInfo, org: str) -> None:
    """Refusals that come before the body's end (415 on the first part, 404 for a version of no document) answer
    their own status even when many overlap: the server reads the stream to its end before refusing, else a write
    still in flight in the gateway's gRPC call turns the answer into a 500 ("Internal error from Core")."""
    big = b"MZ..." * 300_000
    requests: list[tuple[str, list[tuple[str, tuple[str, bytes]]], int]] = [
        ("/documents", [("file", ("tool.exe", big))], 415),
        ("/documents/bulk-upload", [("file", ("a.csv", b"a,b\n")), ("file", ("tool.exe", big))], 415),
        ("/documents/doc_missing/versions", [("file", ("v2.csv", big))], 404),
    ] * 12

    def send(request: tuple[str, list[tuple[str, tuple[str, bytes]]], int]) -> tuple[str, int, int, str]:
        path, files, expected = request
        with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": org}, timeout=120) as client:
            answer = client.post(path, files=files)
        return path, expected, answer.status_code, answer.text[:200]

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(send, requests))
    assert [answer for answer in answers if answer[1] != answer[2]] == []
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": org}, timeout=30) as client:
        assert client.get("/documents").json()["documents"] == []
    assert no_temp_files_left(server)


@pytest.mark.parametrize(
    ("files", "data", "named"),
    [
        (None, {"name": "x"}, "file"),
        ({"other": ("a.csv", b"a")}, {}, "other"),
        ({"file": ("a.csv", b"a")}, {"tags": "not json"}, "tags"),
        ({"file": ("a.csv", b"a")}, {"tags": '{"a": 1}'}, "tags"),
        ({"file": ("a.csv", b"a")}, {"metadata": "[1]"}, "metadata"),
        ({"file": ("a.csv", b"a")}, {"ttl_days": "soon"}, "ttl_days"),
        ({"file": ("a.csv", b"a")}, {"ttl_days": "0"}, "ttl_days"),
        ({"file": ("a.csv", b"a")}, {"ttl_days": "61162134416"}, "ttl_days"),  # past int32: was a 500
        ({"file": ("a.csv", b"a")}, {"ttl_days": "²"}, "ttl_days"),
        ({"file": ("a.csv", b"a")}, {"metadata": "-Infinity"}, "metadata"),
        ({"file": ("a.csv", b"a")}, {"tags": '["a", NaN]'}, "tags"),
    ],
)
def test_multipart_errors_are_400_naming_the_part(
    api: httpx.Client, server: ServerInfo, files: dict[str, Any] | None, data: dict[str, str], named: str
) -> None:
    if files is None:  # a form without any file part
        answer = api.post("/documents", files={name: (None, value) for name, value in data.items()})
    else:
        answer = api.post("/documents", files=files, data=data)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith(named), answer.text
    assert api.get("/documents").json()["documents"] == []
    assert no_temp_files_left(server)


def test_a_json_body_instead_of_a_form_is_400(api: httpx.Client) -> None:
    answer = api.post("/documents", json={"name": "x"})
    assert answer.status_code == 400
    assert "multipart/form-data" in answer.json()["message"]


def test_bulk_upload_stores_each_file(api: httpx.Client) -> None:
    answer = api.post(
        "/documents/bulk-upload",
        files=[("file", ("a.csv", b"a,b\n1,2\n")), ("file", ("b.json", b'{"x": 1}')), ("file", ("c.txt", b"hi"))],
        data={"tags": '["batch"]'},
    )
    assert answer.status_code == 201, answer.text
    documents = answer.json()["documents"]
    assert [d["name"] for d in documents] == ["a.csv", "b.json", "c.txt"]
    assert [d["content_type"] for d in documents] == ["text/csv", "application/json", "text/plain"]
    assert all(d["tags"] == ["batch"] for d in documents)
    assert {d["id"] for d in api.get("/documents", params={"tag": "batch"}).json()["documents"]} == {
        d["id"] for d in documents
    }


def test_bulk_upload_limits_and_single_upload_takes_one_file(api: httpx.Client, server: ServerInfo) -> None:
    too_many = [("file", (f"f{i}.txt", f"{i}".encode())) for i in range(51)]
    answer = api.post("/documents/bulk-upload", files=too_many)
    assert answer.status_code == 400, answer.text
    assert "at most 50 files" in answer.json()["message"]
    two = api.post("/documents", files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))])
    assert two.status_code == 400
    assert "bulk-upload" in two.json()["message"]
    assert api.get("/documents").json()["documents"] == []
    assert no_temp_files_left(server)


def test_list_filters_and_pages(api: httpx.Client) -> None:
    for index in range(3):
        upload(api, f"a,b\n{index},x\n".encode(), f"report-{index}.csv", name=f"Report {index}", tags=["t"])
    upload(api, b'{"a": 1}', "config.json", name="Config")
    assert len(api.get("/documents", params={"content_type": "text/csv"}).json()["documents"]) == 3
    assert [d["name"] for d in api.get("/documents", params={"name": "conf"}).json()["documents"]] == ["Config"]
    assert len(api.get("/documents", params={"tag": "t"}).json()["documents"]) == 3
    first = api.get("/documents", params={"page_size": 2}).json()
    assert len(first["documents"]) == 2 and first["next_page_token"]
    second = api.get("/documents", params={"page_size": 2, "page_token": first["next_page_token"]}).json()
    assert len(second["documents"]) == 2 and not second["next_page_token"]
    assert {d["name"] for d in first["documents"] + second["documents"]} == {
        "Report 0",
        "Report 1",
        "Report 2",
        "Config",
    }


def test_patch_changes_only_the_given_fields(api: httpx.Client) -> None:
    document = upload(api, CSV, tags=["a"], metadata={"k": 1}).json()["document"]
    answer = api.patch(f"/documents/{document['id']}", json={"name": "Renamed", "ttl_days": 7})
    assert answer.status_code == 200, answer.text
    patched = answer.json()["document"]
    assert patched["name"] == "Renamed"
    assert patched["tags"] == ["a"] and patched["metadata"] == {"k": 1}
    assert patched["expires_at"]
    again = api.patch(f"/documents/{document['id']}", json={"tags": ["b", "c"], "metadata": {"z": True}, "ttl_days": 0})
    assert again.json()["document"]["tags"] == ["b", "c"]
    assert again.json()["document"]["metadata"] == {"z": True}
    assert "expires_at" not in again.json()["document"]
    assert api.patch(f"/documents/{document['id']}", json={"tags": "x"}).status_code == 400


def test_delete_removes_the_document_and_its_unused_blobs(api: httpx.Client, server: ServerInfo, org: str) -> None:
    kept = upload(api, b"kept", "kept.txt").json()["document"]
    document = upload(api, CSV).json()["document"]
    api.post(f"/documents/{document['id']}/versions", files={"file": ("v2.txt", b"kept")})  # shares kept's blob
    assert len(blobs_of(server, org)) == 2
    answer = api.delete(f"/documents/{document['id']}")
    assert answer.status_code == 200
    assert answer.json() == {"id": document["id"], "deleted": True}
    assert api.get(f"/documents/{document['id']}").status_code == 404
    assert api.get(f"/documents/{document['id']}/download").status_code == 404
    assert api.delete(f"/documents/{document['id']}").status_code == 404
    assert len(blobs_of(server, org)) == 1  # CSV's blob went, the shared one stays
    assert api.get(f"/documents/{kept['id']}/download").content == b"kept"


def test_audit_lists_upload_version_patch_download_delete_with_actor(api: httpx.Client, org: str) -> None:
    document = upload(api, CSV).json()["document"]
    api.post(f"/documents/{document['id']}/versions", files={"file": ("v2.csv", CSV + b"x,y,1\n")})
    api.patch(f"/documents/{document['id']}", json={"name": "n"})
    api.get(f"/documents/{document['id']}/download")
    api.delete(f"/documents/{document['id']}")
    entries = api.get(f"/documents/{document['id']}/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["upload", "version", "patch", "download", "delete"]
    assert {e["actor"] for e in entries} == {f"org:{org}"}
    assert [e["version"] for e in entries[:2]] == [1, 2]
    assert entries[2]["details"] == {"fields": ["name"]}
    assert api.get("/documents/doc_unknown/audit").status_code == 404


def test_storage_usage_counts_versions_and_shared_blobs(api: httpx.Client) -> None:
    assert api.get("/documents/storage-usage").json() == {
        "total_bytes": 0,
        "document_count": 0,
        "version_count": 0,
        "stored_bytes": 0,
    }
    a = upload(api, b"12345", "a.txt").json()["document"]
    upload(api, b"1234567890", "b.txt")
    api.post(f"/documents/{a['id']}/versions", files={"file": ("a2.txt", b"1234567890")})
    usage = api.get("/documents/storage-usage").json()
    assert usage == {"total_bytes": 25, "document_count": 2, "version_count": 3, "stored_bytes": 15}


def test_another_org_sees_nothing(api: httpx.Client, server: ServerInfo) -> None:
    document = upload(api, CSV, tags=["secret"]).json()["document"]
    doc_id = document["id"]
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"other-{uuid.uuid4().hex[:8]}"}) as other:
        assert other.get(f"/documents/{doc_id}").status_code == 404
        assert other.get(f"/documents/{doc_id}/download").status_code == 404
        assert other.get(f"/documents/{doc_id}/audit").status_code == 404
        assert other.patch(f"/documents/{doc_id}", json={"name": "x"}).status_code == 404
        assert other.post(f"/documents/{doc_id}/versions", files={"file": ("x.csv", b"a")}).status_code == 404
        assert other.delete(f"/documents/{doc_id}").status_code == 404
        assert other.get("/documents", params={"tag": "secret"}).json()["documents"] == []
        assert other.get("/documents").json()["documents"] == []
        assert other.get("/documents/storage-usage").json()["document_count"] == 0
        # the same bytes in another org are a new document, never the first org's
        mine = upload(other, CSV).json()
        assert mine["deduplicated"] is False and mine["document"]["id"] != doc_id
    entries = api.get(f"/documents/{doc_id}/audit").json()["entries"]
    assert [e["action"] for e in entries] == ["upload"]
    assert api.get(f"/documents/{doc_id}").json()["document"]["name"] == document["name"]


def test_every_endpoint_with_another_orgs_key_is_404_and_leaks_nothing(strict_server: ServerInfo) -> None:
    from tests.server.test_auth import bearer, create_key, signup

    with httpx.Client(base_url=strict_server.http_url, timeout=30) as http:
        owner, intruder = signup(http), signup(http)
        mine = httpx.Client(base_url=strict_server.http_url, headers=bearer(owner.key), timeout=30)
        theirs = httpx.Client(base_url=strict_server.http_url, headers=bearer(intruder.key), timeout=30)
        with mine, theirs:
            document = upload(mine, CSV, tags=["private"]).json()["document"]
            doc_id = document["id"]
            attempts = [
                theirs.get(f"/documents/{doc_id}"),
                theirs.get(f"/documents/{doc_id}/download"),
                theirs.get(f"/documents/{doc_id}/download", params={"version": 1}),
                theirs.get(f"/documents/{doc_id}/audit"),
                theirs.patch(f"/documents/{doc_id}", json={"name": "stolen"}),
                theirs.post(f"/documents/{doc_id}/versions", files={"file": ("x.csv", b"a,b\n")}),
                theirs.delete(f"/documents/{doc_id}"),
            ]
            for response in attempts:
                assert response.status_code == 404, (response.request.method, response.request.url, response.text)
                assert response.json()["error"] == "Not Found"
            assert theirs.get("/documents").json()["documents"] == []
            assert theirs.get("/documents", params={"tag": "private"}).json()["documents"] == []
            assert theirs.get("/documents/storage-usage").json() == {
                "total_bytes": 0,
                "document_count": 0,
                "version_count": 0,
                "stored_bytes": 0,
            }
            assert upload(theirs, CSV).json()["deduplicated"] is False
            # the owner's document, trail and usage are untouched; the trail names the key
            indexing = {"index_status", "chunk_count", "index_error"}  # changes by itself after the upload
            again = mine.get(f"/documents/{doc_id}").json()["document"]
            assert {k: v for k, v in again.items() if k not in indexing} == {
                k: v for k, v in document.items() if k not in indexing
            }
            entries = mine.get(f"/documents/{doc_id}/audit").json()["entries"]
            assert [(e["action"], e["actor"]) for e in entries] == [("upload", f"key:{owner.key_id}")]
            assert mine.get("/documents/storage-usage").json()["document_count"] == 1
            # a read-only key may download but not upload
            reader = create_key(http, owner, "read_only")
            with httpx.Client(base_url=strict_server.http_url, headers=bearer(reader["key"]), timeout=30) as ro:
                assert ro.get(f"/documents/{doc_id}/download").content == CSV
                assert upload(ro, b"other", "x.txt").status_code == 403


def test_expired_documents_are_deleted_with_their_blobs(api: httpx.Client, server: ServerInfo, org: str) -> None:
    import asyncio

    import sqlalchemy as sa

    from server.services.documents import expire_due
    from server.store.db import create_engine
    from server.store.tables import documents

    expiring = upload(api, b"short-lived", "a.txt", ttl_days="1").json()["document"]
    kept = upload(api, b"kept", "b.txt").json()["document"]

    async def expire() -> int:
        engine = create_engine(server.database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                await connection.execute(
                    sa.update(documents)
                    .where(documents.c.org_id == org, documents.c.id == expiring["id"])
                    .values(expires_at=sa.func.now() - sa.text("interval '1 second'"))
                )
            return await expire_due(engine, local_blobs(server))
        finally:
            await engine.dispose()

    assert asyncio.run(expire()) >= 1
    assert api.get(f"/documents/{expiring['id']}").status_code == 404
    assert api.get(f"/documents/{kept['id']}").status_code == 200
    assert [e["action"] for e in api.get(f"/documents/{expiring['id']}/audit").json()["entries"]] == [
        "upload",
        "expire",
    ]
    assert api.get(f"/documents/{expiring['id']}/audit").json()["entries"][1]["actor"] == "system"
    assert len(blobs_of(server, org)) == 1
