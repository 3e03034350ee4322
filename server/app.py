"""Assembles the process: database, gRPC server (services + interceptor + health + reflection) and the
REST gateway on one event loop. The gateway reaches the services over a loopback gRPC channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import grpc
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from hyphae.actions.v1 import action_service_pb2, action_service_pb2_grpc
from hyphae.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from hyphae.orgs.v1 import org_config_service_pb2, org_config_service_pb2_grpc
from hyphae.system.v1 import system_service_pb2, system_service_pb2_grpc
from hyphae.workflows.v1 import workflow_service_pb2, workflow_service_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.app import create_app
from server.auth import Authenticator
from server.config import Settings
from server.crypto import SecretBox
from server.embedded_pg import EmbeddedPostgres
from server.interceptors import Gatekeeper
from server.ratelimit import RateLimiter
from server.services.actions import ActionService
from server.services.gateway import GatewayService
from server.services.org_config import OrgConfigService
from server.services.system import SystemService
from server.services.workflows import WorkflowService
from server.store.db import create_engine, ensure_database, migrate

log = logging.getLogger("hyphae")
SERVICES = [
    s.DESCRIPTOR.services_by_name[name].full_name
    for s, name in (
        (system_service_pb2, "SystemService"),
        (workflow_service_pb2, "WorkflowService"),
        (action_service_pb2, "ActionService"),
        (org_config_service_pb2, "OrgConfigService"),
        (gateway_service_pb2, "GatewayService"),
    )
]
MAX_MESSAGE = 64 * 1024 * 1024


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[str]:
    """The database URL: external, or the embedded server (started here, stopped on exit)."""
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir / "pgdata")
    url = server.start()
    try:
        yield ensure_database(url, "hyphae")
    finally:
        server.stop()


async def build_grpc_server(engine: AsyncEngine, settings: Settings, address: str) -> tuple[grpc.aio.Server, int]:
    authenticator = Authenticator(engine, trust_org_header=settings.trust_org_header)
    limiter = RateLimiter(settings.rate_limit_per_minute)
    server = grpc.aio.server(
        interceptors=[Gatekeeper(authenticator, limiter, engine)],
        options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.max_send_message_length", MAX_MESSAGE)],
    )
    box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(SystemService(engine), server)
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowService(engine), server)
    action_service_pb2_grpc.add_ActionServiceServicer_to_server(ActionService(engine), server)
    org_config_service_pb2_grpc.add_OrgConfigServiceServicer_to_server(OrgConfigService(engine, box), server)
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayService(engine, authenticator), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}: is another server using that port?")
    for name in [*SERVICES, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns SIGINT/SIGTERM and stops gRPC and HTTP together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    grpc_port: int
    http_port: int
    stop: asyncio.Event


@contextlib.asynccontextmanager
async def running(settings: Settings, database_url: str) -> AsyncIterator[Running]:
    """Everything up (ports may be 0 = any free port); torn down on exit."""
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    grpc_server, grpc_port = await build_grpc_server(engine, settings, f"{settings.host}:{settings.grpc_port}")
    await grpc_server.start()
    app = create_app(
        f"127.0.0.1:{grpc_port}" if settings.host in ("0.0.0.0", "::") else f"{settings.host}:{grpc_port}",
        max_body_bytes=settings.max_body_bytes,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.http_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )
    http = QuietServer(config)
    serving = asyncio.create_task(http.serve())
    while not http.started:
        if serving.done():
            serving.result()
            raise OSError(f"cannot listen for HTTP on {settings.host}:{settings.http_port}")
        await asyncio.sleep(0.02)
    http_port = http.servers[0].sockets[0].getsockname()[1]
    stop = asyncio.Event()
    try:
        yield Running(grpc_port, http_port, stop)
    finally:
        http.should_exit = True
        await serving
        await grpc_server.stop(grace=5)
        await engine.dispose()


async def serve(settings: Settings) -> None:
    """`hyphae serve`: run until SIGINT/SIGTERM, then stop cleanly (the embedded Postgres too)."""
    with database(settings) as url:
        await asyncio.to_thread(migrate, url)
        async with running(settings, url) as up:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, up.stop.set)
            mode = "embedded Postgres" if settings.embedded else "external Postgres"
            trust = "X-Org-Id accepted without a key" if settings.trust_org_header else "API keys required"
            print(
                f"Hyphae {mode}: REST http://{settings.host}:{up.http_port}  gRPC {settings.host}:{up.grpc_port}"
                f"  ({trust}; Ctrl-C stops)",
                flush=True,
            )
            await up.stop.wait()
            print("stopping...", flush=True)
