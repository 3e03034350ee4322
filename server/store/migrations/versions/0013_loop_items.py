"""Loop items: the journal of a foreach loop, one row per finished item, committed as the item ends, so a loop run
again (after a crash, or after an agent inside it paused and was answered) skips the items already done.

Revision ID: 0013
Revises: 0010
"""

from alembic import op

revision = "0013"
down_revision = "0012"

SCHEMA = """
CREATE TABLE loop_items (
    org_id text NOT NULL,
    run_id text NOT NULL,
    scope text NOT NULL,
    position integer NOT NULL,
    status text NOT NULL,
    result text NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, run_id, scope, position),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
)
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE loop_items")
