"""Publishable (pk_live_) keys are refused outside /sdk/* routes (none of the runtime routes are)."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from server.services.gateway import create_key
from server.store import TenantRepository, accounts
from server.store.db import connect, create_engine
from tests.conftest import ServerInfo


async def make_publishable_key(database_url: str, org_id: str) -> str:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with connect(engine) as connection:
            await accounts.create_org(connection, org_id=org_id, name="pk test", account_id=None)
            key = await create_key(
                TenantRepository(connection, org_id), label="browser", permissions="read_only", kind="publishable"
            )
    finally:
        await engine.dispose()
    return key.key


def test_publishable_key_is_refused_on_runtime_routes(strict_server: ServerInfo) -> None:
    key = asyncio.run(make_publishable_key(strict_server.database_url, f"pk-{uuid.uuid4().hex[:8]}"))
    assert key.startswith("pk_live_")
    response = httpx.get(f"{strict_server.http_url}/workflows", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
    assert "/sdk/" in response.json()["message"]
