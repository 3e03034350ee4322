"""Foundation: orgs, accounts, API keys, workflows, actions, org config, idempotency keys.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None

SCHEMA = """
CREATE TABLE accounts (
    id text PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    token_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orgs (
    id text PRIMARY KEY,
    name text NOT NULL,
    account_id text REFERENCES accounts (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ix_orgs_account_id ON orgs (account_id);
CREATE TABLE api_keys (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    label text NOT NULL,
    kind text NOT NULL,
    permissions text NOT NULL,
    prefix text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE TABLE workflows (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    definition text NOT NULL,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT workflows_org_id_name_key UNIQUE (org_id, name)
);
CREATE TABLE actions (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    action_name text NOT NULL,
    kind text NOT NULL,
    spec bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    CONSTRAINT actions_org_id_action_name_key UNIQUE (org_id, action_name)
);
CREATE TABLE org_config (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    key text NOT NULL,
    key_id text NOT NULL,
    nonce bytea NOT NULL,
    ciphertext bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);
CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    method text NOT NULL,
    request_hash text NOT NULL,
    response bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
