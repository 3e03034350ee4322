"""Starting a run: the one place that builds a new run's context (used by execute and by schedules)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server import jsonvalue
from server.domain import evaluate
from server.ids import new_id
from server.store import TenantRepository
from server.store import runs as run_store
from server.store import workflows as workflow_store
from server.store.db import direct_pool


def _new_run(input_value: dict[str, Any]) -> tuple[str, str]:
    """A new run's id and its initial context (as JSON)."""
    run_id = new_id("run")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    context = evaluate.new_context(input_value, run_id=run_id, now=now)
    return run_id, jsonvalue.dumps(context)


async def start_run(repo: TenantRepository, workflow_id: str, input_value: dict[str, Any], input_raw: str) -> Any:
    """A new `running` run of the workflow (404 if it is not the org's); returns the workflow row and the run id."""
    workflow = await workflow_store.get(repo, workflow_id)
    run_id, context_raw = _new_run(input_value)
    await run_store.create(repo, workflow=workflow, input_raw=input_raw, context_raw=context_raw, run_id=run_id)
    return workflow, run_id


async def start_run_direct(
    engine: AsyncEngine,
    org_id: str,
    workflow_id: str,
    input_value: dict[str, Any],
    input_raw: str,
    *,
    lease_owner: str | None = None,
    lease_seconds: float = 0.0,
) -> Any:
    """`start_run` as one statement in its own transaction (the execute API's hot path, outside a unit of work):
    the same run and first event, leased to `lease_owner` when given; returns the run's row."""
    run_id, context_raw = _new_run(input_value)
    async with direct_pool(engine).connection() as connection:
        return await run_store.create_direct(
            connection,
            org_id,
            workflow_id,
            run_id=run_id,
            input_raw=input_raw,
            context_raw=context_raw,
            lease_owner=lease_owner,
            lease_seconds=lease_seconds,
        )
