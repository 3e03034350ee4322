"""The one tenancy filter: every query on a tenant-owned table goes through `TenantRepository`.

Stores (workflows.py, actions.py, ...) hold the domain SQL; they get rows only through this class, which adds
`org_id = :org` to every statement and sets `org_id` on every insert. Another org's row is simply not found.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.store import pagination


class TenantRepository:
    def __init__(self, connection: AsyncConnection, org_id: str) -> None:
        if not org_id:
            raise ValueError("a tenant repository needs an org id")
        self.connection = connection
        self.org_id = org_id

    def _where(self, table: sa.Table, keys: dict[str, Any]) -> list[sa.ColumnElement[bool]]:
        return [table.c.org_id == self.org_id, *(table.c[name] == value for name, value in keys.items())]

    def select(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> sa.Select[Any]:
        return sa.select(table).where(table.c.org_id == self.org_id, *where)

    async def scalars(self, column: sa.Column[Any]) -> list[Any]:
        """One column of every row of the org."""
        table = column.table
        result = await self.connection.execute(sa.select(column).where(table.c.org_id == self.org_id))
        return list(result.scalars())

    async def insert(self, table: sa.Table, values: dict[str, Any]) -> sa.Row[Any]:
        result = await self.connection.execute(sa.insert(table).values(org_id=self.org_id, **values).returning(table))
        row: sa.Row[Any] = result.one()
        return row

    async def insert_many(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Several rows in one statement (each gets this org's id)."""
        if rows:
            await self.connection.execute(sa.insert(table), [{**row, "org_id": self.org_id} for row in rows])

    async def upsert(
        self, table: sa.Table, values: dict[str, Any], conflict: list[str], update: dict[str, Any]
    ) -> sa.Row[Any]:
        statement = insert(table).values(org_id=self.org_id, **values)
        statement = statement.on_conflict_do_update(index_elements=["org_id", *conflict], set_=update)
        result = await self.connection.execute(statement.returning(table))
        row: sa.Row[Any] = result.one()
        return row

    async def get(self, table: sa.Table, **keys: Any) -> sa.Row[Any] | None:
        result = await self.connection.execute(sa.select(table).where(*self._where(table, keys)))
        row: sa.Row[Any] | None = result.first()
        return row

    async def update(self, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]) -> sa.Row[Any] | None:
        statement = sa.update(table).where(*self._where(table, keys)).values(**values).returning(table)
        row: sa.Row[Any] | None = (await self.connection.execute(statement)).first()
        return row

    async def update_all(self, table: sa.Table, keys: dict[str, Any], values: dict[str, Any]) -> int:
        """Every row of the org matching `keys`; the number updated (nothing read back)."""
        result = await self.connection.execute(sa.update(table).where(*self._where(table, keys)).values(**values))
        return int(result.rowcount)

    async def delete(self, table: sa.Table, **keys: Any) -> bool:
        result = await self.connection.execute(sa.delete(table).where(*self._where(table, keys)))
        return bool(result.rowcount)

    async def page(
        self,
        table: sa.Table,
        page: pagination.PageRequest,
        *,
        sort: str,
        descending: bool,
        where: list[sa.ColumnElement[bool]] | None = None,
    ) -> tuple[list[sa.Row[Any]], str]:
        query = pagination.apply(self.select(table, *(where or [])), table.c[sort], page, descending=descending)
        rows = list((await self.connection.execute(query)).all())
        return pagination.next_token(rows, page, sort)
