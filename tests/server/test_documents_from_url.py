"""POST /documents/from-url: fetched through the outbound guard (SSRF rules per hop, allow-list, 50 MiB cap)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerInfo, make_settings, run_server

CSV = b"invoice_id,amount\nINV-001,100.00\n"


@pytest.fixture(scope="module")
def files() -> Iterator[int]:
    """A local file server: /data.csv, /report (CSV by Content-Type only), /tool.exe, /redirect?to=<url>."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/redirect":
                self.send_response(302)
                self.send_header("location", query.removeprefix("to="))
                self.send_header("content-length", "0")
                self.end_headers()
                return
            body, media = {
                "/data.csv": (CSV, "text/plain"),
                "/report": (CSV, "text/csv; charset=utf-8"),
                "/tool.exe": (b"MZ", "application/octet-stream"),
            }.get(path, (b"missing", "text/plain"))
            self.send_response(200 if body != b"missing" else 404)
            self.send_header("content-type", media)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture(scope="module")
def guarded(session_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """A server whose outbound allow-list names only the host "localhost" (not its address)."""
    settings = make_settings(Path(tmp_path_factory.mktemp("guarded")), outbound_allow=("localhost",))
    with run_server(settings, session_database) as info:
        yield info


@pytest.fixture
def guarded_api(guarded: ServerInfo, org: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=guarded.http_url, headers={"X-Org-Id": org}, timeout=30) as client:
        yield client


def test_from_url_stores_the_file(api: httpx.Client, files: int) -> None:
    answer = api.post(
        "/documents/from-url",
        json={"url": f"http://127.0.0.1:{files}/data.csv", "name": "Q4 Report", "tags": ["finance"], "ttl_days": 3},
    )
    assert answer.status_code == 201, answer.text
    document = answer.json()["document"]
    assert (document["name"], document["content_type"], document["tags"]) == ("Q4 Report", "text/csv", ["finance"])
    assert api.get(f"/documents/{document['id']}/download").content == CSV
    again = api.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/data.csv"})
    assert again.json()["deduplicated"] is True


def test_from_url_takes_the_type_from_content_type_without_an_extension(api: httpx.Client, files: int) -> None:
    answer = api.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/report"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["document"]["content_type"] == "text/csv"
    assert answer.json()["document"]["name"] == "report.csv"


def test_from_url_refuses_unsupported_types_and_failed_fetches(api: httpx.Client, files: int) -> None:
    assert api.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/tool.exe"}).status_code == 415
    missing = api.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/nothing.csv"})
    assert missing.status_code == 400
    assert "404" in missing.json()["message"]
    assert api.get("/documents").json()["documents"] == []


def _refused(answer: httpx.Response, rule: str) -> None:
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"].startswith("url: ")
    assert f"rule: {rule}" in answer.json()["message"]
    assert answer.json()["code"] == rule.upper()


def test_loopback_is_refused_unless_allow_listed(guarded_api: httpx.Client, files: int) -> None:
    _refused(
        guarded_api.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/data.csv"}), "blocked_address"
    )
    assert guarded_api.get("/documents").json()["documents"] == []


def test_the_metadata_address_is_refused(guarded_api: httpx.Client) -> None:
    answer = guarded_api.post("/documents/from-url", json={"url": "http://169.254.169.254/latest/meta-data/x.json"})
    _refused(answer, "blocked_address")


def test_a_dns_name_resolving_to_a_private_address_is_refused(guarded_api: httpx.Client, files: int) -> None:
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip(f"this machine's host name {name!r} does not resolve")
    if not address.startswith(("127.", "10.", "192.168.", "172.")):
        pytest.skip(f"this machine's host name resolves to {address}, not a private address")
    _refused(
        guarded_api.post("/documents/from-url", json={"url": f"http://{name}:{files}/data.csv"}), "blocked_address"
    )


def test_a_redirect_to_a_private_address_is_refused(guarded_api: httpx.Client, files: int) -> None:
    for target in (f"http://127.0.0.1:{files}/data.csv", "http://169.254.169.254/latest/x.csv"):
        answer = guarded_api.post("/documents/from-url", json={"url": f"http://localhost:{files}/redirect?to={target}"})
        _refused(answer, "blocked_address")


def test_the_allow_listed_host_works(guarded_api: httpx.Client, files: int) -> None:
    answer = guarded_api.post("/documents/from-url", json={"url": f"http://localhost:{files}/data.csv"})
    assert answer.status_code == 201, answer.text
    redirected = guarded_api.post("/documents/from-url", json={"url": f"http://localhost:{files}/redirect?to=/report"})
    assert redirected.status_code == 201, redirected.text


def test_a_file_over_the_limit_is_413(session_database: str, tmp_path: Path, files: int, org: str) -> None:
    settings = make_settings(tmp_path, max_document_bytes=10)
    with (
        run_server(settings, session_database) as info,
        httpx.Client(base_url=info.http_url, headers={"X-Org-Id": org}) as client,
    ):
        answer = client.post("/documents/from-url", json={"url": f"http://127.0.0.1:{files}/data.csv"})
        assert answer.status_code == 413, answer.text
        assert client.get("/documents").json()["documents"] == []
