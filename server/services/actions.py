"""ActionService: registered actions and the built-in catalogue."""

from __future__ import annotations

from typing import Any

from hyphae.actions.v1 import action_pb2, action_service_pb2_grpc
from hyphae.actions.v1 import action_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth
from server.domain import actions as domain
from server.domain import builtin_actions
from server.services import Context, timestamp
from server.store import actions as store
from server.store import pagination, tenant


def to_proto(row: Any) -> action_pb2.Action:
    action = action_pb2.Action.FromString(row.spec)
    action.id = row.id
    action.created_at.CopyFrom(timestamp(row.created_at))
    action.updated_at.CopyFrom(timestamp(row.updated_at))
    return action


def _spec(action: action_pb2.Action) -> bytes:
    """What is stored: the validated action without the server-owned fields."""
    domain.validate(action)
    spec = action_pb2.Action()
    spec.CopyFrom(action)
    for field in ("id", "created_at", "updated_at"):
        spec.ClearField(field)
    return spec.SerializeToString(deterministic=True)


class ActionService(action_service_pb2_grpc.ActionServiceServicer):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def CreateAction(self, request: pb.CreateActionRequest, context: Context) -> pb.CreateActionResponse:
        spec = _spec(request.action)
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.create(
                repo, action_name=request.action.action_name, kind=domain.KIND_NAMES[request.action.kind], spec=spec
            )
        return pb.CreateActionResponse(action=to_proto(row))

    async def ListActions(self, request: pb.ListActionsRequest, context: Context) -> pb.ListActionsResponse:
        kind = domain.KIND_NAMES.get(request.kind, "")
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters={"kind": kind},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, kind=kind)
        return pb.ListActionsResponse(actions=[to_proto(row) for row in rows], next_page_token=token)

    async def GetAction(self, request: pb.GetActionRequest, context: Context) -> pb.GetActionResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.id)
        return pb.GetActionResponse(action=to_proto(row))

    async def UpdateAction(self, request: pb.UpdateActionRequest, context: Context) -> pb.UpdateActionResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.get(repo, request.id)  # another org's id is 404 before any 400
            spec = _spec(request.action)
            row = await store.update(
                repo,
                request.id,
                action_name=request.action.action_name,
                kind=domain.KIND_NAMES[request.action.kind],
                spec=spec,
            )
        return pb.UpdateActionResponse(action=to_proto(row))

    async def ListBuiltinActions(
        self, request: pb.ListBuiltinActionsRequest, context: Context
    ) -> pb.ListBuiltinActionsResponse:
        return pb.ListBuiltinActionsResponse(
            actions=[
                action_pb2.BuiltinAction(
                    name=a.name,
                    provider=a.provider,
                    description=a.description,
                    required_properties=a.required,
                    optional_properties=a.optional,
                )
                for a in builtin_actions.CATALOGUE
            ]
        )
