"""The physical tables behind custom tables: a typed filter on 100,000 rows is answered through the field's index."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from server.domain import custom_tables as domain
from server.store import TenantRepository, pagination
from server.store import custom_tables as store
from server.store.db import connect, create_engine
from server.store.tables import orgs

ROWS = 100_000
FIELDS = [
    domain.Field("invoice_id", "text", required=True),
    domain.Field("amount", "numeric"),
    domain.Field("attempts", "integer"),
    domain.Field("processed_at", "timestamptz"),
    domain.Field("matched", "boolean"),
]
START = datetime(2026, 1, 1, tzinfo=UTC)


def row(i: int) -> dict[str, Any]:
    return {
        "invoice_id": f"INV-{i:06d}",
        "amount": Decimal(i) / 100,
        "attempts": i,
        "processed_at": START + timedelta(seconds=i),
        "matched": i % 2 == 0,
    }


def test_typed_filters_on_100000_rows_use_the_field_index(fresh_database: str) -> None:
    plans: dict[str, str] = {}
    found: dict[str, list[str]] = {}

    async def main() -> None:
        engine = create_engine(fresh_database, pool_size=1)
        actor = store.Actor("api_key", "key-test")
        async with connect(engine) as connection:
            await connection.execute(sa.insert(orgs).values(id="org-explain", name="explain"))
            repo = TenantRepository(connection, "org-explain")
            table = await store.create(repo, "big", FIELDS)
            inserted = await store.insert(repo, table, [row(i) for i in range(ROWS)], actor)
            assert len(inserted) == ROWS
        filters = {
            "invoice_id": "INV-054321",
            "amount": Decimal("543.21"),
            "attempts": 54321,
            "processed_at": START + timedelta(seconds=54321),
        }
        page = pagination.page_request(page_size=10)
        async with connect(engine) as connection:
            repo = TenantRepository(connection, "org-explain")
            table = await store.find(repo, "big")
            for position, (name, value) in enumerate(filters.items()):
                statement, params = store.select_statement(table, {name: value}, store.Sort(), page)
                plan = await connection.execute(sa.text("EXPLAIN " + statement.text), params)
                plans[table.index_name(position)] = "\n".join(str(line) for line in plan.scalars())
                rows, _ = await store.select(repo, table, {name: value}, store.Sort(), page)
                found[name] = rows
            audit = await connection.execute(
                sa.text("SELECT count(*) FROM custom_table_audit WHERE org_id = 'org-explain' AND table_id = :t"),
                {"t": table.id},
            )
            assert audit.scalar_one() == ROWS  # one audit entry per inserted row
        await engine.dispose()

    asyncio.run(main())
    for index_name, plan in plans.items():
        assert "Index" in plan and index_name in plan, plan
        assert "Seq Scan" not in plan, plan
    for name, rows in found.items():
        assert len(rows) == 1 and '"invoice_id":"INV-054321"' in rows[0], (name, rows)
