"""Accounts, orgs and API keys: the rows authentication reads before any tenant is known.

`key_by_hash` and `touch_key` are the one deliberate exception to the tenancy filter: a key is how the org is
found, so it is looked up by its hash across orgs (and nothing of the row is returned to the caller but its org).
Everything else on api_keys goes through TenantRepository."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.errors import AlreadyExists, NotFound
from server.ids import new_id
from server.store.repository import TenantRepository
from server.store.tables import accounts, api_keys, orgs
from server.store.unique import unique_violation


async def ensure_org(connection: AsyncConnection, org_id: str) -> None:
    """Direct engine mode: an org named by a trusted X-Org-Id exists from its first request on."""
    await connection.execute(insert(orgs).values(id=org_id, name=org_id).on_conflict_do_nothing())


async def create_org(connection: AsyncConnection, *, org_id: str, name: str, account_id: str | None) -> sa.Row[Any]:
    with unique_violation(AlreadyExists(f"org id {org_id!r} is taken; choose another id", reason="ORG_ID_TAKEN")):
        result = await connection.execute(
            sa.insert(orgs).values(id=org_id, name=name, account_id=account_id).returning(orgs)
        )
    row: sa.Row[Any] = result.one()
    return row


async def account_orgs(connection: AsyncConnection, account_id: str) -> list[sa.Row[Any]]:
    result = await connection.execute(sa.select(orgs).where(orgs.c.account_id == account_id).order_by(orgs.c.id))
    return list(result.all())


async def account_org(connection: AsyncConnection, account_id: str, org_id: str) -> sa.Row[Any]:
    """One org of the account; someone else's org is not found (never forbidden)."""
    result = await connection.execute(sa.select(orgs).where(orgs.c.id == org_id, orgs.c.account_id == account_id))
    row = result.first()
    if row is None:
        raise NotFound(f"org {org_id!r} not found")
    return row


async def create_account(connection: AsyncConnection, *, email: str, name: str, token_hash: str) -> sa.Row[Any]:
    with unique_violation(AlreadyExists(f"an account for {email!r} already exists", reason="ACCOUNT_EXISTS")):
        result = await connection.execute(
            sa.insert(accounts)
            .values(id=new_id("account"), email=email, name=name, token_hash=token_hash)
            .returning(accounts)
        )
    row: sa.Row[Any] = result.one()
    return row


async def account_by_token(connection: AsyncConnection, token_hash: str) -> sa.Row[Any] | None:
    result = await connection.execute(sa.select(accounts).where(accounts.c.token_hash == token_hash))
    return result.first()


async def account(connection: AsyncConnection, account_id: str) -> sa.Row[Any]:
    result = await connection.execute(sa.select(accounts).where(accounts.c.id == account_id))
    return result.one()


async def key_by_hash(connection: AsyncConnection, key_hash: str) -> sa.Row[Any] | None:
    result = await connection.execute(
        sa.select(api_keys).where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    )
    return result.first()


async def touch_key(connection: AsyncConnection, key_id: str) -> None:
    await connection.execute(sa.update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=sa.func.now()))


async def create_key(
    repo: TenantRepository, *, label: str, kind: str, permissions: str, prefix: str, key_hash: str
) -> sa.Row[Any]:
    return await repo.insert(
        api_keys,
        {
            "id": new_id("api_key"),
            "label": label,
            "kind": kind,
            "permissions": permissions,
            "prefix": prefix,
            "key_hash": key_hash,
        },
    )


async def list_keys(repo: TenantRepository) -> list[sa.Row[Any]]:
    query = repo.select(api_keys, api_keys.c.revoked_at.is_(None)).order_by(api_keys.c.id.desc())
    return list((await repo.connection.execute(query)).all())


async def revoke_key(repo: TenantRepository, key_id: str) -> None:
    row = await repo.update(api_keys, {"id": key_id, "revoked_at": None}, {"revoked_at": sa.func.now()})
    if row is None:
        raise NotFound(f"key {key_id!r} not found")
