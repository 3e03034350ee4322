"""Documents on S3-compatible storage (HYPHAE_BLOB_URL=s3://bucket/prefix), against moto's local S3 server."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import make_settings, run_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(Bucket="hyphae-docs")
    try:
        yield endpoint
    finally:
        server.stop()


def test_documents_live_in_the_bucket(s3: str, session_database: str, tmp_path: Path, org: str) -> None:
    settings = make_settings(tmp_path, blob_url="s3://hyphae-docs/blobs")
    content = b"a,b\n1,2\n" * 1000
    with (
        run_server(settings, session_database) as info,
        httpx.Client(base_url=info.http_url, headers={"X-Org-Id": org}, timeout=30) as api,
    ):
        document = api.post("/documents", files={"file": ("rows.csv", content)}).json()["document"]
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="hyphae-docs").get("Contents", [])]
        assert keys == [f"blobs/{org}/{hashlib.sha256(content).hexdigest()}"]
        assert not (tmp_path / "blobs" / org).exists()  # nothing kept on local disk
        assert api.get(f"/documents/{document['id']}/download").content == content
        assert api.post("/documents", files={"file": ("again.csv", content)}).json()["deduplicated"] is True
        assert api.delete(f"/documents/{document['id']}").status_code == 200
        assert boto3.client("s3").list_objects_v2(Bucket="hyphae-docs").get("KeyCount") == 0
