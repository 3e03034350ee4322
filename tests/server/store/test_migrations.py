"""Migrations build exactly the schema that store/tables.py describes, and can run twice (and concurrently)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from server.store.db import MIGRATIONS, migrate, sqlalchemy_url
from server.store.tables import metadata


def test_migrated_schema_matches_the_table_definitions(fresh_database: str) -> None:
    engine = sa.create_engine(sqlalchemy_url(fresh_database))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_migrating_again_and_concurrently_is_harmless(fresh_database: str) -> None:
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: migrate(fresh_database), range(3)))
    engine = sa.create_engine(sqlalchemy_url(fresh_database))
    with engine.connect() as connection:
        version = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    engine.dispose()
