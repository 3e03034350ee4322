"""Runs: runs, their steps and their events.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"

SCHEMA = """
CREATE TABLE runs (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    workflow_id text NOT NULL,
    workflow_name text NOT NULL,
    workflow_version integer NOT NULL,
    definition text NOT NULL,
    status text NOT NULL,
    input text NOT NULL,
    context text NOT NULL,
    output text,
    error text NOT NULL DEFAULT '',
    current_step integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX ix_runs_org_id_workflow_id ON runs (org_id, workflow_id, id);
CREATE INDEX ix_runs_claimable ON runs (created_at) WHERE status = 'running';
CREATE TABLE run_steps (
    org_id text NOT NULL,
    run_id text NOT NULL,
    index integer NOT NULL,
    type text NOT NULL,
    status text NOT NULL,
    output_key text NOT NULL DEFAULT '',
    output text,
    error text NOT NULL DEFAULT '',
    attempts integer NOT NULL DEFAULT 0,
    on_false boolean NOT NULL DEFAULT false,
    idempotency_key text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (org_id, run_id, index),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
);
CREATE TABLE run_events (
    org_id text NOT NULL,
    run_id text NOT NULL,
    sequence bigint NOT NULL,
    type text NOT NULL,
    data text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, run_id, sequence),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
);
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
