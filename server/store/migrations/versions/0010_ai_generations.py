"""AI workflow generations: the prompt, each model draft with the validator's verdict, the result; leased by
workers so a generation interrupted by a restart is finished by another process.

Revision ID: 0010
Revises: 0004
"""

from alembic import op

revision = "0010"
down_revision = "0008"

SCHEMA = """
CREATE TABLE ai_generations (
    org_id text NOT NULL,
    id text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    prompt text NOT NULL,
    options text NOT NULL,
    attempts text NOT NULL DEFAULT '[]',
    result text,
    error text,
    workflow_id text,
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX ix_ai_generations_processing ON ai_generations (created_at) WHERE status = 'processing'
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE ai_generations")
