"""Agent runs and their journal.

A standalone agent run is a `runs` row (id `agent-<uuid>`, workflow_name "agent") whose definition is one `loop`
step in `mode: "react"`, so workers, leases, crash recovery, events and cancel are the runs' own. Every model and tool
call of a react step is an `agent_steps` row, written before the call and completed after it, fenced by the lease.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server import jsonvalue
from server.errors import Conflict, NotFound
from server.store import pagination
from server.store import runs as run_store
from server.store.repository import TenantRepository
from server.store.tables import agent_steps, interrupts, run_steps, runs, workflows

AGENT_WORKFLOW_NAME = "agent"
AGENT_PREFIX = "agent-"


# --- services (one org) ------------------------------------------------------------------------------------------


async def create(repo: TenantRepository, *, run_id: str, definition: str, input_raw: str, context_raw: str) -> None:
    await repo.insert(
        runs,
        {
            "id": run_id,
            "workflow_id": "",
            "workflow_name": AGENT_WORKFLOW_NAME,
            "workflow_version": 0,
            "definition": definition,
            "status": "running",
            "input": input_raw,
            "context": context_raw,
        },
    )
    await run_store.append_event(repo.connection, repo.org_id, run_id, "agent_run_started", {})


async def get(repo: TenantRepository, run_id: str) -> sa.Row[Any]:
    """A run holding an agent: a standalone one (agent-...) or a workflow run with a react step (Hyphen's T2
    inspects and resumes the paused agent of a workflow run through these routes)."""
    row = await repo.get(runs, id=run_id)
    if row is None:
        raise NotFound(f"agent run {run_id!r} not found")
    return row


async def page(repo: TenantRepository, request: pagination.PageRequest, *, status: str) -> tuple[list[Any], str]:
    where: list[sa.ColumnElement[bool]] = [runs.c.id.startswith(AGENT_PREFIX, autoescape=True)]
    if status:
        where.append(runs.c.status == status)
    return await repo.page(runs, request, sort="id", descending=True, where=where)


async def journals(repo: TenantRepository, run_ids: list[str]) -> dict[str, list[sa.Row[Any]]]:
    """Every journal row of each run (all its react steps), in call order: one query for a page of runs."""
    query = repo.select(agent_steps, agent_steps.c.run_id.in_(run_ids)).order_by(
        agent_steps.c.run_id, agent_steps.c.scope, agent_steps.c.seq
    )
    found: dict[str, list[sa.Row[Any]]] = {run_id: [] for run_id in run_ids}
    for row in (await repo.connection.execute(query)).all():
        found[row.run_id].append(row)
    return found


async def pending_interrupts(repo: TenantRepository, run_ids: list[str]) -> dict[str, dict[str, sa.Row[Any]]]:
    """Each run's pending interrupts by kind (`agent`: a pause for a person; `child_run`: parked on a workflow tool's
    child run, which goes on by itself)."""
    query = repo.select(interrupts, interrupts.c.run_id.in_(run_ids), interrupts.c.status == "pending")
    found: dict[str, dict[str, sa.Row[Any]]] = {run_id: {} for run_id in run_ids}
    for row in (await repo.connection.execute(query)).all():
        found[row.run_id][row.kind] = row
    return found


async def usage(repo: TenantRepository) -> tuple[int, int]:
    """(prompt, completion) tokens of the whole org (one run's come from its journal)."""
    query = repo.select(agent_steps).with_only_columns(
        sa.func.coalesce(sa.func.sum(agent_steps.c.prompt_tokens), 0),
        sa.func.coalesce(sa.func.sum(agent_steps.c.completion_tokens), 0),
    )
    prompt, completion = (await repo.connection.execute(query)).one()
    return int(prompt), int(completion)


async def resume(repo: TenantRepository, run_id: str, human_input: Any) -> int:
    """Answer the run's pending agent pause: the human input becomes the paused call's observation and the run is
    queued again AT THE SAME step (the react step replays its journal and goes on). 404 / 409 otherwise."""
    run = (await repo.connection.execute(repo.select(runs, runs.c.id == run_id).with_for_update())).first()
    if run is None:
        raise NotFound(f"agent run {run_id!r} not found")
    if run.status != "paused":
        raise Conflict(f"run {run_id!r} is {run.status}, not paused; there is nothing to resume")
    pause = (
        await repo.connection.execute(
            repo.select(
                interrupts,
                interrupts.c.run_id == run_id,
                interrupts.c.kind == "agent",
                interrupts.c.status == "pending",
            ).with_for_update()
        )
    ).first()
    if pause is None:
        raise Conflict(f"run {run_id!r} is paused, but not by an agent (answer its approval or form instead)")
    payload = json.loads(pause.payload)
    now = sa.func.now()
    await repo.update(
        agent_steps,
        {"run_id": run_id, "scope": payload["scope"], "seq": payload["seq"]},
        {"response": jsonvalue.dumps({"observation": human_input}, default=str), "success": True, "completed_at": now},
    )
    await repo.update(
        interrupts,
        {"run_id": run_id, "step_index": pause.step_index},
        {
            "status": "answered",
            "answer": jsonvalue.dumps({"human_input": human_input}, default=str),
            "answered_at": now,
        },
    )
    await repo.update(
        run_steps, {"run_id": run_id, "index": pause.step_index}, {"status": "running", "completed_at": None}
    )
    await repo.update(runs, {"id": run_id}, {"status": "running", "current_step": pause.step_index, "updated_at": now})
    await run_store.append_event(
        repo.connection, repo.org_id, run_id, "agent_resumed", {"index": pause.step_index, "seq": payload["seq"]}
    )
    return int(pause.step_index)


async def workflow_by_ref(repo: TenantRepository, ref: str) -> sa.Row[Any] | None:
    """A workflow tool's target: by id, else by name."""
    query = repo.select(workflows, sa.or_(workflows.c.id == ref, workflows.c.name == ref)).order_by(
        (workflows.c.id == ref).desc()
    )
    row: sa.Row[Any] | None = (await repo.connection.execute(query)).first()
    return row


# --- workers (fenced by the caller's lease) -----------------------------------------------------------------------


async def load(connection: AsyncConnection, lease: run_store.Lease, scope: str) -> dict[int, sa.Row[Any]]:
    rows = await connection.execute(
        sa.select(agent_steps).where(
            agent_steps.c.org_id == lease.org_id, agent_steps.c.run_id == lease.run_id, agent_steps.c.scope == scope
        )
    )
    return {row.seq: row for row in rows}


async def begin(
    connection: AsyncConnection,
    lease: run_store.Lease,
    scope: str,
    seq: int,
    *,
    iteration: int,
    kind: str,
    request: Any,
) -> None:
    """Record a call before it is made (the caller holds the run: `runs.hold`)."""
    statement = insert(agent_steps).values(
        org_id=lease.org_id,
        run_id=lease.run_id,
        scope=scope,
        seq=seq,
        iteration=iteration,
        kind=kind,
        request=jsonvalue.dumps(request, default=str),
    )
    await connection.execute(statement.on_conflict_do_nothing())


async def end(
    connection: AsyncConnection,
    lease: run_store.Lease,
    scope: str,
    seq: int,
    *,
    response: Any,
    success: bool,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
) -> None:
    await connection.execute(
        sa.update(agent_steps)
        .where(
            agent_steps.c.org_id == lease.org_id,
            agent_steps.c.run_id == lease.run_id,
            agent_steps.c.scope == scope,
            agent_steps.c.seq == seq,
        )
        .values(
            response=jsonvalue.dumps(response, default=str),
            success=success,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            completed_at=sa.func.now(),
        )
    )
