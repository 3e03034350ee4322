"""A server refuses to start on a database whose secrets were sealed with a key it does not have."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import pytest

from cli.process import running
from server.app import check_secret_keys
from server.crypto import SecretBox
from server.store.db import create_engine
from tests.conftest import make_settings, run_server


def test_start_refuses_a_database_sealed_with_another_key(fresh_database: str, tmp_path: Path) -> None:
    first = make_settings(tmp_path / "a", secret_key=base64.b64encode(b"a" * 32).decode())
    with run_server(first, fresh_database) as info:
        httpx.post(f"{info.http_url}/org-config", json={"key": "api:x", "value": "v"}, headers={"X-Org-Id": "o"})

    other = make_settings(tmp_path / "b", secret_key=base64.b64encode(b"b" * 32).decode())

    async def start() -> None:
        async with running(other, fresh_database):
            pass

    with pytest.raises(ValueError, match="HYPHAE_SECRET_KEY"):
        asyncio.run(start())

    # with both keys (the new one current) it starts, and the old secret is still readable
    both = make_settings(
        tmp_path / "c",
        secret_key=",".join(base64.b64encode(k * 32).decode() for k in (b"b", b"a")),
    )
    with run_server(both, fresh_database) as info:
        listed = httpx.get(f"{info.http_url}/org-config", headers={"X-Org-Id": "o"})
        assert listed.status_code == 200
        assert listed.json()["entries"][0]["value"] == "****"


def test_check_passes_on_an_empty_database(fresh_database: str) -> None:
    async def check() -> None:
        engine = create_engine(fresh_database, pool_size=1)
        try:
            await check_secret_keys(engine, SecretBox([b"z" * 32]))
        finally:
            await engine.dispose()

    asyncio.run(check())
