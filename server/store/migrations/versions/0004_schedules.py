"""Schedules: one row per workflow whose definition has a `schedule`, with the instant its next tick is due.

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"

SCHEMA = """
CREATE TABLE schedules (
    org_id text NOT NULL,
    workflow_id text NOT NULL,
    spec text NOT NULL,
    anchor timestamptz NOT NULL,
    next_due_at timestamptz NOT NULL,
    last_run_id text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, workflow_id),
    FOREIGN KEY (org_id, workflow_id) REFERENCES workflows (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_schedules_next_due_at ON schedules (next_due_at);
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
