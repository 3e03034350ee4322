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
from server.store.tables import loop_items, runs


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


async def purge_ended(connection: AsyncConnection) -> int:
    """Drop the journals of runs that have ended: a loop is only ever executed again while its run runs.
    Housekeeping across every org (called periodically by the server), like idempotency.purge_expired."""
    ended = sa.select(runs.c.id).where(
        runs.c.org_id == loop_items.c.org_id, runs.c.id == loop_items.c.run_id, runs.c.status.in_(run_store.FINAL)
    )
    result = await connection.execute(sa.delete(loop_items).where(sa.exists(ended)))
    return int(result.rowcount)
