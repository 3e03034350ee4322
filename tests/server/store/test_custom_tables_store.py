"""The physical tables behind custom tables: a typed filter on 100,000 rows is answered through the field's index."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from server.domain import custom_tables as domain
from server.errors import InvalidArgument
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
            # one audit entry per inserted row, the newest first; one of them found by its row
            newest, _ = await store.audit_page(repo, table, pagination.page_request(page_size=3))
            assert [(e.operation, e.row_id) for e in newest] == [
                ("insert", ROWS),
                ("insert", ROWS - 1),
                ("insert", ROWS - 2),
            ]
            [entry], _ = await store.audit_page(repo, table, page, row_id=54322)
            assert entry.after is not None and '"invoice_id":"INV-054321"' in entry.after
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
            audited, _ = await store.audit_page(repo, table, pagination.page_request(page_size=100))
            stored = await connection.execute(sa.text(f"SELECT invoice_id FROM {table.relation} ORDER BY id"))
        await engine.dispose()
        return inserted, sorted(e.row_id for e in audited), [str(s) for s in stored.scalars()]

    inserted, audited, stored = asyncio.run(main())
    assert inserted.ids == [3, 5, 7, 9, 11]
    assert audited == [1, *inserted.ids]  # the first row's entry, then one per row of this insert, no other
    assert inserted.rows is not None and ['"invoice_id":"G-' in r for r in inserted.rows] == [True] * 5
    assert stored == ["INV-000000", "G-0", "G-1", "G-2", "G-3", "G-4"]


AWKWARD = [
    {"invoice_id": 'tab\there, newline\nthere, back\\slash, cr\r, \\N, quote " é ✓', "amount": Decimal("1.50")},
    {"invoice_id": "\\N", "amount": Decimal("-0.000"), "attempts": -(2**31), "matched": False},
    {"invoice_id": "big", "amount": Decimal("123456789012345678901234567890.123456789"), "attempts": 2**31 - 1},
    {"invoice_id": "time", "processed_at": datetime(2026, 3, 29, 1, 30, 0, 123456, tzinfo=UTC), "matched": True},
    {"invoice_id": "", "amount": Decimal("1E+3"), "processed_at": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC)},
]


def test_a_bulk_insert_audits_each_row_as_row_to_json_renders_it(fresh_database: str) -> None:
    """A bulk insert is stored as one audit row (migration 0014); read back, it is one entry per row whose
    after-image is byte for byte what the single-row path records (`row_to_json` of the stored row)."""

    async def main() -> None:
        engine = create_engine(fresh_database, pool_size=1)
        actor = store.Actor("run", "run-1")
        async with connect(engine) as connection:
            await connection.execute(sa.insert(orgs).values(id="org-bulk-audit", name="bulk"))
            repo = TenantRepository(connection, "org-bulk-audit")
            table = await store.create(repo, "awkward", FIELDS)
            singles = [row_id(await store.insert(repo, table, [r], actor)) for r in AWKWARD]
            bulk = [json.loads(r)["id"] for r in await store.insert(repo, table, AWKWARD, actor)]
            stored_rows = await connection.execute(
                sa.text("SELECT count(*), sum(row_count) FROM custom_table_audit WHERE org_id = 'org-bulk-audit'")
            )
            assert tuple(stored_rows.one()) == (len(AWKWARD) + 1, 2 * len(AWKWARD))  # the bulk insert is one row

            everything, token = await store.audit_page(repo, table, pagination.page_request(page_size=100))
            assert token == ""
            assert [e.row_id for e in everything] == [*reversed(bulk), *reversed(singles)]
            assert [e.id for e in everything] == sorted((e.id for e in everything), reverse=True)
            assert len({e.id for e in everything}) == 2 * len(AWKWARD)
            assert {(e.operation, e.actor_kind, e.actor_id, e.before) for e in everything} == {
                ("insert", "run", "run-1", None)
            }
            after = {e.row_id: json_without_id(e.after) for e in everything}
            for single, bulked in zip(singles, bulk, strict=True):
                assert after[bulked] == after[single]  # the same text, whichever path wrote it
            now = await connection.execute(sa.text(f"SELECT id, row_to_json(t)::text FROM {table.relation} t"))
            assert {int(i): str(r) for i, r in now.all()} == {e.row_id: e.after for e in everything}

            # paged two at a time, and with an offset, through the bulk row and past it
            seen: list[int] = []
            request = pagination.page_request(page_size=2)
            while True:
                page, token = await store.audit_page(repo, table, request)
                seen.extend(e.id for e in page)
                if not token:
                    break
                request = pagination.page_request(page_size=2, page_token=token)
            assert seen == [e.id for e in everything]
            skipped, _ = await store.audit_page(repo, table, pagination.page_request(limit=3, offset=4))
            assert [e.id for e in skipped] == [e.id for e in everything[4:7]]
            for one in (*bulk, *singles):
                [entry], _ = await store.audit_page(repo, table, pagination.page_request(), row_id=one)
                assert (entry.row_id, entry.after) == (one, next(e.after for e in everything if e.row_id == one))
        await engine.dispose()

    asyncio.run(main())


def test_a_single_row_insert_names_the_field_postgres_refuses_also_once_the_statement_is_prepared(
    fresh_database: str,
) -> None:
    """A single row is one INSERT ... RETURNING (its audit entry in the same statement); Postgres names the bound
    parameter it could not read, which is the field's. The driver prepares a statement run often: same answer."""

    async def main() -> list[tuple[str, str]]:
        engine = create_engine(fresh_database, pool_size=1)
        actor = store.Actor("api_key", "key-test")
        refused: list[tuple[str, str]] = []
        async with connect(engine) as connection:
            await connection.execute(sa.insert(orgs).values(id="org-single", name="single"))
            table = await store.create(TenantRepository(connection, "org-single"), "single", FIELDS)
        for i in range(8):
            try:
                async with connect(engine) as connection:
                    repo = TenantRepository(connection, "org-single")
                    await store.insert(repo, table, [{"invoice_id": f"I-{i}", "amount": Decimal("1e200000")}], actor)
            except InvalidArgument as exc:
                refused.append((exc.field, exc.message))
        async with connect(engine) as connection:
            repo = TenantRepository(connection, "org-single")
            [stored] = await store.insert(repo, table, [row(7)], actor)
            [entry], _ = await store.audit_page(repo, table, pagination.page_request())
            now = await connection.execute(sa.text(f"SELECT row_to_json(t)::text FROM {table.relation} t"))
            assert [stored] == [entry.after] == list(now.scalars())
            assert (entry.operation, entry.row_id, entry.before) == ("insert", json.loads(stored)["id"], None)
        await engine.dispose()
        return refused

    assert asyncio.run(main()) == [("amount", "amount: value overflows numeric format")] * 8


def row_id(rows: list[str]) -> int:
    [only] = rows
    return int(json.loads(only)["id"])


def json_without_id(text: str | None) -> str:
    assert text is not None
    return text.split(",", 1)[1]  # '{"id":N,' first
