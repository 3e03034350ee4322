"""Connections: the async engine (pool) and Alembic migrations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.errors import Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"
# Serialises migrations when several processes start against one database.
MIGRATION_LOCK = 0x4859504845  # "HYPHE"


def sqlalchemy_url(url: str) -> str:
    """postgres:// and postgresql:// URLs -> the psycopg 3 dialect."""
    for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    raise ValueError(f"not a PostgreSQL URL: {url.split('@')[-1]!r} (expected postgresql://...)")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    # hide_parameters: errors and logs never carry bound values (emails, token hashes, sealed secrets).
    # No pre-ping: it costs a round trip (and a counted transaction) per checkout. After a database restart the
    # first use of each stale connection fails (503 / a retried worker step) and the pool replaces it.
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        hide_parameters=True,
    )


def migrate(url: str, revision: str = "heads") -> None:
    """Apply migrations (blocking). Safe to call from several processes at once. `heads`: branches that
    several lines of work opened from one revision all apply (they are relinked into one chain when merged)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    engine = sa.create_engine(sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        connection.execute(sa.select(sa.func.pg_advisory_lock(MIGRATION_LOCK)))
        try:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            connection.commit()
        finally:
            connection.execute(sa.select(sa.func.pg_advisory_unlock(MIGRATION_LOCK)))
            connection.commit()
    engine.dispose()


def ensure_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` if missing; return the URL of that database."""
    engine = sa.create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        exists = connection.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if not exists:
            with contextlib.suppress(sa.exc.ProgrammingError, sa.exc.IntegrityError):  # created concurrently
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return str(sa.engine.make_url(sqlalchemy_url(url)).set(database=name).render_as_string(hide_password=False))


# The transaction of the current unit of work, if any: `connect` joins it instead of opening another one.
_unit_of_work: ContextVar[AsyncConnection | None] = ContextVar("unit_of_work", default=None)


@contextlib.asynccontextmanager
async def connect(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction (or the current unit of work's); a lost database becomes UNAVAILABLE (503)."""
    joined = _unit_of_work.get()
    if joined is not None:
        yield joined
        return
    try:
        async with engine.begin() as connection:
            yield connection
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        if (
            getattr(exc, "connection_invalidated", False)
            or isinstance(exc, sa.exc.InterfaceError)
            or "connection" in str(exc.orig).lower()
        ):
            raise Unavailable("the database is unreachable; retry shortly") from exc
        raise


@contextlib.asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction that every `connect` inside it joins: all of it commits, or none of it does."""
    async with connect(engine) as connection:
        token = _unit_of_work.set(connection)
        try:
            yield connection
        finally:
            _unit_of_work.reset(token)


def in_unit_of_work() -> bool:
    """Whether a unit of work is open (its writes must join it, not commit on their own)."""
    return _unit_of_work.get() is not None


# What a lost database raises, wrapped by `connect` / `DirectPool` or not (a statement on a connection cut mid-use).
_OUTAGE = (
    Unavailable,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
)


async def clock(connection: AsyncConnection) -> datetime:
    """The database's now() (the transaction's start): event timestamps and schedules use that clock."""
    value: datetime = (await connection.execute(sa.select(sa.func.now()))).scalar_one()
    return value


def log_will_retry(logger: logging.Logger, message: str, *args: object) -> None:
    """From the `except` block of a background loop: log a failure the loop will retry. One line when the database
    is unreachable (expected while it restarts; a traceback per loop per tick buries what matters), the traceback
    for anything else."""
    error = sys.exc_info()[1]
    if isinstance(error, _OUTAGE):
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logger.warning(message + " (database unreachable: %s)", *args, cause)
    else:
        logger.warning(message, *args, exc_info=True)


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (readiness)."""
    async with connect(engine) as connection:
        await connection.execute(sa.text("SELECT 1"))


def libpq_url(engine: AsyncEngine) -> str:
    """The engine's database as a libpq URL (without SQLAlchemy's `+psycopg` driver suffix)."""
    return str(engine.url.set(drivername="postgresql").render_as_string(hide_password=False))


DirectConnection = psycopg.AsyncConnection[Any]


class DirectPool:
    """Autocommit psycopg connections for the workers' hot path (claim, start a step, commit a step).

    Each of those writes is ONE statement (data-modifying CTEs), so in autocommit it is its own transaction: one
    round trip, one commit, no BEGIN/COMMIT trips and no SQLAlchemy/greenlet hop; psycopg prepares the statements
    after a few uses. The SQL stays in server/store. A connection that fails with a connection-level error is
    closed, and the idle ones with it (after a database restart they are all stale); the error becomes
    UNAVAILABLE, which the worker retries."""

    def __init__(self, url: str, size: int) -> None:
        self.url = url
        self._idle: list[DirectConnection] = []
        self._slots = asyncio.Semaphore(size)
        self.size = size

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[DirectConnection]:
        async with self._slots:
            try:
                connection = self._idle.pop() if self._idle else await self._connect()
            except (psycopg.OperationalError, psycopg.InterfaceError, OSError) as exc:
                raise Unavailable("the database is unreachable; retry shortly") from exc
            reusable = False
            try:
                yield connection
                reusable = True
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                if connection.broken or connection.closed or isinstance(exc, psycopg.InterfaceError):
                    await self._discard_idle()
                    raise Unavailable("the database is unreachable; retry shortly") from exc
                reusable = True
                raise
            except psycopg.Error:
                reusable = True  # a statement error (e.g. a constraint) leaves an autocommit connection usable
                raise
            finally:
                idle = connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                if reusable and idle and not connection.closed:
                    self._idle.append(connection)
                else:
                    await connection.close()

    async def _connect(self) -> DirectConnection:
        return await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=10, application_name="hyphae-worker"
        )

    async def _discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(psycopg.Error, OSError):
                await connection.close()

    async def close(self) -> None:
        await self._discard_idle()


_direct_pools: dict[int, tuple[AsyncEngine, DirectPool]] = {}


def direct_pool(engine: AsyncEngine) -> DirectPool:
    """The engine's DirectPool (created on first use, as large as the engine's pool); closed by `dispose`."""
    entry = _direct_pools.get(id(engine))
    if entry is None or entry[0] is not engine:
        size = engine.sync_engine.pool.size() if isinstance(engine.sync_engine.pool, sa.pool.QueuePool) else 10
        entry = (engine, DirectPool(libpq_url(engine), size))
        _direct_pools[id(engine)] = entry
    return entry[1]


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's pool and its DirectPool."""
    entry = _direct_pools.pop(id(engine), None)
    if entry is not None and entry[0] is engine:
        await entry[1].close()
    await engine.dispose()
