"""`doc:<id>` and `doc:<id>@<version>` in step properties: replaced by the stored document's content before the
step runs. CSV becomes a list of row objects (header row = keys; every value stays a string — the matcher reads
amounts like "1,250.00" as numbers itself), JSON is parsed, plain text is a string. Other types (PDF, Excel,
images) and unknown documents fail the step with a message saying so.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server import jsonvalue
from server.blobstore import BlobStore
from server.domain.evaluate import EvaluationError
from server.errors import NotFound
from server.store import documents as store
from server.store import tenant

REFERENCE = re.compile(r"doc:(doc_[0-9A-Za-z]+)(?:@([0-9]+))?")
PARSED_TYPES = ("text/csv", "application/json", "text/plain")


def references(value: Any) -> bool:
    """Whether `value` holds a `doc:` reference anywhere (cheap; most steps have none)."""
    if isinstance(value, str):
        return REFERENCE.fullmatch(value) is not None
    if isinstance(value, dict):
        return any(references(item) for item in value.values())
    if isinstance(value, list):
        return any(references(item) for item in value)
    return False


def parse(content_type: str, data: bytes, reference: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise EvaluationError("", f"{reference}: the document is not UTF-8 text") from None
    if content_type == "text/csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(text, newline=""))]
    if content_type == "application/json":
        try:
            return jsonvalue.loads(text)
        except (ValueError, RecursionError) as exc:
            raise EvaluationError("", f"{reference}: the document is not valid JSON ({exc})") from None
    return text


async def resolve(engine: AsyncEngine, blobs: BlobStore, org_id: str, value: Any) -> Any:
    """`value` with every `doc:` string replaced by the document's content (each document read once)."""
    if not references(value):
        return value
    loaded: dict[str, Any] = {}

    async def load(reference: str, document_id: str, version: int) -> Any:
        if reference not in loaded:
            try:
                async with tenant(engine, org_id) as repo:
                    document = await store.get(repo, document_id)
                    row = await store.get_version(repo, document_id, version or int(document.current_version))
            except NotFound as exc:
                raise EvaluationError("", f"{reference}: {exc.message}") from None
            if row.content_type not in PARSED_TYPES:
                raise EvaluationError(
                    "", f"{reference}: a {row.content_type} document cannot be used as a value (CSV, JSON or text only)"
                )
            data = b"".join([chunk async for chunk in blobs.read(org_id, row.checksum_sha256)])
            loaded[reference] = parse(row.content_type, data, reference)
        return loaded[reference]

    async def walk(item: Any) -> Any:
        if isinstance(item, str):
            match = REFERENCE.fullmatch(item)
            return await load(item, match.group(1), int(match.group(2) or 0)) if match else item
        if isinstance(item, dict):
            return {key: await walk(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [await walk(inner) for inner in item]
        return item

    return await walk(value)
