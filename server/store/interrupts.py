"""Interrupts: a run paused at a step until a person answers (approvals, forms, agent pauses), or until a child run
ends (`child_run`: a react step's workflow tool parked its run rather than hold a worker slot)."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import jsonvalue
from server.errors import Conflict, NotFound
from server.store import pagination
from server.store import runs as run_store
from server.store.repository import TenantRepository
from server.store.tables import interrupts, run_steps, runs


async def open_interrupt(
    connection: AsyncConnection,
    lease: run_store.Lease,
    *,
    index: int,
    kind: str,
    payload: dict[str, Any],
    ttl_seconds: float | None,
) -> None:
    """Record the pause (in the executor's fenced transaction); a step paused again (after a crash) is reopened."""
    expires = sa.func.now() + sa.text(f"interval '{float(ttl_seconds)} seconds'") if ttl_seconds else None
    statement = insert(interrupts).values(
        org_id=lease.org_id,
        run_id=lease.run_id,
        step_index=index,
        kind=kind,
        status="pending",
        payload=jsonvalue.dumps(payload, default=str),
        expires_at=expires,
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=["org_id", "run_id", "step_index"],
            set_={
                "status": "pending",
                "kind": statement.excluded.kind,
                "payload": statement.excluded.payload,
                "answer": None,
                "answered_at": None,
            },
            # an agent may pause (or park on a child run) at the same step again after an answer: each pause is its
            # own journal row, and a foreach's items pause one after another
            where=sa.or_(interrupts.c.status == "pending", interrupts.c.kind.in_(("agent", "child_run"))),
        )
    )


# An interrupt's run (same org: the repository filters the interrupts, the join keeps their runs).
_RUN = sa.and_(runs.c.org_id == interrupts.c.org_id, runs.c.id == interrupts.c.run_id)


async def pending(repo: TenantRepository, kind: str, run_id: str = "") -> list[sa.Row[Any]]:
    """Pending interrupts of paused runs, oldest first, with their run's workflow id."""
    query = (
        repo.select(interrupts, interrupts.c.kind == kind, interrupts.c.status == "pending", runs.c.status == "paused")
        .add_columns(runs.c.workflow_id)
        .join(runs, _RUN)
        .order_by(interrupts.c.created_at)
    )
    if run_id:
        query = query.where(interrupts.c.run_id == run_id)
    return list((await repo.connection.execute(query)).all())


# A unique, time-ordered text key for keyset paging: created_at (fixed width, UTC), then run and step.
_CURSOR = sa.func.concat(
    sa.func.to_char(sa.func.timezone("UTC", interrupts.c.created_at), "YYYYMMDDHH24MISSUS"),
    "|",
    interrupts.c.run_id,
    "|",
    sa.func.lpad(sa.cast(interrupts.c.step_index, sa.Text), 6, "0"),
)


async def page(
    repo: TenantRepository, request: pagination.PageRequest, *, status: str, kind: str, run_id: str
) -> tuple[list[sa.Row[Any]], str]:
    """Interrupts of every kind, oldest first; a pending one only while its run is paused (a cancelled run's pause
    is not answerable any more)."""
    query = (
        repo.select(interrupts, interrupts.c.status == status)
        .add_columns(runs.c.workflow_id, _CURSOR.label("cursor"))
        .join(runs, _RUN)
    )
    if status == "pending":
        query = query.where(runs.c.status == "paused")
    if kind:
        query = query.where(interrupts.c.kind == kind)
    if run_id:
        query = query.where(interrupts.c.run_id == run_id)
    rows = list((await repo.connection.execute(pagination.apply(query, _CURSOR, request, descending=False))).all())
    return pagination.next_token(rows, request, "cursor")


async def take(repo: TenantRepository, run_id: str, index: int, kind: str) -> tuple[sa.Row[Any], sa.Row[Any]]:
    """The run (locked) and its pending interrupt at `index`, or the reason it cannot be answered: 404 / 409."""
    run = (await repo.connection.execute(repo.select(runs, runs.c.id == run_id).with_for_update())).first()
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    # past_due: the deadline on the database's clock, read in the same statement
    query = repo.select(interrupts, interrupts.c.run_id == run_id, interrupts.c.step_index == index)
    query = query.add_columns((sa.func.now() > interrupts.c.expires_at).label("past_due")).with_for_update()
    row = (await repo.connection.execute(query)).first()
    noun = "an approval" if kind == "approval" else "a form"
    if row is None or row.kind != kind:
        raise Conflict(f"run {run_id!r} is not waiting for {noun} at step {index}")
    if row.status == "answered":
        raise Conflict(f"step {index} of run {run_id!r} was already answered at {row.answered_at.isoformat()}")
    if row.status == "expired" or row.past_due:  # NULL (no deadline) is not past due
        raise Conflict(
            f"step {index} of run {run_id!r} expired at {row.expires_at.isoformat()}; it can no longer be answered"
        )
    if run.status != "paused":
        raise Conflict(f"run {run_id!r} is {run.status}, not paused; step {index} can no longer be answered")
    return run, row


async def resume(
    repo: TenantRepository,
    run: sa.Row[Any],
    index: int,
    *,
    answer: dict[str, Any],
    step_output: Any,
    context_updates: dict[str, Any],
    event: str,
) -> None:
    """Answer the interrupt, complete the step, merge into the context and queue the run from the next step."""
    now = sa.func.now()
    await repo.update(
        interrupts,
        {"run_id": run.id, "step_index": index},
        {"status": "answered", "answer": jsonvalue.dumps(answer, default=str), "answered_at": now},
    )
    await repo.update(
        run_steps,
        {"run_id": run.id, "index": index},
        {"status": "completed", "output": jsonvalue.dumps(step_output, default=str), "completed_at": now},
    )
    context = {**json.loads(run.context), **context_updates}
    await repo.update(
        runs,
        {"id": run.id},
        {
            "status": "running",
            "context": jsonvalue.dumps(context, default=str),
            "current_step": index + 1,
            "updated_at": now,
        },
    )
    await run_store.append_event(repo.connection, repo.org_id, run.id, event, {"index": index, **answer})


async def expire_due(connection: AsyncConnection, limit: int = 100) -> int:
    """Fail the runs whose form (or approval) expired unanswered: a timeout error. Safe in several workers."""
    due = (
        await connection.execute(
            sa.select(interrupts)
            .where(interrupts.c.status == "pending", interrupts.c.expires_at < sa.func.now())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for row in due:
        message = f"{row.kind} at step {row.step_index} expired unanswered at {row.expires_at.isoformat()} (timeout)"
        keys = {"org_id": row.org_id, "run_id": row.run_id}
        await connection.execute(
            sa.update(interrupts)
            .where(*(interrupts.c[k] == v for k, v in keys.items()), interrupts.c.step_index == row.step_index)
            .values(status="expired")
        )
        await connection.execute(
            sa.update(run_steps)
            .where(*(run_steps.c[k] == v for k, v in keys.items()), run_steps.c.index == row.step_index)
            .values(status="failed", error=message, completed_at=sa.func.now())
        )
        updated = await connection.execute(
            sa.update(runs)
            .where(runs.c.org_id == row.org_id, runs.c.id == row.run_id, runs.c.status == "paused")
            .values(status="failed", error=message, completed_at=sa.func.now(), updated_at=sa.func.now())
        )
        if updated.rowcount:
            await run_store.append_event(connection, row.org_id, row.run_id, "workflow_run_failed", {"error": message})
    return len(due)


async def wake_parents(connection: AsyncConnection, limit: int = 100) -> int:
    """Queue again the runs parked on a child run (kind child_run) whose child has ended, AT the parked step (the
    react step replays its journal and reads the child's result). Safe in several workers."""
    child = runs.alias("child")
    child_id = sa.cast(interrupts.c.payload, JSONB)["child_run_id"].astext
    due = (
        await connection.execute(
            sa.select(interrupts.c.org_id, interrupts.c.run_id, interrupts.c.step_index, child.c.id, child.c.status)
            .join(child, sa.and_(child.c.org_id == interrupts.c.org_id, child.c.id == child_id))
            .where(
                interrupts.c.kind == "child_run",
                interrupts.c.status == "pending",
                child.c.status.in_(run_store.FINAL),
            )
            .limit(limit)
            .with_for_update(of=interrupts, skip_locked=True)
        )
    ).all()
    for row in due:
        keys = [interrupts.c.org_id == row.org_id, interrupts.c.run_id == row.run_id]
        now = sa.func.now()
        await connection.execute(
            sa.update(interrupts)
            .where(*keys, interrupts.c.step_index == row.step_index)
            .values(
                status="answered",
                answer=jsonvalue.dumps({"child_run_id": row.id, "status": row.status}, default=str),
                answered_at=now,
            )
        )
        queued = await connection.execute(
            sa.update(runs)
            .where(runs.c.org_id == row.org_id, runs.c.id == row.run_id, runs.c.status == "paused")
            .values(status="running", current_step=row.step_index, updated_at=now)
        )
        if queued.rowcount:  # (a run cancelled meanwhile stays cancelled)
            await connection.execute(
                sa.update(run_steps)
                .where(
                    run_steps.c.org_id == row.org_id,
                    run_steps.c.run_id == row.run_id,
                    run_steps.c.index == row.step_index,
                )
                .values(status="running", completed_at=None)
            )
            data = {"index": row.step_index, "child_run_id": row.id, "child_status": row.status}
            await run_store.append_event(connection, row.org_id, row.run_id, "child_run_finished", data)
    return len(due)
