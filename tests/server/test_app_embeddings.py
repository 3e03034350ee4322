"""Start-up: the embedder for knowledge is prepared once, and one log line says which search runs."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from server.app import knowledge_embedder
from server.store.db import create_engine
from tests.conftest import ServerInfo, make_settings


def prepare(server: ServerInfo, tmp_path: Path, model: str) -> object:
    async def main() -> object:
        engine = create_engine(server.database_url, pool_size=1)
        try:
            return await knowledge_embedder(engine, make_settings(tmp_path, embedding_model=model))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_without_an_embedding_model_search_is_full_text_and_trigrams_and_says_so(
    server: ServerInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hyphae"):
        assert prepare(server, tmp_path, "") is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("knowledge search:")]
    assert lines == ["knowledge search: full text + trigrams only (HYPHAE_EMBEDDING_MODEL not set)"]


def test_an_unavailable_embedding_model_falls_back_to_full_text_and_says_so(
    server: ServerInfo, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="hyphae"):
        assert prepare(server, tmp_path, str(tmp_path / "no-such-model")) is None
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("knowledge search:")]
    assert len(lines) == 1
    assert lines[0].startswith("knowledge search: full text + trigrams only (embedding model")
