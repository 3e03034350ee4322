"""WorkflowService: Hyphen workflow definitions.

A definition with a `schedule` has a `schedules` row (server/domain/schedule.py, server/runtime/scheduler.py) kept
in sync here, in the same transaction: create/update with a schedule upserts it (a new or changed schedule is
anchored at now and its next tick computed from now; an unchanged one keeps its anchor and next tick), without one
deletes it; deleting the workflow deletes it (ON DELETE CASCADE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hyphae.api.v1 import json_pb2
from hyphae.workflows.v1 import workflow_pb2, workflow_service_pb2_grpc
from hyphae.workflows.v1 import workflow_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import builtin_actions, dsl, schedule
from server.errors import InvalidArgument
from server.services import Context, timestamp
from server.store import TenantRepository, pagination, tenant
from server.store import actions as action_store
from server.store import schedules as schedule_store
from server.store import workflows as store
from server.store.db import clock


def to_proto(row: Any) -> workflow_pb2.Workflow:
    return workflow_pb2.Workflow(
        id=row.id,
        name=row.name,
        description=row.description,
        definition=json_pb2.Json(raw=row.definition),
        version=row.version,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


async def validated_definition(
    repo: TenantRepository, workflow: workflow_pb2.Workflow
) -> tuple[str, Mapping[str, Any] | None]:
    """The definition text and its schedule (if any), after the DSL validator accepted it; errors name the path."""
    if not workflow.name.strip() or len(workflow.name) > 200:
        raise InvalidArgument("must be 1-200 characters", field="workflow.name")
    definition = jsonvalue.parse(workflow.definition, "workflow.definition")
    registered = await action_store.names(repo)
    try:
        dsl.validate_definition(definition, step_types=registered | builtin_actions.NAMES, allow_react=True)
        spec = definition.get("schedule")
        if spec is not None:
            schedule.parse(spec)  # cron values in range, a cron that can fire
    except dsl.DefinitionError as exc:
        raise InvalidArgument(exc.message, field=f"workflow.{exc.path}") from None
    return workflow.definition.raw, spec


async def sync_schedule(repo: TenantRepository, workflow_id: str, spec: Mapping[str, Any] | None) -> None:
    """The workflow's `schedules` row after a create or update (see the module docstring)."""
    if spec is None:
        await schedule_store.remove(repo, workflow_id)
        return
    now = await clock(repo.connection)
    due = schedule.next_due(spec, now, anchor=now)
    await schedule_store.put(repo, workflow_id, spec=schedule.canonical(spec), anchor=now, next_due_at=due)


class WorkflowService(workflow_service_pb2_grpc.WorkflowServiceServicer):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def CreateWorkflow(self, request: pb.CreateWorkflowRequest, context: Context) -> pb.CreateWorkflowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            definition, spec = await validated_definition(repo, request.workflow)
            row = await store.create(
                repo, name=request.workflow.name, description=request.workflow.description, definition=definition
            )
            if spec is not None:
                await sync_schedule(repo, row.id, spec)
        return pb.CreateWorkflowResponse(workflow=to_proto(row))

    async def ListWorkflows(self, request: pb.ListWorkflowsRequest, context: Context) -> pb.ListWorkflowsResponse:
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters={"name": request.name},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, name=request.name)
        return pb.ListWorkflowsResponse(workflows=[to_proto(row) for row in rows], next_page_token=token)

    async def GetWorkflow(self, request: pb.GetWorkflowRequest, context: Context) -> pb.GetWorkflowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.id)
        return pb.GetWorkflowResponse(workflow=to_proto(row))

    async def UpdateWorkflow(self, request: pb.UpdateWorkflowRequest, context: Context) -> pb.UpdateWorkflowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.get(repo, request.id)  # 404 before 400 for another org's id
            definition, spec = await validated_definition(repo, request.workflow)
            row = await store.update(
                repo,
                request.id,
                name=request.workflow.name,
                description=request.workflow.description,
                definition=definition,
            )
            await sync_schedule(repo, row.id, spec)
        return pb.UpdateWorkflowResponse(workflow=to_proto(row))

    async def DeleteWorkflow(self, request: pb.DeleteWorkflowRequest, context: Context) -> pb.DeleteWorkflowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.delete(repo, request.id)
        return pb.DeleteWorkflowResponse(id=request.id, deleted=True)
