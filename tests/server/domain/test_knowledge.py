"""Text extraction per format and chunking on structure (no database)."""

from __future__ import annotations

import itertools
import zlib

import pytest

from server.domain.knowledge import (
    Chunk,
    Extracted,
    UnsupportedContent,
    chunk,
    detect_format,
    extract,
    terms,
    title_words,
)


def tiny_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF (Helvetica text, one line per page), with a correct xref table."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    kids = []
    for text in pages:
        stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
            b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>" % content
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_plain_text_is_kept_with_line_ends_normalised() -> None:
    assert extract(b"Hello\r\nworld\x00!\n", "text/plain", "notes.txt").text == "Hello\nworld!\n"


def test_text_that_is_not_utf8_still_decodes() -> None:
    assert extract("Café crème".encode("cp1252"), "text/plain", "menu.txt").text == "Café crème"


def test_markdown_headings_are_found_outside_code_fences() -> None:
    source = "# Title\n\nIntro.\n\n```sh\n# not a heading\n```\n\n## Part two\nBody.\n"
    extracted = extract(source.encode(), "text/markdown", "doc.md")
    assert extracted.text == source
    assert [(h.level, h.title) for h in extracted.headings] == [(1, "Title"), (2, "Part two")]
    assert all(source[h.offset :].startswith("#") for h in extracted.headings)


def test_html_keeps_visible_text_and_headings_and_drops_scripts_and_styles() -> None:
    page = b"""<html><head><title>Page</title><style>p { color: red }</style></head><body>
    <h1>Main &amp; more</h1><p>Hello <b>bold</b>\n world.</p><script>alert("x")</script>
    <table><tr><th>Plan</th><th>Price</th></tr><tr><td>Team</td><td>12</td></tr></table>
    <h2>Sub</h2><ul><li>one</li><li>two</li></ul></body></html>"""
    extracted = extract(page, "text/html; charset=utf-8", "page.html")
    assert extracted.text == "Main & more\n\nHello bold world.\n\nPlan | Price\n\nTeam | 12\n\nSub\n\none\n\ntwo"
    assert [(h.level, h.title) for h in extracted.headings] == [(1, "Main & more"), (2, "Sub")]
    assert all(extracted.text[h.offset :].startswith(h.title) for h in extracted.headings)
    assert "alert" not in extracted.text and "color" not in extracted.text


def test_html_without_headings_is_headed_by_its_title() -> None:
    extracted = extract(b"<title>Help</title><p>Text.</p>", "text/html", "help.html")
    assert extracted.text == "Help\n\nText."
    assert [(h.offset, h.title) for h in extracted.headings] == [(0, "Help")]


def test_csv_rows_become_header_value_lines() -> None:
    content = b"name,role,team\nAnn,admin,\nBob,viewer,Ops\n"
    assert extract(content, "text/csv", "people.csv").text == (
        "name: Ann\nrole: admin\n\nname: Bob\nrole: viewer\nteam: Ops"
    )


def test_csv_with_semicolons_is_sniffed() -> None:
    assert extract(b"a;b\n1;2\n", "text/csv", "x.csv").text == "a: 1\nb: 2"


def test_json_is_flattened_to_key_paths() -> None:
    content = b'{"plan": {"name": "Team", "limits": [10, {"gb": 100}]}, "active": true, "note": null}'
    assert extract(content, "application/json", "x.json").text == (
        "plan.name: Team\nplan.limits[0]: 10\nplan.limits[1].gb: 100\n\nactive: true"
    )


def test_json_list_items_are_paragraphs() -> None:
    text = extract(b'[{"q": "Why?", "a": "Because."}, "plain"]', "application/json", "faq.json").text
    assert text == "[0].q: Why?\n[0].a: Because.\n\n[1]: plain"


def test_invalid_json_is_rejected_with_the_reason() -> None:
    with pytest.raises(UnsupportedContent, match="not valid JSON"):
        extract(b"{oops", "application/json", "bad.json")


def test_pdf_text_is_extracted_page_by_page() -> None:
    extracted = extract(tiny_pdf(["Refunds take 14 days", "Second page text"]), "application/pdf", "policy.pdf")
    assert "Refunds take 14 days" in extracted.text
    assert extracted.text.index("Refunds") < extracted.text.index("Second page text")


def test_a_broken_pdf_is_rejected() -> None:
    with pytest.raises(UnsupportedContent):
        extract(b"%PDF-1.4 this is not really a pdf", "application/pdf", "broken.pdf")


def test_format_comes_from_content_type_or_extension() -> None:
    assert detect_format("text/markdown", "x") == "md"
    assert detect_format("application/octet-stream", "Report.PDF") == "pdf"
    assert detect_format("text/plain", "readme.md") == "md"
    assert detect_format("", "data.csv") == "csv"
    with pytest.raises(UnsupportedContent) as raised:
        detect_format("image/png", "photo.png")
    assert raised.value.field == "content_type"


def test_title_words_make_file_names_searchable() -> None:
    assert title_words("expense_policy-v2.md") == "expense policy v2"
    assert title_words("Q3 plan") == "Q3 plan"


def test_terms_are_the_distinct_longer_words_in_lower_case() -> None:
    assert terms("Refunds: refunds, REFUNDS and 2026 the VPN-client's café_menu x1234") == {
        "refunds",
        "client",
        "café",
        "menu",
    }


def _assert_chunks_cover(extracted: Extracted, chunks: list[Chunk]) -> None:
    for i, piece in enumerate(chunks):
        assert piece.index == i
        assert extracted.text[piece.start : piece.end] == piece.text
        assert piece.text == piece.text.strip() and piece.text


LONG = "# Guide\n\nIntro paragraph.\n\n## Setup\n\n" + " ".join(
    f"Step {i} explains how to configure the thing number {i}." for i in range(80)
)


def test_chunk_offsets_map_back_to_the_text() -> None:
    extracted = extract(LONG.encode(), "text/markdown", "guide.md")
    chunks = chunk(extracted, target=300, overlap=80)
    _assert_chunks_cover(extracted, chunks)
    assert all(len(piece.text) <= 300 for piece in chunks)
    # Nothing is lost: every sentence of the long section is in some chunk.
    joined = " ".join(piece.text for piece in chunks)
    assert all(f"Step {i} explains" in joined for i in range(80))


def test_consecutive_chunks_of_a_section_overlap() -> None:
    extracted = extract(LONG.encode(), "text/markdown", "guide.md")
    setup = [piece for piece in chunk(extracted, target=300, overlap=80) if piece.heading == "Guide > Setup"]
    assert len(setup) > 3
    for before, after in itertools.pairwise(setup):
        assert after.start < before.end  # shared text
        assert before.end - after.start <= 80
        assert after.start > before.start  # progress


def test_chunks_never_cross_a_heading_and_carry_the_heading_path() -> None:
    source = "# A\n\nalpha text\n\n## B\n\nbeta text\n\n### C\n\ngamma\n\n## D\n\ndelta\n"
    extracted = extract(source.encode(), "text/markdown", "x.md")
    assert [(piece.heading, piece.text) for piece in chunk(extracted)] == [
        ("A", "# A\n\nalpha text"),
        ("A > B", "## B\n\nbeta text"),
        ("A > B > C", "### C\n\ngamma"),
        ("A > D", "## D\n\ndelta"),
    ]


def test_text_before_the_first_heading_has_no_heading() -> None:
    extracted = extract(b"Preface.\n\n# One\n\nBody.", "text/markdown", "x.md")
    assert [(piece.heading, piece.text) for piece in chunk(extracted)] == [("", "Preface."), ("One", "# One\n\nBody.")]


def test_chunks_prefer_paragraph_breaks() -> None:
    first = "First paragraph sentence one. " * 5
    second = "Second paragraph sentence two. " * 5
    extracted = Extracted(f"{first.strip()}\n\n{second.strip()}")
    chunks = chunk(extracted, target=250, overlap=0)
    assert [piece.text for piece in chunks] == [first.strip(), second.strip()]


def test_a_sentence_longer_than_a_chunk_is_cut_at_spaces() -> None:
    extracted = Extracted("word " * 400)
    chunks = chunk(extracted, target=200, overlap=50)
    _assert_chunks_cover(extracted, chunks)
    assert all(len(piece.text) <= 200 for piece in chunks)
    assert all(not piece.text.startswith("ord") for piece in chunks)


def test_empty_text_has_no_chunks() -> None:
    assert chunk(Extracted("  \n\n  ")) == []


def test_chunking_rejects_an_overlap_as_large_as_the_target() -> None:
    with pytest.raises(ValueError):
        chunk(Extracted("x"), target=100, overlap=100)
