"""Registered actions of one org."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.errors import AlreadyExists, NotFound
from server.ids import new_id
from server.store import pagination
from server.store.repository import TenantRepository
from server.store.tables import actions
from server.store.unique import unique_violation


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"an action named {name!r} already exists in this org; update it with PUT /actions/{{id}}",
        reason="ACTION_NAME_TAKEN",
    )


async def create(repo: TenantRepository, *, action_name: str, kind: str, spec: bytes) -> sa.Row[Any]:
    with unique_violation(_taken(action_name)):
        return await repo.insert(
            actions, {"id": new_id("action"), "action_name": action_name, "kind": kind, "spec": spec}
        )


async def get(repo: TenantRepository, action_id: str) -> sa.Row[Any]:
    row = await repo.get(actions, id=action_id)
    if row is None:
        raise NotFound(f"action {action_id!r} not found")
    return row


async def update(repo: TenantRepository, action_id: str, *, action_name: str, kind: str, spec: bytes) -> sa.Row[Any]:
    with unique_violation(_taken(action_name)):
        row = await repo.update(
            actions,
            {"id": action_id},
            {"action_name": action_name, "kind": kind, "spec": spec, "updated_at": sa.func.now()},
        )
    if row is None:
        raise NotFound(f"action {action_id!r} not found")
    return row


async def names(repo: TenantRepository) -> set[str]:
    return {str(name) for name in await repo.scalars(actions.c.action_name)}


async def page(
    repo: TenantRepository, request: pagination.PageRequest, *, kind: str = ""
) -> tuple[list[sa.Row[Any]], str]:
    where = [actions.c.kind == kind] if kind else []
    return await repo.page(actions, request, sort="id", descending=True, where=where)
