"""Agent steps: the journal of an agent's model and tool calls, one row per call, committed before the next call,
so a resumed agent replays its history instead of calling a model or tool again.

Revision ID: 0008
Revises: 0004
"""

from alembic import op

revision = "0008"
down_revision = "0007"

SCHEMA = """
CREATE TABLE agent_steps (
    org_id text NOT NULL,
    run_id text NOT NULL,
    scope text NOT NULL,
    seq integer NOT NULL,
    iteration integer NOT NULL,
    kind text NOT NULL,
    request text NOT NULL,
    response text,
    success boolean,
    prompt_tokens integer NOT NULL DEFAULT 0,
    completion_tokens integer NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    PRIMARY KEY (org_id, run_id, scope, seq),
    FOREIGN KEY (org_id, run_id) REFERENCES runs (org_id, id) ON DELETE CASCADE
)
"""


def upgrade() -> None:
    op.execute(SCHEMA)


def downgrade() -> None:
    op.execute("DROP TABLE agent_steps")
