"""Stored answers of calls made with an Idempotency-Key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store.tables import idempotency_keys

LOCK_NOT_AVAILABLE = "55P03"
# A claim left without an answer (written by an older server that did not claim atomically) is taken over after.
ABANDONED_AFTER = timedelta(minutes=2)
# How long answers are kept.
RETENTION = timedelta(hours=24)


@dataclass(frozen=True)
class Claim:
    fresh: bool  # this call owns the key and must run
    method: str = ""
    request_hash: str = ""
    response: bytes | None = None  # the stored answer, when the first call finished


async def claim(connection: AsyncConnection, scope: str, key: str, method: str, request_hash: str) -> Claim:
    table = idempotency_keys
    stale = sa.or_(
        table.c.created_at < sa.func.now() - RETENTION,
        sa.and_(table.c.response.is_(None), table.c.created_at < sa.func.now() - ABANDONED_AFTER),
    )
    statement = insert(table).values(scope=scope, key=key, method=method, request_hash=request_hash)
    statement = statement.on_conflict_do_update(
        index_elements=["scope", "key"],
        set_={"method": method, "request_hash": request_hash, "response": None, "created_at": sa.func.now()},
        where=stale,
    )
    for _ in range(3):
        inserted = (await connection.execute(statement.returning(table.c.key))).first()
        if inserted is not None:
            return Claim(fresh=True)
        row = (await connection.execute(sa.select(table).where(table.c.scope == scope, table.c.key == key))).first()
        if row is not None:
            return Claim(fresh=False, method=row.method, request_hash=row.request_hash, response=row.response)
        # released by its first caller between our insert and our read: try again
    raise RuntimeError("idempotency key kept changing under a concurrent caller")


async def purge_expired(connection: AsyncConnection) -> int:
    """Drop answers older than RETENTION (called periodically by the server)."""
    result = await connection.execute(
        sa.delete(idempotency_keys).where(idempotency_keys.c.created_at < sa.func.now() - RETENTION)
    )
    return int(result.rowcount)


async def claim_or_conflict(
    connection: AsyncConnection, scope: str, key: str, method: str, request_hash: str
) -> Claim | None:
    """`claim` inside the caller's transaction, or None when another transaction holds the key uncommitted (the
    first call is still running): waiting for it would hold this request for the whole of the other one."""
    await connection.execute(sa.text("SET LOCAL lock_timeout = '100ms'"))
    try:
        async with connection.begin_nested():
            return await claim(connection, scope, key, method, request_hash)
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return None
        raise
    finally:
        await connection.execute(sa.text("SET LOCAL lock_timeout = DEFAULT"))


async def complete(connection: AsyncConnection, scope: str, key: str, response: bytes) -> None:
    table = idempotency_keys
    await connection.execute(
        sa.update(table).where(table.c.scope == scope, table.c.key == key).values(response=response)
    )
