"""Assembles the gRPC side of a process: the database (embedded or external) and the gRPC server (services,
interceptor, health, reflection). `cli/process.py` puts the REST gateway next to it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from hyphae.actions.v1 import action_service_pb2, action_service_pb2_grpc
from hyphae.agents.v1 import agent_service_pb2, agent_service_pb2_grpc
from hyphae.ai.v1 import ai_service_pb2, ai_service_pb2_grpc
from hyphae.approvals.v1 import approval_service_pb2, approval_service_pb2_grpc
from hyphae.documents.v1 import document_service_pb2, document_service_pb2_grpc
from hyphae.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
from hyphae.orgs.v1 import org_config_service_pb2, org_config_service_pb2_grpc
from hyphae.runs.v1 import run_service_pb2, run_service_pb2_grpc
from hyphae.system.v1 import system_service_pb2, system_service_pb2_grpc
from hyphae.tables.v1 import table_service_pb2, table_service_pb2_grpc
from hyphae.workflows.v1 import workflow_service_pb2, workflow_service_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from server import blobstore
from server.auth import Authenticator
from server.config import Settings
from server.crypto import SecretBox
from server.domain.knowledge import Embedder
from server.embedded_pg import EmbeddedPostgres
from server.interceptors import Gatekeeper
from server.ratelimit import RateLimiter
from server.runtime import outbound
from server.runtime.events import EventHub
from server.runtime.executor import Executor, LlmDefaults
from server.runtime.generation import Generator, running_generator
from server.runtime.indexer import Indexer, running_indexer
from server.runtime.worker import Worker, running_worker
from server.services.actions import ActionService
from server.services.agents import AgentService
from server.services.ai import AiService
from server.services.approvals import ApprovalService
from server.services.custom_tables import TableService
from server.services.documents import DocumentService, expire_due
from server.services.gateway import GatewayService
from server.services.org_config import OrgConfigService
from server.services.runs import RunService
from server.services.system import SystemService
from server.services.workflows import WorkflowService
from server.store import custom_tables as custom_table_store
from server.store import idempotency, loop_items
from server.store import knowledge as knowledge_store
from server.store import org_config as org_config_store
from server.store.db import connect, create_engine, dispose, ensure_database, libpq_url, log_will_retry

log = logging.getLogger("hyphae")
SERVICES = [
    s.DESCRIPTOR.services_by_name[name].full_name
    for s, name in (
        (system_service_pb2, "SystemService"),
        (workflow_service_pb2, "WorkflowService"),
        (action_service_pb2, "ActionService"),
        (org_config_service_pb2, "OrgConfigService"),
        (gateway_service_pb2, "GatewayService"),
        (run_service_pb2, "RunService"),
        (approval_service_pb2, "ApprovalService"),
        (document_service_pb2, "DocumentService"),
        (table_service_pb2, "TableService"),
        (ai_service_pb2, "AiService"),
        (agent_service_pb2, "AgentService"),
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


async def build_grpc_server(
    engine: AsyncEngine,
    settings: Settings,
    box: SecretBox,
    address: str,
    worker: Worker,
    wake_generator: Callable[[], None] = lambda: None,
    indexer: Indexer | None = None,
    *,
    blobs: blobstore.BlobStore,
) -> tuple[grpc.aio.Server, int]:
    authenticator = Authenticator(engine, trust_org_header=settings.trust_org_header)
    events = EventHub(libpq_url(engine))  # one LISTEN connection per process, for every live stream
    limiter = RateLimiter(settings.rate_limit_per_minute)
    anonymous_limiter = RateLimiter(settings.anonymous_rate_limit_per_minute)
    server = grpc.aio.server(
        interceptors=[
            Gatekeeper(
                authenticator,
                limiter,
                engine,
                anonymous_limiter=anonymous_limiter,
                request_hash_key=box.derive(b"idempotency"),
                trusted_proxies=settings.trusted_proxies,
            )
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share the traffic
        ],
    )
    system_service_pb2_grpc.add_SystemServiceServicer_to_server(SystemService(engine), server)
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowService(engine), server)
    action_service_pb2_grpc.add_ActionServiceServicer_to_server(ActionService(engine), server)
    org_config_service_pb2_grpc.add_OrgConfigServiceServicer_to_server(OrgConfigService(engine, box), server)
    gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(GatewayService(engine, authenticator), server)
    run_service_pb2_grpc.add_RunServiceServicer_to_server(RunService(engine, events, worker), server)
    approval_service_pb2_grpc.add_ApprovalServiceServicer_to_server(ApprovalService(engine, worker.wake), server)
    document_service_pb2_grpc.add_DocumentServiceServicer_to_server(
        DocumentService(
            engine,
            blobs,
            max_bytes=settings.max_document_bytes,
            policy=outbound.OutboundPolicy(allow=settings.outbound_allow),
            on_version_stored=indexer.on_version_stored if indexer is not None else None,
            embedder=indexer.embedder if indexer is not None else None,
        ),
        server,
    )
    table_service_pb2_grpc.add_TableServiceServicer_to_server(TableService(engine), server)
    ai_service_pb2_grpc.add_AiServiceServicer_to_server(AiService(engine, wake_generator), server)
    agent_service_pb2_grpc.add_AgentServiceServicer_to_server(AgentService(engine, events, worker.wake), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection([*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc raises this (newer releases) or returns 0 (older ones) for a busy port
        port = 0
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}: is another server using that port? set HYPHAE_GRPC_PORT")
    for name in [*SERVICES, ""]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return server, port


async def check_secret_keys(engine: AsyncEngine, box: SecretBox) -> None:
    """Refuse to start when the database holds secrets sealed with a key this process does not have (another
    server generated its own key file, or HYPHAE_SECRET_KEY differs between servers)."""
    async with connect(engine) as connection:
        unknown = await org_config_store.sealing_key_ids(connection) - box.key_ids
    if unknown:
        raise ValueError(
            f"org config in this database is sealed with key id(s) {', '.join(sorted(unknown))}, which this server "
            "does not have: give every server the same HYPHAE_SECRET_KEY (base64 keys, comma-separated, current first)"
        )


async def housekeeping(engine: AsyncEngine, every_seconds: float = 600.0) -> None:
    """Stored Idempotency-Key answers expire, and the journals that only a running run reads (table-step results,
    loop items) go once their run has ended; every process purges now and then (the DELETEs are idempotent)."""
    while True:
        try:
            async with connect(engine) as connection:
                await idempotency.purge_expired(connection)
            async with connect(engine) as connection:
                await custom_table_store.purge_step_results(connection)
                await loop_items.purge_ended(connection)
        except Exception:
            log_will_retry(log, "could not purge expired idempotency keys and ended runs' journals; will retry")
        await asyncio.sleep(every_seconds)


async def expire_documents(engine: AsyncEngine, blobs: blobstore.BlobStore, every_seconds: float = 60.0) -> None:
    """Documents past their ttl_days are deleted (with their blobs once unused) by every serving process."""
    while True:
        try:
            await expire_due(engine, blobs)
        except Exception:
            log_will_retry(log, "could not expire documents; will retry")
        await asyncio.sleep(every_seconds)


async def knowledge_embedder(engine: AsyncEngine, settings: Settings) -> Embedder | None:
    """Once at start-up: the embedder for knowledge indexing and search, or None (full text + trigrams)."""
    embedder = await knowledge_store.prepare_embeddings(engine, settings.embedding_model)
    if embedder is not None:
        log.info("knowledge search: full text + trigrams + embeddings (%s)", settings.embedding_model)
    elif settings.embedding_model:
        log.info(
            "knowledge search: full text + trigrams only (embedding model %r unavailable)", settings.embedding_model
        )
    else:
        log.info("knowledge search: full text + trigrams only (HYPHAE_EMBEDDING_MODEL not set)")
    return embedder


@dataclass(frozen=True)
class GrpcServing:
    engine: AsyncEngine
    port: int


@contextlib.asynccontextmanager
async def worker_running(
    settings: Settings,
    engine: AsyncEngine,
    box: SecretBox,
    blobs: blobstore.BlobStore,
    embedder: Embedder | None = None,
) -> AsyncIterator[Worker]:
    """This process's worker (started only when settings.workers > 0), and next to it the scheduler."""
    from server.runtime.scheduler import Scheduler, running_scheduler

    policy = outbound.OutboundPolicy(allow=settings.outbound_allow)
    async with outbound.new_client() as client:
        worker = Worker(
            engine,
            Executor(
                engine,
                box,
                policy,
                client,
                LlmDefaults(settings.llm_base_url, settings.llm_api_key, settings.llm_model),
                blobs=blobs,
                embedder=embedder,
            ),
            concurrency=max(settings.workers, 1),
            lease_seconds=settings.lease_seconds,
        )
        if settings.workers <= 0:
            yield worker
            return
        # Every worker process also fires due schedules; the schedulers coordinate through Postgres.
        async with running_worker(worker), running_scheduler(Scheduler(engine, worker.wake)):
            yield worker


@contextlib.asynccontextmanager
async def generator_running(settings: Settings, engine: AsyncEngine, box: SecretBox) -> AsyncIterator[Generator]:
    """This process's AI workflow generator (drafting only when settings.workers > 0, like the worker)."""
    policy = outbound.OutboundPolicy(allow=settings.outbound_allow)
    async with outbound.new_client() as client:
        generator = Generator(
            engine,
            box,
            policy,
            client,
            LlmDefaults(settings.llm_base_url, settings.llm_api_key, settings.llm_model),
            lease_seconds=settings.lease_seconds,
        )
        if settings.workers <= 0:
            yield generator
            return
        async with running_generator(generator):
            yield generator


@contextlib.asynccontextmanager
async def grpc_running(settings: Settings, database_url: str) -> AsyncIterator[GrpcServing]:
    """The gRPC server (and this process's worker) up on settings.host:settings.grpc_port; stopped on exit."""
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    try:
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        await check_secret_keys(engine, box)
        embedder = await knowledge_embedder(engine, settings)
        # one blob store per process: the worker's steps, the document service, the indexer and document expiry
        blobs = blobstore.from_settings(settings.blob_url, settings.data_dir)
        async with (
            worker_running(settings, engine, box, blobs, embedder) as worker,
            generator_running(settings, engine, box) as generator,
            # every serving process indexes uploaded documents (a durable queue in Postgres: runtime/indexer.py)
            running_indexer(Indexer(engine, blobs, embedder)) as indexer,
        ):
            grpc_server, port = await build_grpc_server(
                engine,
                settings,
                box,
                f"{settings.host}:{settings.grpc_port}",
                worker,
                generator.wake,
                indexer,
                blobs=blobs,
            )
            await grpc_server.start()
            purging = asyncio.create_task(housekeeping(engine))
            expiry = asyncio.create_task(expire_documents(engine, blobs))
            try:
                yield GrpcServing(engine, port)
            finally:
                purging.cancel()
                expiry.cancel()
                await grpc_server.stop(grace=5)
    finally:
        await dispose(engine)


@contextlib.asynccontextmanager
async def worker_only(settings: Settings, database_url: str) -> AsyncIterator[Worker]:
    """A process that only executes runs (`hyphae worker`)."""
    engine = create_engine(database_url, pool_size=settings.db_pool_size)
    try:
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        await check_secret_keys(engine, box)
        busy = replace(settings, workers=max(settings.workers, 1))
        embedder = await knowledge_embedder(engine, settings)
        blobs = blobstore.from_settings(settings.blob_url, settings.data_dir)
        async with worker_running(busy, engine, box, blobs, embedder) as worker, generator_running(busy, engine, box):
            yield worker
    finally:
        await dispose(engine)
