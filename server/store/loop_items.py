"""The per-item journal of foreach loops: an item's result is committed (fenced by the run's lease) as the item
ends, so a loop step executed again — after a crash, or after an agent inside it paused and was answered — returns
the recorded results of finished items instead of running them again."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import jsonvalue
from server.store import runs as run_store
from server.store.tables import loop_items


async def load(connection: AsyncConnection, lease: run_store.Lease, scope: str) -> dict[int, dict[str, Any]]:
    """The recorded results of the loop's finished items, by position."""
    rows = await connection.execute(
        sa.select(loop_items.c.position, loop_items.c.result).where(
            loop_items.c.org_id == lease.org_id, loop_items.c.run_id == lease.run_id, loop_items.c.scope == scope
        )
    )
    return {row.position: json.loads(row.result) for row in rows}


async def record(
    connection: AsyncConnection, lease: run_store.Lease, scope: str, position: int, result: dict[str, Any]
) -> None:
    """Record a finished item (the caller holds the run: `runs.hold`); a second record of it changes nothing."""
    statement = insert(loop_items).values(
        org_id=lease.org_id,
        run_id=lease.run_id,
        scope=scope,
        position=position,
        status=str(result["status"]),
        result=jsonvalue.dumps(result, default=str),
    )
    await connection.execute(statement.on_conflict_do_nothing())
