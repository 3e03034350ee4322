"""A custom-table step that runs again after a crash (its write committed, the step's result did not) returns the
recorded result and writes nothing twice; another step key writes again."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from server.domain import custom_tables as domain
from server.runtime import table_step
from server.store import TenantRepository
from server.store import custom_tables as store
from server.store.db import connect, create_engine
from server.store.tables import orgs

ORG = "org-retry"


def test_a_retried_step_does_not_write_twice(fresh_database: str) -> None:
    outputs: list[Any] = []
    counts: dict[str, int] = {}

    async def main() -> None:
        engine = create_engine(fresh_database, pool_size=2)
        async with connect(engine) as connection:
            await connection.execute(sa.insert(orgs).values(id=ORG, name="retry"))
            table = await store.create(
                TenantRepository(connection, ORG), "log", [domain.Field("status", "text", required=True)]
            )
        step = {"type": "custom-table"}
        for operation, properties in (
            ("write", {"table": "log", "operation": "write", "fields": {"status": "new"}}),
            ("upsert", {"table": "log", "operation": "upsert", "keys": ["status"], "values": ["other"]}),
        ):
            for key in (f"run-1:{operation}", f"run-1:{operation}", f"run-2:{operation}"):
                output, _ = await table_step.run(
                    engine, ORG, key.split(":")[0], key, step, "custom-table", properties, None
                )
                outputs.append(output)
        async with connect(engine) as connection:
            counts["rows"] = (await connection.execute(sa.text(f"SELECT count(*) FROM {table.relation}"))).scalar_one()
            audit = await connection.execute(
                sa.text("SELECT count(*) FROM custom_table_audit WHERE org_id = :o"), {"o": ORG}
            )
            counts["audit"] = audit.scalar_one()
        await engine.dispose()

    asyncio.run(main())
    write_first, write_retry, write_other, upsert_first, upsert_retry, upsert_other = outputs
    assert write_retry == write_first
    assert write_other["id"] != write_first["id"]
    assert upsert_retry == upsert_first and upsert_first["inserted"] == 1
    assert upsert_other["inserted"] == 0  # the row run-1 upserted exists now: nothing to insert
    assert counts == {"rows": 3, "audit": 3}
