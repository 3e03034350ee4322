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


def test_ids_that_are_not_one_range_still_audit_and_answer_exactly_the_inserted_rows(fresh_database: str) -> None:
    async def main() -> tuple[store.Inserted, list[int], list[str]]:
        engine = create_engine(fresh_database, pool_size=1)
        actor = store.Actor("api_key", "key-test")
        async with connect(engine) as connection:
            await connection.execute(sa.insert(orgs).values(id="org-gaps", name="gaps"))
            repo = TenantRepository(connection, "org-gaps")
            table = await store.create(repo, "gaps", FIELDS)
            await store.insert(repo, table, [row(0)], actor)
            # as if other inserts drew ids in between: the sequence now steps by 2
            await connection.execute(sa.text(f"ALTER TABLE {table.relation} ALTER COLUMN id SET INCREMENT BY 2"))
            encoder = domain.CopyEncoder(table.schema)
            lines = [encoder.line({"invoice_id": f"G-{i}", "attempts": i}, f"rows[{i}]") for i in range(5)]
            inserted = await store.insert_lines(repo, table, lines, actor, count=len(lines), return_rows=True)
            audited = await connection.execute(
                sa.text("SELECT row_id FROM custom_table_audit WHERE org_id = 'org-gaps' ORDER BY row_id")
            )
            stored = await connection.execute(sa.text(f"SELECT invoice_id FROM {table.relation} ORDER BY id"))
        await engine.dispose()
        return inserted, [int(i) for i in audited.scalars()], [str(s) for s in stored.scalars()]

    inserted, audited, stored = asyncio.run(main())
    assert inserted.ids == [3, 5, 7, 9, 11]
    assert audited == [1, *inserted.ids]  # the first row's entry, then one per row of this insert, no other
    assert inserted.rows is not None and ['"invoice_id":"G-' in r for r in inserted.rows] == [True] * 5
    assert stored == ["INV-000000", "G-0", "G-1", "G-2", "G-3", "G-4"]
