"""RunService: execute a workflow, read and list runs, cancel one. Workers (server/runtime) do the executing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hyphae.api.v1 import json_pb2
from hyphae.runs.v1 import run_pb2, run_service_pb2_grpc
from hyphae.runs.v1 import run_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import evaluate
from server.errors import InvalidArgument
from server.ids import new_id
from server.services import Context, timestamp
from server.store import pagination, tenant
from server.store import runs as store
from server.store import workflows as workflow_store

RUN_STATUS = {
    "running": run_pb2.RUN_STATUS_RUNNING,
    "paused": run_pb2.RUN_STATUS_PAUSED,
    "completed": run_pb2.RUN_STATUS_COMPLETED,
    "failed": run_pb2.RUN_STATUS_FAILED,
    "condition_not_met": run_pb2.RUN_STATUS_CONDITION_NOT_MET,
    "cancelled": run_pb2.RUN_STATUS_CANCELLED,
}
RUN_STATUS_NAMES = {number: name for name, number in RUN_STATUS.items()}
STEP_STATUS = {
    "running": run_pb2.STEP_STATUS_RUNNING,
    "completed": run_pb2.STEP_STATUS_COMPLETED,
    "skipped": run_pb2.STEP_STATUS_SKIPPED,
    "failed": run_pb2.STEP_STATUS_FAILED,
    "paused": run_pb2.STEP_STATUS_PAUSED,
}


def _json(raw: str | None) -> json_pb2.Json | None:
    return json_pb2.Json(raw=raw) if raw is not None else None


def step_proto(row: Any) -> run_pb2.RunStep:
    duration = 0
    if row.completed_at is not None:
        duration = int((row.completed_at - row.started_at).total_seconds() * 1000)
    return run_pb2.RunStep(
        index=row.index,
        type=row.type,
        status=STEP_STATUS[row.status],
        output_key=row.output_key,
        output=_json(row.output),
        error=row.error,
        attempts=row.attempts,
        on_false=row.on_false,
        started_at=timestamp(row.started_at),
        completed_at=timestamp(row.completed_at),
        duration_ms=duration,
    )


def run_proto(row: Any, steps: list[Any] | None = None) -> run_pb2.Run:
    """A run; its context and steps only when `steps` is given (a single run read, not a listing)."""
    run = run_pb2.Run(
        run_id=row.id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=RUN_STATUS[row.status],
        input=json_pb2.Json(raw=row.input),
        output=_json(row.output),
        error=row.error,
        current_step=row.current_step,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        completed_at=timestamp(row.completed_at),
    )
    if steps is not None:
        run.context.raw = row.context
        run.steps.extend(step_proto(step) for step in steps)
    return run


class RunService(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self, engine: AsyncEngine, wake_workers: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.wake_workers = wake_workers

    async def ExecuteWorkflow(self, request: pb.ExecuteWorkflowRequest, context: Context) -> pb.ExecuteWorkflowResponse:
        value = jsonvalue.parse(request.input, "input")
        if not isinstance(value, dict):
            raise InvalidArgument('must be a JSON object: the body is {"input": {...}}', field="input")
        run_id = new_id("run")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        run_context = evaluate.new_context(value, run_id=run_id, now=now)
        context_raw = json.dumps(run_context, separators=(",", ":"), ensure_ascii=False)
        async with tenant(self.engine, auth.org_id()) as repo:
            workflow = await workflow_store.get(repo, request.workflow_id)
            await store.create(
                repo, workflow=workflow, input_raw=request.input.raw, context_raw=context_raw, run_id=run_id
            )
        self.wake_workers()
        return pb.ExecuteWorkflowResponse(run_id=run_id, status=run_pb2.RUN_STATUS_RUNNING, workflow_id=workflow.id)

    async def GetRunStatus(self, request: pb.GetRunStatusRequest, context: Context) -> pb.GetRunStatusResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.run_id)
            steps = await store.steps(repo, request.run_id)
        return pb.GetRunStatusResponse(run=run_proto(row, steps))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        status = RUN_STATUS_NAMES.get(request.status, "")
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters={"workflow_id": request.workflow_id, "status": status},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, workflow_id=request.workflow_id, status=status)
        return pb.ListRunsResponse(runs=[run_proto(row) for row in rows], next_page_token=token)

    async def CancelRun(self, request: pb.CancelRunRequest, context: Context) -> pb.CancelRunResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.cancel(repo, request.run_id, request.reason)
            steps = await store.steps(repo, request.run_id)
        return pb.CancelRunResponse(run=run_proto(row, steps))
