"""Schedules: the `schedules` row of each scheduled workflow (see server/domain/schedule.py for the semantics).

Services keep the row in sync with the workflow's definition through TenantRepository (one org); the scheduler
(server/runtime/scheduler.py) takes due rows of every org with `FOR UPDATE SKIP LOCKED`, so several processes
never fire one tick twice. A row is deleted with its workflow (ON DELETE CASCADE).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.repository import TenantRepository
from server.store.tables import runs, schedules

BLOCKING = ("running", "paused")
"""While the schedule's last run is in one of these statuses, its next tick waits (runs do not overlap)."""


# --- services (one org) ----------------------------------------------------------------------------------------


async def get(repo: TenantRepository, workflow_id: str) -> sa.Row[Any] | None:
    return await repo.get(schedules, workflow_id=workflow_id)


async def put(repo: TenantRepository, workflow_id: str, *, spec: str, anchor: datetime, next_due_at: datetime) -> None:
    """Create the row, or replace its spec, anchor and next tick when the spec changed; an unchanged spec keeps its
    anchor and next tick (a tick already due and waiting stays due). `last_run_id` is kept: a new schedule does not
    overlap the run the old one started either."""
    statement = insert(schedules).values(
        org_id=repo.org_id, workflow_id=workflow_id, spec=spec, anchor=anchor, next_due_at=next_due_at
    )
    statement = statement.on_conflict_do_update(
        index_elements=["org_id", "workflow_id"],
        set_={
            "spec": statement.excluded.spec,
            "anchor": statement.excluded.anchor,
            "next_due_at": statement.excluded.next_due_at,
            "updated_at": sa.func.now(),
        },
        where=schedules.c.spec.is_distinct_from(statement.excluded.spec),
    )
    await repo.connection.execute(statement)


async def remove(repo: TenantRepository, workflow_id: str) -> None:
    await repo.delete(schedules, workflow_id=workflow_id)


# --- the scheduler (every org) ----------------------------------------------------------------------------------


async def take_due(connection: AsyncConnection, *, limit: int) -> list[sa.Row[Any]]:
    """Due schedules whose last run has ended (or that have none), most overdue first, locked for this transaction;
    rows another scheduler holds are skipped."""
    running = sa.exists().where(
        runs.c.org_id == schedules.c.org_id, runs.c.id == schedules.c.last_run_id, runs.c.status.in_(BLOCKING)
    )
    query = (
        sa.select(schedules)
        .where(schedules.c.next_due_at <= sa.func.now(), ~running)
        .order_by(schedules.c.next_due_at)
        .limit(limit)
        .with_for_update(of=schedules, skip_locked=True)
    )
    return list((await connection.execute(query)).all())


async def fired(
    connection: AsyncConnection, org_id: str, workflow_id: str, *, run_id: str | None, next_due_at: datetime
) -> None:
    """Record the tick: the run it started (None: none, the tick is skipped) and when the next one is due."""
    values: dict[str, Any] = {"next_due_at": next_due_at, "updated_at": sa.func.now()}
    if run_id is not None:
        values["last_run_id"] = run_id
    await TenantRepository(connection, org_id).update(schedules, {"workflow_id": workflow_id}, values)
