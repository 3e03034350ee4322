"""One process: the gRPC server and the REST gateway on one event loop, the gateway calling the services over a
loopback gRPC channel."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace

import uvicorn

from gateway.app import GatewayApp, create_app
from server.app import database, grpc_running, worker_only
from server.config import Settings
from server.store.db import migrate


class HttpServer(uvicorn.Server):
    """uvicorn serving the gateway: when it begins to shut down, open event streams end (SSE clients resume with
    Last-Event-ID) instead of holding the shutdown for the grace period and being cancelled mid-response."""

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.app.end_streams()
        await super().shutdown(sockets=sockets)


class QuietServer(HttpServer):
    """Without uvicorn's own signal handling: `serve` owns SIGINT/SIGTERM and stops gRPC and HTTP together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Running:
    grpc_port: int
    http_port: int
    stop: asyncio.Event


def bind_http(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so a busy port is one clear error instead of a traceback from uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen for HTTP on {host}:{port} ({exc.strerror}); set HYPHAE_HTTP_PORT") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def running(settings: Settings, database_url: str) -> AsyncIterator[Running]:
    """gRPC and REST up (ports may be 0 = any free port); both stopped on exit."""
    sock = bind_http(settings.host, settings.http_port)
    try:
        async with grpc_running(settings, database_url) as grpc_side:
            target_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
            app = create_app(f"{target_host}:{grpc_side.port}", max_body_bytes=settings.max_body_bytes)
            # open streams (SSE) end when shutdown begins; anything else still running is cut after 2 s
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="on",
                proxy_headers=False,
                timeout_graceful_shutdown=2,
            )
            http = QuietServer(config, app)
            serving = asyncio.create_task(http.serve(sockets=[sock]))
            while not http.started:
                if serving.done():
                    serving.result()
                    raise OSError("the HTTP server stopped while starting")
                await asyncio.sleep(0.02)
            try:
                yield Running(grpc_side.port, sock.getsockname()[1], asyncio.Event())
            finally:
                http.should_exit = True
                await serving
    finally:
        sock.close()


async def serve(settings: Settings, *, demo: bool = False, scenarios: str = "") -> None:
    """`hyphae serve`: run until SIGINT/SIGTERM, then stop cleanly (the embedded Postgres too). With `demo`, the
    scripted fake model runs in-process on a loopback port and is the server's default model."""
    async with contextlib.AsyncExitStack() as stack:
        if demo:
            from server.fakemodel import FakeModelServer

            # record=False: a long-running demo must not keep every request in memory
            model = await stack.enter_async_context(FakeModelServer(scenarios or None, record=False).running())
            settings = replace(
                settings,
                llm_base_url=model.base_url,
                llm_api_key=model.scenarios.api_key or "demo",
                llm_model=model.scenarios.models[0],
                outbound_allow=(*settings.outbound_allow, model.host),
            )
            print(
                f"Demo model (scripted, no API key): {model.base_url} answers llm steps and agents of every org "
                f"without its own settings:llm_base_url; {model.host} is allowed for outbound calls",
                flush=True,
            )
        await _serve(settings)


async def _serve(settings: Settings) -> None:
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


async def work(settings: Settings) -> None:
    """`hyphae worker`: execute runs until SIGINT/SIGTERM (in-flight runs resume elsewhere after their lease)."""
    with database(settings) as url:
        await asyncio.to_thread(migrate, url)
        async with worker_only(settings, url) as worker:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            print(f"Hyphae worker {worker.owner}: {worker.concurrency} runs at a time (Ctrl-C stops)", flush=True)
            await stop.wait()
            print("stopping...", flush=True)


async def fake_model(host: str, port: int, scenarios: str) -> None:
    """`hyphae fake-model`: the scripted model alone, until SIGINT/SIGTERM."""
    from server.fakemodel import FakeModelServer

    async with FakeModelServer(scenarios or None, host=host, port=port, record=False).running() as model:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"Hyphae fake model: {model.base_url} (OpenAI-compatible, any Bearer key; Ctrl-C stops)", flush=True)
        await stop.wait()
