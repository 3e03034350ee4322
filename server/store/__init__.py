"""Storage: the only package with SQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.db import connect
from server.store.repository import TenantRepository

__all__ = ["TenantRepository", "tenant"]


@contextlib.asynccontextmanager
async def tenant(engine: AsyncEngine, org_id: str) -> AsyncIterator[TenantRepository]:
    """One transaction scoped to one org."""
    async with connect(engine) as connection:
        yield TenantRepository(connection, org_id)
