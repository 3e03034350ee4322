"""Shared fixtures: a real Postgres (the machine's via HYPHAE_TEST_DATABASE_URL, else embedded), and a real
server — gRPC and the REST gateway on loopback ports — running in a background thread."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cli.process import Running, running
from server import blobstore
from server.blobstore import LocalBlobStore
from server.config import Settings
from server.embedded_pg import EmbeddedPostgres
from server.store.db import migrate, sqlalchemy_url

TEST_SECRET_KEY = base64.b64encode(b"k" * 32).decode()


def _admin(url: str) -> sa.Engine:
    return sa.create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)


def _database_url(server_url: str, name: str) -> str:
    return str(sa.engine.make_url(sqlalchemy_url(server_url)).set(database=name).render_as_string(False))


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a Postgres server where tests may create databases."""
    external = os.environ.get("HYPHAE_TEST_DATABASE_URL")
    if external:
        yield external
        return
    # Under /tmp so an unprivileged postgres user (when tests run as root) can traverse to it; kept between runs.
    root = Path(tempfile.gettempdir()) / f"hyphae-test-pg-{os.getuid()}"
    root.mkdir(mode=0o755, exist_ok=True)
    root.chmod(0o755)
    server = EmbeddedPostgres(root / "data")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    """A migrated database that per-test databases are copied from (CREATE DATABASE ... TEMPLATE)."""
    name = f"hyphae_tpl_{os.getpid()}"
    admin = _admin(postgres_server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    migrate(_database_url(postgres_server_url, name))
    try:
        yield name
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def create_database(server_url: str, template: str) -> tuple[str, str]:
    name = f"hyphae_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    return name, _database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    admin = _admin(server_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def fresh_database(postgres_server_url: str, template_database: str) -> Iterator[str]:
    """A database of this test's own, already migrated."""
    name, url = create_database(postgres_server_url, template_database)
    try:
        yield url
    finally:
        drop_database(postgres_server_url, name)


@dataclass(frozen=True)
class ServerInfo:
    http_url: str
    grpc_target: str
    database_url: str
    settings: Settings


@contextlib.contextmanager
def run_server(settings: Settings, database_url: str) -> Iterator[ServerInfo]:
    """The real app (gRPC + gateway) on free loopback ports, in a thread with its own event loop."""
    ready = threading.Event()
    started: list[Running] = []
    failures: list[BaseException] = []
    loops: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        try:
            async with running(settings, database_url) as up:
                started.append(up)
                loops.append(asyncio.get_running_loop())
                ready.set()
                await up.stop.wait()
        except BaseException as exc:
            failures.append(exc)
            ready.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    ready.wait(60)
    if failures or not started:
        raise RuntimeError("test server failed to start") from (failures[0] if failures else None)
    up = started[0]
    try:
        yield ServerInfo(f"http://127.0.0.1:{up.http_port}", f"127.0.0.1:{up.grpc_port}", database_url, settings)
    finally:
        loops[0].call_soon_threadsafe(up.stop.set)
        thread.join(30)


def make_settings(tmp_dir: Path, **overrides: object) -> Settings:
    base = Settings(
        database_url="external",
        data_dir=tmp_dir,
        host="127.0.0.1",
        http_port=0,
        grpc_port=0,
        trust_org_header=True,
        rate_limit_per_minute=1_000_000,
        anonymous_rate_limit_per_minute=1_000_000,
        max_body_bytes=4 * 1024 * 1024,
        secret_key=TEST_SECRET_KEY,
        db_pool_size=5,
        workers=2,
        lease_seconds=5.0,
        outbound_allow=("127.0.0.1", "localhost"),
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_database(postgres_server_url: str, template_database: str) -> Iterator[str]:
    name, url = create_database(postgres_server_url, template_database)
    try:
        yield url
    finally:
        drop_database(postgres_server_url, name)


def local_blobs(server: ServerInfo) -> LocalBlobStore:
    """The server's blob store on disk (the tests' servers keep their documents in a local folder)."""
    store = blobstore.from_settings(server.settings.blob_url, server.settings.data_dir)
    assert isinstance(store, LocalBlobStore)
    return store


@pytest.fixture(scope="session")
def session_blobs(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The blob store of the session's servers. They share one database, so either one's workers may run the
    other's runs and must find its documents: like any servers on one database, they share one blob store."""
    return tmp_path_factory.mktemp("blobs").as_uri()


@pytest.fixture(scope="session")
def server(session_database: str, session_blobs: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """Direct engine mode (X-Org-Id trusted), no practical rate limit."""
    settings = make_settings(tmp_path_factory.mktemp("server"), blob_url=session_blobs)
    with run_server(settings, session_database) as info:
        yield info


@pytest.fixture(scope="session")
def strict_server(
    session_database: str, session_blobs: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerInfo]:
    """Gateway mode: API keys required (X-Org-Id not trusted), 30 requests per minute per key."""
    settings = make_settings(
        tmp_path_factory.mktemp("strict"), trust_org_header=False, rate_limit_per_minute=30, blob_url=session_blobs
    )
    with run_server(settings, session_database) as info:
        yield info


@pytest.fixture
def org() -> str:
    """A fresh org id: tests share one database and stay apart through tenancy."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def api(server: ServerInfo, org: str) -> Iterator[httpx.Client]:
    """REST client acting for `org` in direct engine mode."""
    with httpx.Client(base_url=server.http_url, headers={"X-Org-Id": org}, timeout=30) as client:
        yield client


@pytest.fixture
def anonymous(server: ServerInfo) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=30) as client:
        yield client
