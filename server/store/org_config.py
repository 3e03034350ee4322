"""Encrypted org configuration entries."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.crypto import Sealed
from server.errors import NotFound
from server.store import pagination
from server.store.repository import TenantRepository
from server.store.tables import org_config


async def put(repo: TenantRepository, key: str, sealed: Sealed) -> sa.Row[Any]:
    values = {"key_id": sealed.key_id, "nonce": sealed.nonce, "ciphertext": sealed.ciphertext}
    return await repo.upsert(org_config, {"key": key, **values}, ["key"], {**values, "updated_at": sa.func.now()})


async def delete(repo: TenantRepository, key: str) -> None:
    if not await repo.delete(org_config, key=key):
        raise NotFound(f"org config key {key!r} not found")


async def page(repo: TenantRepository, request: pagination.PageRequest) -> tuple[list[sa.Row[Any]], str]:
    return await repo.page(org_config, request, sort="key", descending=False)


async def sealing_key_ids(connection: AsyncConnection) -> set[str]:
    """Ids of the keys that sealed any org's config: a start-up check across tenants, never served to a caller."""
    result = await connection.execute(sa.select(org_config.c.key_id).distinct())
    return {row.key_id for row in result}
