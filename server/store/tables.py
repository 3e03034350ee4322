"""Table definitions (SQLAlchemy Core). Migrations in store/migrations create the same schema.

Every tenant-owned table leads its primary key with `org_id` (the repository filters on it; Citus could
distribute by it). Free-form JSON is kept as text so it comes back byte-for-byte (jsonb reorders keys).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

now = sa.text("now()")

orgs = sa.Table(
    "orgs",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("account_id", sa.Text, sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True, index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("permissions", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

workflows = sa.Table(
    "workflows",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.UniqueConstraint("org_id", "name", name="workflows_org_id_name_key"),
)

actions = sa.Table(
    "actions",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("action_name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    # The hyphae.actions.v1.Action message (without id and timestamps), serialized: it evolves with the contract.
    sa.Column("spec", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.UniqueConstraint("org_id", "action_name", name="actions_org_id_action_name_key"),
)

org_config = sa.Table(
    "org_config",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("nonce", sa.LargeBinary, nullable=False),
    sa.Column("ciphertext", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    # org id, or "account:<id>" / "public" for calls made without an org
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("method", sa.Text, nullable=False),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=True),  # NULL while the first call is in flight
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
)
