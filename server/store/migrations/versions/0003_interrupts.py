"""Interrupts: every pause for a person (approvals, forms) is a row.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"

SCHEMA = """
CREATE TABLE interrupts (
    org_id text NOT NULL,
    run_id text NOT NULL,
    step_index integer NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    payload text NOT NULL,
    answer text,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    answered_at timestamptz,
    PRIMARY KEY (org_id, run_id, step_index),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_interrupts_pending ON interrupts (org_id, kind, created_at) WHERE status = 'pending';
CREATE INDEX ix_interrupts_expiring ON interrupts (expires_at) WHERE status = 'pending' AND expires_at IS NOT NULL;
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
