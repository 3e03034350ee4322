"""Knowledge indexing state of each document's current version: a durable queue in the documents table itself.

Every serving process claims `pending` rows with FOR UPDATE SKIP LOCKED and indexes them in the claiming
transaction, so a crash leaves the row `pending` for another process. Existing documents start `pending` and are
indexed after the upgrade.

Revision ID: 0012
Revises: 0010
"""

from alembic import op

revision = "0012"
down_revision = "0010"

SCHEMA = """
ALTER TABLE documents
    ADD COLUMN index_status text NOT NULL DEFAULT 'pending',
    ADD COLUMN index_chunks integer NOT NULL DEFAULT 0,
    ADD COLUMN index_error text NOT NULL DEFAULT '';
CREATE INDEX ix_documents_index_pending ON documents (updated_at) WHERE index_status = 'pending'
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_documents_index_pending")
    op.execute("ALTER TABLE documents DROP COLUMN index_status, DROP COLUMN index_chunks, DROP COLUMN index_error")
