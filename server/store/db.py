"""Connections: the async engine (pool) and Alembic migrations."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from pathlib import Path

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


async def ping(engine: AsyncEngine) -> None:
    """One round trip to the database (readiness)."""
    async with connect(engine) as connection:
        await connection.execute(sa.text("SELECT 1"))


def in_unit_of_work() -> bool:
    """Whether the caller's writes commit only when its unit of work (an idempotent POST) ends."""
    return _unit_of_work.get() is not None
