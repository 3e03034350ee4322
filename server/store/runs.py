"""Runs, their steps and their events.

Two kinds of callers: services, through TenantRepository (one org), and workers, which claim runnable runs of
every org with `FOR UPDATE SKIP LOCKED` and a lease, and fence every write by that lease: a worker whose lease
expired (it was paused, or another worker took the run over) cannot write anything more for the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import Conflict, NotFound
from server.ids import new_id
from server.store import pagination
from server.store.repository import TenantRepository
from server.store.tables import run_events, run_steps, runs

FINAL = ("completed", "failed", "condition_not_met", "cancelled")


async def append_event(connection: AsyncConnection, org_id: str, run_id: str, kind: str, data: dict[str, Any]) -> int:
    """Next event of the run, in the caller's transaction; the caller holds the run row (lock or fenced update),
    so sequence numbers never collide. NOTIFY tells listeners at commit."""
    sequence = (
        await connection.execute(
            sa.select(sa.func.coalesce(sa.func.max(run_events.c.sequence), 0) + 1).where(
                run_events.c.org_id == org_id, run_events.c.run_id == run_id
            )
        )
    ).scalar_one()
    await connection.execute(
        sa.insert(run_events).values(
            org_id=org_id, run_id=run_id, sequence=sequence, type=kind, data=json.dumps(data, separators=(",", ":"))
        )
    )
    await connection.execute(sa.select(sa.func.pg_notify("hyphae_run_events", f"{org_id}\x1f{run_id}\x1f{sequence}")))
    return int(sequence)


# --- services (one org) ----------------------------------------------------------------------------------------


async def create(
    repo: TenantRepository, *, workflow: Any, input_raw: str, context_raw: str, run_id: str | None = None
) -> sa.Row[Any]:
    run_id = run_id or new_id("run")
    row = await repo.insert(
        runs,
        {
            "id": run_id,
            "workflow_id": workflow.id,
            "workflow_name": workflow.name,
            "workflow_version": workflow.version,
            "definition": workflow.definition,
            "status": "running",
            "input": input_raw,
            "context": context_raw,
        },
    )
    await append_event(repo.connection, repo.org_id, run_id, "workflow_run_started", {"workflow_id": workflow.id})
    return row


async def get(repo: TenantRepository, run_id: str) -> sa.Row[Any]:
    row = await repo.get(runs, id=run_id)
    if row is None:
        raise NotFound(f"run {run_id!r} not found")
    return row


async def steps(repo: TenantRepository, run_id: str) -> list[sa.Row[Any]]:
    query = repo.select(run_steps, run_steps.c.run_id == run_id).order_by(run_steps.c.index)
    return list((await repo.connection.execute(query)).all())


async def page(
    repo: TenantRepository, request: pagination.PageRequest, *, workflow_id: str = "", status: str = ""
) -> tuple[list[sa.Row[Any]], str]:
    where = []
    if workflow_id:
        where.append(runs.c.workflow_id == workflow_id)
    if status:
        where.append(runs.c.status == status)
    return await repo.page(runs, request, sort="id", descending=True, where=where)


async def cancel(repo: TenantRepository, run_id: str, reason: str) -> sa.Row[Any]:
    row = (await repo.connection.execute(repo.select(runs, runs.c.id == run_id).with_for_update())).first()
    if row is None:
        raise NotFound(f"run {run_id!r} not found")
    if row.status in FINAL:
        raise Conflict(f"run {run_id!r} already ended ({row.status}); only running or paused runs can be cancelled")
    updated = await repo.update(
        runs,
        {"id": run_id},
        {
            "status": "cancelled",
            "error": reason or "cancelled",
            "lease_owner": None,
            "lease_expires_at": None,
            "completed_at": sa.func.now(),
            "updated_at": sa.func.now(),
        },
    )
    assert updated is not None
    await append_event(repo.connection, repo.org_id, run_id, "workflow_run_cancelled", {"reason": reason})
    return updated


async def status(repo: TenantRepository, run_id: str) -> str:
    """The run's status alone (NOT_FOUND for a run of another org)."""
    value = (
        await repo.connection.execute(repo.select(runs, runs.c.id == run_id).with_only_columns(runs.c.status))
    ).scalar()
    if value is None:
        raise NotFound(f"run {run_id!r} not found")
    return str(value)


async def events(repo: TenantRepository, run_id: str, *, after_sequence: int, limit: int) -> list[sa.Row[Any]]:
    """The run's events after `after_sequence`, in order. Read after `status`: when that status was final, every
    event up to the final one is visible here (the final status and its event commit together)."""
    query = (
        repo.select(run_events, run_events.c.run_id == run_id, run_events.c.sequence > after_sequence)
        .order_by(run_events.c.sequence)
        .limit(limit)
    )
    return list((await repo.connection.execute(query)).all())


async def clock(repo: TenantRepository) -> Any:
    """The database's now() (event timestamps come from that clock)."""
    return (await repo.connection.execute(sa.select(sa.func.now()))).scalar_one()


async def recent_events(
    repo: TenantRepository, *, since: Any, window: timedelta, limit: int
) -> tuple[Any, list[sa.Row[Any]]]:
    """The database's clock and the org's events appended at or after `since` and within `window` of now (oldest
    first): how a live org stream catches up when it may have missed notifications."""
    now = await clock(repo)
    query = (
        repo.select(run_events, run_events.c.created_at >= since, run_events.c.created_at >= now - window)
        .order_by(run_events.c.created_at, run_events.c.run_id, run_events.c.sequence)
        .limit(limit)
    )
    return now, list((await repo.connection.execute(query)).all())


# --- workers (every org, fenced by the lease) ---------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    owner: str
    org_id: str
    run_id: str


async def claim(connection: AsyncConnection, owner: str, *, lease_seconds: float, limit: int) -> list[sa.Row[Any]]:
    """Runnable runs (running, and unleased or with an expired lease), oldest first, now leased to `owner`."""
    candidates = (
        sa.select(runs.c.org_id, runs.c.id)
        .where(
            runs.c.status == "running",
            sa.or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < sa.func.now()),
        )
        .order_by(runs.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("candidates")
    )
    statement = (
        sa.update(runs)
        .where(runs.c.org_id == candidates.c.org_id, runs.c.id == candidates.c.id)
        .values(
            lease_owner=owner, lease_expires_at=sa.func.now() + sa.text(f"interval '{float(lease_seconds)} seconds'")
        )
        .returning(runs)
    )
    return list((await connection.execute(statement)).all())


def _fenced(lease: Lease) -> list[sa.ColumnElement[bool]]:
    return [
        runs.c.org_id == lease.org_id,
        runs.c.id == lease.run_id,
        runs.c.lease_owner == lease.owner,
        runs.c.status == "running",
    ]


async def renew(connection: AsyncConnection, leases: list[Lease], lease_seconds: float) -> set[str]:
    """Extend the leases still held; returns the run ids whose lease is lost (cancelled, or taken over)."""
    lost = set()
    for lease in leases:
        result = await connection.execute(
            sa.update(runs)
            .where(*_fenced(lease))
            .values(lease_expires_at=sa.func.now() + sa.text(f"interval '{float(lease_seconds)} seconds'"))
        )
        if not result.rowcount:
            lost.add(lease.run_id)
    return lost


class LeaseLost(Exception):
    """The run is no longer this worker's: stop executing it, write nothing more."""


async def hold(connection: AsyncConnection, lease: Lease) -> sa.Row[Any]:
    """Lock the run row for this transaction, checking the lease; LeaseLost if it is not ours any more."""
    row = (await connection.execute(sa.select(runs).where(*_fenced(lease)).with_for_update())).first()
    if row is None:
        raise LeaseLost(lease.run_id)
    return row


async def step_row(connection: AsyncConnection, lease: Lease, index: int) -> sa.Row[Any] | None:
    result = await connection.execute(
        sa.select(run_steps).where(
            run_steps.c.org_id == lease.org_id, run_steps.c.run_id == lease.run_id, run_steps.c.index == index
        )
    )
    return result.first()


async def start_step(
    connection: AsyncConnection, lease: Lease, index: int, *, step_type: str, idempotency_key: str
) -> sa.Row[Any]:
    """Record (before any side effect) that the step is starting; an existing row counts one more attempt."""
    statement = insert(run_steps).values(
        org_id=lease.org_id,
        run_id=lease.run_id,
        index=index,
        type=step_type,
        status="running",
        attempts=1,
        idempotency_key=idempotency_key,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["org_id", "run_id", "index"],
        set_={"attempts": run_steps.c.attempts + 1, "status": "running", "type": step_type},
    )
    row: sa.Row[Any] = (await connection.execute(statement.returning(run_steps))).one()
    return row


async def finish_step(
    connection: AsyncConnection,
    lease: Lease,
    index: int,
    *,
    status: str,
    output_key: str,
    output: str | None,
    error: str,
    on_false: bool,
) -> None:
    await connection.execute(
        sa.update(run_steps)
        .where(run_steps.c.org_id == lease.org_id, run_steps.c.run_id == lease.run_id, run_steps.c.index == index)
        .values(
            status=status,
            output_key=output_key,
            output=output,
            error=error,
            on_false=on_false,
            completed_at=sa.func.now(),
        )
    )


async def advance(connection: AsyncConnection, lease: Lease, *, context: str, current_step: int) -> None:
    """Commit the run's context after a step (in the step's transaction)."""
    result = await connection.execute(
        sa.update(runs)
        .where(*_fenced(lease))
        .values(context=context, current_step=current_step, updated_at=sa.func.now())
    )
    if not result.rowcount:
        raise LeaseLost(lease.run_id)


async def finish(
    connection: AsyncConnection, lease: Lease, *, status: str, context: str, output: str | None, error: str
) -> None:
    """A final status (or paused): the lease is released."""
    values: dict[str, Any] = {
        "status": status,
        "context": context,
        "output": output,
        "error": error,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": sa.func.now(),
    }
    if status in FINAL:
        values["completed_at"] = sa.func.now()
    result = await connection.execute(sa.update(runs).where(*_fenced(lease)).values(**values))
    if not result.rowcount:
        raise LeaseLost(lease.run_id)
