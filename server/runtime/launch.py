"""Starting a run: the one place that builds a new run's context (used by execute and by schedules)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from server.domain import evaluate
from server.ids import new_id
from server.store import TenantRepository
from server.store import runs as run_store
from server.store import workflows as workflow_store


async def start_run(repo: TenantRepository, workflow_id: str, input_value: dict[str, Any], input_raw: str) -> Any:
    """A new `running` run of the workflow (404 if it is not the org's); returns the workflow row and the run id."""
    workflow = await workflow_store.get(repo, workflow_id)
    run_id = new_id("run")
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    context = evaluate.new_context(input_value, run_id=run_id, now=now)
    context_raw = json.dumps(context, separators=(",", ":"), ensure_ascii=False)
    await run_store.create(repo, workflow=workflow, input_raw=input_raw, context_raw=context_raw, run_id=run_id)
    return workflow, run_id
