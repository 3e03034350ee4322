"""GET /health and GET /health/ready."""

from __future__ import annotations

from hyphae.system.v1 import system_service_pb2 as pb
from hyphae.system.v1 import system_service_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from server import __version__
from server.errors import Unavailable
from server.services import Context
from server.store.db import ping


class SystemService(system_service_pb2_grpc.SystemServiceServicer):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def GetHealth(self, request: pb.GetHealthRequest, context: Context) -> pb.GetHealthResponse:
        return pb.GetHealthResponse(status="ok", version=__version__)

    async def GetReadiness(self, request: pb.GetReadinessRequest, context: Context) -> pb.GetReadinessResponse:
        try:
            await ping(self.engine)
        except Exception as exc:
            raise Unavailable(f"postgres is not reachable: {type(exc).__name__}") from None
        return pb.GetReadinessResponse(status="ready", checks={"postgres": "ok"})
