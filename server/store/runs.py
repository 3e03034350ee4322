"""Runs, their steps and their events.

Two kinds of callers: services, through TenantRepository (one org), and workers, which claim runnable runs of
every org with `FOR UPDATE SKIP LOCKED` and a lease, and fence every write by that lease: a worker whose lease
expired (it was paused, or another worker took the run over) cannot write anything more for the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.rows import namedtuple_row
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import jsonvalue
from server.errors import Conflict, NotFound
from server.ids import new_id
from server.store import pagination
from server.store.db import clock
from server.store.repository import TenantRepository
from server.store.tables import run_events, run_steps, runs

FINAL = ("completed", "failed", "condition_not_met", "cancelled")


_APPEND_EVENT = sa.text(
    """
    WITH event AS (
        INSERT INTO run_events (org_id, run_id, sequence, type, data)
        SELECT :org, :run, coalesce(max(sequence), 0) + 1, :type, :data
        FROM run_events WHERE org_id = :org AND run_id = :run
        RETURNING sequence
    )
    SELECT sequence, pg_notify('hyphae_run_events', :org || chr(31) || :run || chr(31) || sequence) FROM event
    """
)


async def append_event(connection: AsyncConnection, org_id: str, run_id: str, kind: str, data: dict[str, Any]) -> int:
    """Next event of the run, in the caller's transaction (one statement); the caller holds the run row (lock or
    fenced update, in an earlier statement), so sequence numbers never collide. NOTIFY tells listeners at commit."""
    result = await connection.execute(
        _APPEND_EVENT,
        {"org": org_id, "run": run_id, "type": kind, "data": jsonvalue.dumps(data)},
    )
    return int(result.one().sequence)


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


async def status(repo: TenantRepository, run_id: str) -> str:
    """The run's status alone (NOT_FOUND for a run of another org)."""
    value = (
        await repo.connection.execute(repo.select(runs, runs.c.id == run_id).with_only_columns(runs.c.status))
    ).scalar()
    if value is None:
        raise NotFound(f"run {run_id!r} not found")
    return str(value)


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


async def events(repo: TenantRepository, run_id: str, *, after_sequence: int, limit: int) -> list[sa.Row[Any]]:
    """The run's events after `after_sequence`, in order."""
    query = (
        repo.select(run_events, run_events.c.run_id == run_id, run_events.c.sequence > after_sequence)
        .order_by(run_events.c.sequence)
        .limit(limit)
    )
    return list((await repo.connection.execute(query)).all())


async def recent_events(
    repo: TenantRepository, *, since: Any, window: timedelta, limit: int
) -> tuple[Any, list[sa.Row[Any]]]:
    """The database's clock and the org's events appended at or after `since` and within `window` of now (oldest
    first): how a live org stream catches up when it may have missed notifications."""
    now = await clock(repo.connection)
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


async def finish(
    connection: AsyncConnection,
    lease: Lease,
    *,
    status: str,
    context: str,
    output: str | None,
    error: str,
    current_step: int | None = None,
) -> None:
    """A final status (or paused, parked at `current_step`): the lease is released."""
    values: dict[str, Any] = {
        "status": status,
        "context": context,
        "output": output,
        "error": error,
        "lease_owner": None,
        "lease_expires_at": None,
        "updated_at": sa.func.now(),
    }
    if current_step is not None:
        values["current_step"] = current_step
    if status in FINAL:
        values["completed_at"] = sa.func.now()
    result = await connection.execute(sa.update(runs).where(*_fenced(lease)).values(**values))
    if not result.rowcount:
        raise LeaseLost(lease.run_id)


# --- the workers' hot path: one statement per transaction, on a DirectPool connection (autocommit) ---------------
#
# Each write below is a single statement, so it commits on its own; it is fenced by the lease like the writes
# above (an UPDATE/SELECT ... FOR UPDATE of the run row with `lease_owner = owner AND status = 'running'`, which
# every other statement joins, so nothing is written when the lease is lost). Event sequence numbers are computed
# in the statement from max(sequence): the statement holds the run row lock, and every other transaction that
# appends an event for a running run changes the fenced columns (cancel, expiry, an answered interrupt) or is
# this same worker's previous statement, so if such a transaction commits while this one waits for the lock, the
# fence re-check finds no row and nothing is inserted.

_CLAIM = """
WITH candidates AS (
    SELECT org_id, id FROM runs
    WHERE status = 'running'
      AND (lease_expires_at IS NULL OR lease_expires_at < now() OR (lease_owner = %(owner)s AND id = ANY(%(mine)s)))
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE runs SET lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease)s)
FROM candidates
WHERE runs.org_id = candidates.org_id AND runs.id = candidates.id
RETURNING runs.*
"""

_FENCE = "org_id = %(org)s AND id = %(run)s AND lease_owner = %(owner)s AND status = 'running'"

_START_STEP = f"""
WITH run AS (SELECT org_id, id FROM runs WHERE {_FENCE} FOR UPDATE)
INSERT INTO run_steps AS s (org_id, run_id, index, type, status, attempts, idempotency_key)
SELECT org_id, id, %(index)s, %(type)s, 'running', 1, %(key)s FROM run
ON CONFLICT (org_id, run_id, index)
DO UPDATE SET attempts = s.attempts + 1, status = 'running', type = EXCLUDED.type
RETURNING s.attempts
"""

_RUN_ADVANCE = f"""
UPDATE runs SET context = %(context)s, current_step = %(current_step)s, updated_at = now()
WHERE {_FENCE} RETURNING org_id, id
"""

_RUN_FINISH = f"""
UPDATE runs SET status = %(status)s, context = %(context)s, output = %(output)s, error = %(error)s,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = now(),
    completed_at = CASE WHEN %(status)s IN ({", ".join(f"'{s}'" for s in FINAL)}) THEN now() ELSE completed_at END
WHERE {_FENCE} RETURNING org_id, id
"""

# The step's row: made here for a step that did not start one (no side effect), else its attempt is on record.
_STEP = """
, step AS (
    INSERT INTO run_steps AS s
        (org_id, run_id, index, type, status, attempts, idempotency_key, output_key, output, error, on_false,
         completed_at)
    SELECT org_id, id, %(index)s, %(type)s, %(step_status)s, 1, %(key)s, %(output_key)s, %(step_output)s,
        %(step_error)s, %(on_false)s, now()
    FROM run
    ON CONFLICT (org_id, run_id, index) DO UPDATE SET
        attempts = s.attempts + CASE WHEN %(started)s THEN 0 ELSE 1 END, type = EXCLUDED.type,
        status = EXCLUDED.status, output_key = EXCLUDED.output_key, output = EXCLUDED.output,
        error = EXCLUDED.error, on_false = EXCLUDED.on_false, completed_at = EXCLUDED.completed_at
)"""

_EVENTS = """
, events AS (
    INSERT INTO run_events (org_id, run_id, sequence, type, data)
    SELECT run.org_id, run.id, last.sequence + e.n, e.type, e.data
    FROM run,
        (SELECT coalesce(max(sequence), 0) AS sequence FROM run_events WHERE org_id = %(org)s AND run_id = %(run)s)
            AS last,
        unnest(%(event_types)s::text[], %(event_data)s::text[]) WITH ORDINALITY AS e(type, data, n)
    RETURNING sequence
)
SELECT count(*) FROM (
    SELECT pg_notify('hyphae_run_events', %(org)s || chr(31) || %(run)s || chr(31) || sequence)
    FROM events ORDER BY sequence
) AS notified
"""

_COMMITS = {
    (finish, with_step): f"WITH run AS ({_RUN_FINISH if finish else _RUN_ADVANCE}){_STEP if with_step else ''}{_EVENTS}"
    for finish in (False, True)
    for with_step in (False, True)
}


@dataclass(frozen=True)
class StepResult:
    """A step's row as it is committed (see `commit`)."""

    index: int
    step_type: str
    status: str
    output_key: str
    output: str | None
    error: str
    on_false: bool
    started: bool  # its row was written (with its idempotency key) before a side effect


async def claim(
    connection: psycopg.AsyncConnection[Any], owner: str, *, lease_seconds: float, limit: int, mine: list[str]
) -> list[Any]:
    """Runnable runs (running, and unleased or with an expired lease), oldest first, now leased to `owner`; also
    `mine`, runs this owner still leases but stopped executing (the database failed under them), without waiting
    for their lease to expire."""
    async with connection.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_CLAIM, {"owner": owner, "mine": mine, "limit": limit, "lease": float(lease_seconds)})
        return await cursor.fetchall()


async def start_step_direct(
    connection: psycopg.AsyncConnection[Any], lease: Lease, index: int, *, step_type: str, idempotency_key: str
) -> int:
    """Record, before any side effect, that the step is starting (lease checked); returns its attempt number."""
    cursor = await connection.execute(
        _START_STEP,
        {
            "org": lease.org_id,
            "run": lease.run_id,
            "owner": lease.owner,
            "index": index,
            "type": step_type,
            "key": idempotency_key,
        },
    )
    row = await cursor.fetchone()
    if row is None:
        raise LeaseLost(lease.run_id)
    return int(row[0])


async def commit(
    connection: psycopg.AsyncConnection[Any],
    lease: Lease,
    *,
    context: str,
    events: list[tuple[str, dict[str, Any]]],
    step: StepResult | None = None,
    current_step: int | None = None,
    status: str = "",
    output: str | None = None,
    error: str = "",
) -> None:
    """One transaction, one statement: the step's result (when given), the run's context and either its next step
    (`current_step`) or its final status (`status`, which releases the lease), and its events (NOTIFYed)."""
    finish = bool(status)
    if finish == (current_step is not None):
        raise ValueError("commit takes either current_step (advance) or status (finish)")
    params: dict[str, Any] = {
        "org": lease.org_id,
        "run": lease.run_id,
        "owner": lease.owner,
        "context": context,
        "current_step": current_step,
        "status": status,
        "output": output,
        "error": error,
        "event_types": [kind for kind, _ in events],
        "event_data": [jsonvalue.dumps(data) for _, data in events],
    }
    if step is not None:
        params.update(
            index=step.index,
            type=step.step_type,
            key=f"{lease.run_id}:{step.index}",
            step_status=step.status,
            output_key=step.output_key,
            step_output=step.output,
            step_error=step.error,
            on_false=step.on_false,
            started=step.started,
        )
    cursor = await connection.execute(_COMMITS[(finish, step is not None)], params)
    row = await cursor.fetchone()
    if row is None or not row[0]:
        raise LeaseLost(lease.run_id)


# --- the API's hot path, outside any unit of work: one statement each, on a DirectPool connection -----------------
# Both name the org explicitly, like the worker statements (TenantRepository needs a SQLAlchemy connection).

_CREATE = """
WITH run AS (
    INSERT INTO runs (org_id, id, workflow_id, workflow_name, workflow_version, definition, status, input, context,
        lease_owner, lease_expires_at)
    SELECT org_id, %(run)s, id, name, version, definition, 'running', %(input)s, %(context)s, %(owner)s::text,
        CASE WHEN %(owner)s::text IS NULL THEN NULL ELSE now() + make_interval(secs => %(lease)s) END
    FROM workflows WHERE org_id = %(org)s AND id = %(workflow)s
    RETURNING *
), event AS (
    INSERT INTO run_events (org_id, run_id, sequence, type, data)
    SELECT org_id, id, 1, 'workflow_run_started', %(data)s FROM run
    RETURNING sequence
)
SELECT * FROM run
WHERE (SELECT count(pg_notify('hyphae_run_events', %(org)s || chr(31) || %(run)s || chr(31) || sequence)) FROM event)
    = 1
"""


async def create_direct(
    connection: psycopg.AsyncConnection[Any],
    org_id: str,
    workflow_id: str,
    *,
    run_id: str,
    input_raw: str,
    context_raw: str,
    lease_owner: str | None = None,
    lease_seconds: float = 0.0,
) -> Any:
    """Like `create` for a workflow read in the same statement (its own transaction); NotFound if it is not the
    org's. With `lease_owner` the run is inserted already leased to that worker (which then runs it without a
    claim). Returns the run's row."""
    params = {
        "org": org_id,
        "workflow": workflow_id,
        "run": run_id,
        "input": input_raw,
        "context": context_raw,
        "data": jsonvalue.dumps({"workflow_id": workflow_id}),
        "owner": lease_owner,
        "lease": float(lease_seconds),
    }
    async with connection.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_CREATE, params)
        row = await cursor.fetchone()
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} not found")
    return row


_STATUS_AND_EVENTS = """
SELECT r.status, e.run_id, e.sequence, e.type, e.data, e.created_at
FROM runs AS r
LEFT JOIN LATERAL (
    SELECT run_id, sequence, type, data, created_at FROM run_events
    WHERE org_id = r.org_id AND run_id = r.id AND sequence > %(after)s
    ORDER BY sequence LIMIT %(limit)s
) AS e ON true
WHERE r.org_id = %(org)s AND r.id = %(run)s
ORDER BY e.sequence
"""


async def status_and_events(
    connection: psycopg.AsyncConnection[Any], org_id: str, run_id: str, *, after_sequence: int, limit: int
) -> tuple[str, list[Any]]:
    """The run's status and its events after `after_sequence`, in order, in one statement (one snapshot: when the
    status is final, the final event is among the events); NotFound for a run of another org."""
    params = {"org": org_id, "run": run_id, "after": after_sequence, "limit": limit}
    async with connection.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(_STATUS_AND_EVENTS, params)
        rows: list[Any] = await cursor.fetchall()
    if not rows:
        raise NotFound(f"run {run_id!r} not found")
    return str(rows[0].status), [row for row in rows if row.sequence is not None]
