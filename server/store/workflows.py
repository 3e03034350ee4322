"""Workflow definitions of one org."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from server.errors import AlreadyExists, NotFound
from server.ids import new_id
from server.store import pagination
from server.store.repository import TenantRepository
from server.store.tables import workflows
from server.store.unique import unique_violation


def _taken(name: str) -> AlreadyExists:
    return AlreadyExists(
        f"a workflow named {name!r} already exists in this org; pick another name or update it "
        "with PUT /workflows/{id}",
        reason="WORKFLOW_NAME_TAKEN",
    )


async def create(repo: TenantRepository, *, name: str, description: str, definition: str) -> sa.Row[Any]:
    with unique_violation(_taken(name)):
        return await repo.insert(
            workflows, {"id": new_id("workflow"), "name": name, "description": description, "definition": definition}
        )


async def get(repo: TenantRepository, workflow_id: str) -> sa.Row[Any]:
    row = await repo.get(workflows, id=workflow_id)
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} not found")
    return row


async def update(
    repo: TenantRepository, workflow_id: str, *, name: str, description: str, definition: str
) -> sa.Row[Any]:
    with unique_violation(_taken(name)):
        row = await repo.update(
            workflows,
            {"id": workflow_id},
            {
                "name": name,
                "description": description,
                "definition": definition,
                "version": workflows.c.version + 1,
                "updated_at": sa.func.now(),
            },
        )
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} not found")
    return row


async def delete(repo: TenantRepository, workflow_id: str) -> None:
    if not await repo.delete(workflows, id=workflow_id):
        raise NotFound(f"workflow {workflow_id!r} not found")


async def page(
    repo: TenantRepository, request: pagination.PageRequest, *, name: str = ""
) -> tuple[list[sa.Row[Any]], str]:
    where = [workflows.c.name == name] if name else []
    return await repo.page(workflows, request, sort="id", descending=True, where=where)
