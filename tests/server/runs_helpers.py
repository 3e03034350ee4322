"""Helpers of the run tests: a local HTTP endpoint that records calls, and waiting for a run."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

INVOICES = [
    {"invoice_id": "INV-001", "vendor": "Acme Corp", "amount": 10000.00, "date": "2026-01-15"},
    {"invoice_id": "INV-002", "vendor": "Globex Inc", "amount": 4500.00, "date": "2026-01-18"},
    {"invoice_id": "INV-003", "vendor": "Initech", "amount": 7250.00, "date": "2026-01-20"},
]
PAYMENTS = [
    {"invoice_id": "INV-001", "vendor": "Acme Corp", "amount": 10000.00, "date": "2026-01-16"},
    {"invoice_id": "INV-002", "vendor": "Globex Inc", "amount": 4480.00, "date": "2026-01-19"},
]


class Recorder:
    """A local HTTP endpoint standing in for httpbin: counts calls, keeps bodies and Idempotency-Key headers."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.status = 200
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.calls.append(
                    {
                        "method": "GET",
                        "path": self.path,
                        "body": None,
                        "headers": dict(self.headers),
                        "idempotency_key": self.headers.get("idempotency-key"),
                    }
                )
                payload = json.dumps({"path": self.path, "reputation": "malicious"}).encode()
                self.send_response(recorder.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"null")
                recorder.calls.append({"body": body, "idempotency_key": self.headers.get("idempotency-key")})
                payload = json.dumps({"json": body, "ok": True}).encode()
                self.send_response(recorder.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/post"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def wait_for(
    api: httpx.Client, run_id: str, *, until: tuple[str, ...] = ("completed", "failed", "condition_not_met")
) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/runs/{run_id}/status").json()
        if status["status"] in until:
            return status
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish: {status}")
