"""Bulk audit entries: a bulk insert of n rows stores ONE custom_table_audit row that stands for n entries.

`row_count` n > 1: the row covers the audit ids `id` .. `id + n - 1` (drawn as one range) and the table rows
`row_id` .. `row_id + n - 1` (inserted as one range), and `after` holds the rows exactly as they were COPYed (COPY
text lines: id, then the declared fields in order). Reading expands it into n entries, each after-image rendered by
Postgres from the same text with the same input functions the COPY used, so it equals `row_to_json` of the stored
row. One row with one unindexed text value instead of n indexed rows with n JSON renderings: the audit stops being
half of a bulk insert's cost. `after` is stored uncompressed (EXTERNAL): compressing megabytes inside the insert
costs more than the disk it saves.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.execute("ALTER TABLE custom_table_audit ADD COLUMN row_count integer NOT NULL DEFAULT 1")
    op.execute("ALTER TABLE custom_table_audit ALTER COLUMN after SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE custom_table_audit ALTER COLUMN after SET STORAGE EXTENDED")
    op.execute("ALTER TABLE custom_table_audit DROP COLUMN row_count")
