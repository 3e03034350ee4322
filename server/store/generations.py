"""AI workflow generations (`ai_generations`): created by the API, leased and drafted by workers.

A worker claims processing rows whose lease is free or expired (`FOR UPDATE SKIP LOCKED`), renews its lease while
it drafts, and writes each draft and the final status fenced by that lease: a worker that lost the row writes
nothing, and the one that took it over continues from the drafts already recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import NotFound
from server.ids import new_id
from server.store.repository import TenantRepository
from server.store.tables import ai_generations as table

KIND_PREFIX = {"generate": "generation", "create": "ai_process"}


@dataclass(frozen=True)
class Lease:
    owner: str
    org_id: str
    generation_id: str


class LeaseLost(Exception):
    """The generation is no longer this worker's."""


def _lease_until(seconds: float) -> sa.ColumnElement[Any]:
    return sa.func.now() + sa.text(f"interval '{float(seconds)} seconds'")


async def create(repo: TenantRepository, *, kind: str, prompt: str, options: str) -> sa.Row[Any]:
    values = {"id": new_id(KIND_PREFIX[kind]), "kind": kind, "status": "processing", "prompt": prompt}
    return await repo.insert(table, {**values, "options": options})


async def get(repo: TenantRepository, generation_id: str, *, kind: str) -> sa.Row[Any]:
    row = await repo.get(table, id=generation_id, kind=kind)
    if row is None:
        what = "generation" if kind == "generate" else "create-from-ai process"
        raise NotFound(f"{what} {generation_id!r} not found")
    return row


async def claim(connection: AsyncConnection, owner: str, *, lease_seconds: float, limit: int) -> list[sa.Row[Any]]:
    """Processing generations with a free or expired lease, oldest first, now leased to `owner`."""
    candidates = (
        sa.select(table.c.org_id, table.c.id)
        .where(
            table.c.status == "processing",
            sa.or_(table.c.lease_expires_at.is_(None), table.c.lease_expires_at < sa.func.now()),
        )
        .order_by(table.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("candidates")
    )
    statement = (
        sa.update(table)
        .where(table.c.org_id == candidates.c.org_id, table.c.id == candidates.c.id)
        .values(lease_owner=owner, lease_expires_at=_lease_until(lease_seconds))
        .returning(table)
    )
    return list((await connection.execute(statement)).all())


def _fenced(lease: Lease) -> list[sa.ColumnElement[bool]]:
    return [
        table.c.org_id == lease.org_id,
        table.c.id == lease.generation_id,
        table.c.lease_owner == lease.owner,
        table.c.status == "processing",
    ]


async def renew(connection: AsyncConnection, lease: Lease, lease_seconds: float) -> bool:
    result = await connection.execute(
        sa.update(table).where(*_fenced(lease)).values(lease_expires_at=_lease_until(lease_seconds))
    )
    return bool(result.rowcount)


async def record(connection: AsyncConnection, lease: Lease, *, attempts: str, result: str | None) -> None:
    """One more draft (the whole attempts list) and the last parsed result; LeaseLost if no longer ours."""
    statement = (
        sa.update(table).where(*_fenced(lease)).values(attempts=attempts, result=result, updated_at=sa.func.now())
    )
    if not (await connection.execute(statement)).rowcount:
        raise LeaseLost(lease.generation_id)


async def finish(
    connection: AsyncConnection, lease: Lease, *, status: str, error: str | None = None, workflow_id: str | None = None
) -> None:
    statement = (
        sa.update(table)
        .where(*_fenced(lease))
        .values(
            status=status,
            error=error,
            workflow_id=workflow_id,
            lease_owner=None,
            lease_expires_at=None,
            updated_at=sa.func.now(),
            completed_at=sa.func.now(),
        )
    )
    if not (await connection.execute(statement)).rowcount:
        raise LeaseLost(lease.generation_id)
