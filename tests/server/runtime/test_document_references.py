"""`doc:<id>` in step properties: a matcher reading uploaded CSVs matches as it does with inline data (T1)."""

from __future__ import annotations

import csv
import io
import json
import uuid
from typing import Any

import httpx

from server.runtime.documents import parse, references
from tests.server.runs_helpers import INVOICES, PAYMENTS, wait_for


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def _upload(api: httpx.Client, content: bytes, filename: str) -> str:
    answer = api.post("/documents", files={"file": (filename, content)})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["document"]["id"])


def _run_matcher(api: httpx.Client, left: Any, right: Any, run_input: dict[str, Any]) -> dict[str, Any]:
    definition = {
        "actions": [
            {
                "type": "matcher",
                "properties": {
                    "left": left,
                    "right": right,
                    "matchOn": ["invoice_id"],
                    "tolerance": 0.05,
                    "outputMatched": "matched",
                    "outputUnmatchedLeft": "unmatched_invoices",
                    "outputUnmatchedRight": "unmatched_payments",
                },
            }
        ]
    }
    created = api.post("/workflows", json={"name": f"matcher-{uuid.uuid4().hex[:8]}", "definition": definition})
    assert created.status_code == 201, created.text
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": run_input})
    assert started.status_code == 200, started.text
    return wait_for(api, started.json()["run_id"])


def _ids(run: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    context = run["context"]
    return (
        [pair["a"]["invoice_id"] for pair in context["matched"]],
        [record["invoice_id"] for record in context["unmatched_invoices"]],
        [record["invoice_id"] for record in context["unmatched_payments"]],
    )


def test_a_matcher_reading_doc_csvs_matches_as_the_inline_version(api: httpx.Client) -> None:
    invoices = _upload(api, _csv(INVOICES), "invoices.csv")
    payments = _upload(api, _csv(PAYMENTS), "payments.csv")
    inline = _run_matcher(api, "@input.invoices", "@input.payments", {"invoices": INVOICES, "payments": PAYMENTS})
    from_docs = _run_matcher(api, f"doc:{invoices}", f"doc:{payments}", {})
    assert inline["status"] == from_docs["status"] == "completed", from_docs
    assert _ids(from_docs) == _ids(inline) == (["INV-001", "INV-002"], ["INV-003"], [])
    # CSV values stay strings: the same rows given inline as strings give exactly the same output
    as_text = [{k: str(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(_csv(INVOICES).decode()))]
    pay_text = [{k: str(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(_csv(PAYMENTS).decode()))]
    inline_text = _run_matcher(api, "@input.i", "@input.p", {"i": as_text, "p": pay_text})
    assert {k: from_docs["context"][k] for k in ("matched", "unmatched_invoices", "unmatched_payments")} == {
        k: inline_text["context"][k] for k in ("matched", "unmatched_invoices", "unmatched_payments")
    }


def test_a_versioned_reference_reads_that_version(api: httpx.Client) -> None:
    invoices = _upload(api, _csv(INVOICES), "invoices.csv")
    payments = _upload(api, _csv(PAYMENTS), "payments.csv")
    newer = api.post(f"/documents/{payments}/versions", files={"file": ("p2.csv", _csv(PAYMENTS[:1]))})
    assert newer.json()["document"]["current_version"] == 2
    assert _ids(_run_matcher(api, f"doc:{invoices}", f"doc:{payments}@1", {}))[0] == ["INV-001", "INV-002"]
    assert _ids(_run_matcher(api, f"doc:{invoices}", f"doc:{payments}", {}))[0] == ["INV-001"]


def test_a_json_document_is_parsed(api: httpx.Client) -> None:
    invoices = _upload(api, json.dumps(INVOICES).encode(), "invoices.json")
    run = _run_matcher(api, f"doc:{invoices}", "@input.payments", {"payments": PAYMENTS})
    assert run["status"] == "completed", run
    assert _ids(run) == (["INV-001", "INV-002"], ["INV-003"], [])


def test_an_unknown_or_foreign_document_fails_the_step_with_a_clear_error(api: httpx.Client, server: Any) -> None:
    run = _run_matcher(api, "doc:doc_0123456789abcdef", "@input.payments", {"payments": PAYMENTS})
    assert run["status"] == "failed"
    assert "doc:doc_0123456789abcdef: document 'doc_0123456789abcdef' not found" in json.dumps(run)
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": "another-org-docs"}) as other:
        foreign = _upload(other, _csv(INVOICES), "invoices.csv")
    run = _run_matcher(api, f"doc:{foreign}", "@input.payments", {"payments": PAYMENTS})
    assert run["status"] == "failed"
    assert "not found" in json.dumps(run)


def test_a_pdf_cannot_be_used_as_a_value(api: httpx.Client) -> None:
    pdf = _upload(api, b"%PDF-1.4", "contract.pdf")
    run = _run_matcher(api, f"doc:{pdf}", "@input.payments", {"payments": PAYMENTS})
    assert run["status"] == "failed"
    assert "application/pdf document cannot be used as a value" in json.dumps(run)


def test_parse_and_references() -> None:
    assert parse("text/csv", b"\xef\xbb\xbfa,b\n1,x\n", "doc:d") == [{"a": "1", "b": "x"}]
    assert parse("text/plain", b"hello", "doc:d") == "hello"
    assert references({"x": ["doc:doc_1a@2"]}) and not references({"x": "doc:"}) and not references("see doc:doc_1")
