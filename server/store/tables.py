"""Table definitions (SQLAlchemy Core). Migrations in store/migrations create the same schema.

Every tenant-owned table leads its primary key with `org_id` (the repository filters on it; Citus could
distribute by it). Free-form JSON is kept as text so it comes back byte-for-byte (jsonb reorders keys).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import TSVECTOR

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

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, nullable=False),
    sa.Column("workflow_name", sa.Text, nullable=False),
    sa.Column("workflow_version", sa.Integer, nullable=False),
    # The definition as it was at execute: a later update of the workflow does not change a started run.
    sa.Column("definition", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("context", sa.Text, nullable=False),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    # The next step to execute (or the paused one).
    sa.Column("current_step", sa.Integer, nullable=False, server_default="0"),
    # The worker executing the run, and until when its claim holds (renewed by heartbeats).
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_runs_org_id_workflow_id", "org_id", "workflow_id", "id"),
    sa.Index("ix_runs_claimable", "created_at", postgresql_where=sa.text("status = 'running'")),
)

run_steps = sa.Table(
    "run_steps",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("index", sa.Integer, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("output_key", sa.Text, nullable=False, server_default=""),
    sa.Column("output", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=False, server_default=""),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("on_false", sa.Boolean, nullable=False, server_default=sa.false()),
    # Sent with the step's side effect on every attempt, recorded before the first one.
    sa.Column("idempotency_key", sa.Text, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["org_id", "run_id"], ["runs.org_id", "runs.id"], ondelete="CASCADE"),
)

run_events = sa.Table(
    "run_events",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("sequence", sa.BigInteger, primary_key=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.ForeignKeyConstraint(["org_id", "run_id"], ["runs.org_id", "runs.id"], ondelete="CASCADE"),
)

interrupts = sa.Table(
    "interrupts",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    sa.Column("step_index", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),  # approval or form
    sa.Column("status", sa.Text, nullable=False),  # pending, answered or expired
    # approval: {"comment", "request_payload"}; form: {"expected_keys"}
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["org_id", "run_id"], ["runs.org_id", "runs.id"], ondelete="CASCADE"),
    sa.Index("ix_interrupts_pending", "org_id", "kind", "created_at", postgresql_where=sa.text("status = 'pending'")),
    sa.Index(
        "ix_interrupts_expiring",
        "expires_at",
        postgresql_where=sa.text("status = 'pending' AND expires_at IS NOT NULL"),
    ),
)

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("workflow_id", sa.Text, primary_key=True),
    # definition.schedule, canonical JSON (server.domain.schedule.canonical)
    sa.Column("spec", sa.Text, nullable=False),
    # When the schedule was created or last changed: `every` counts from it.
    sa.Column("anchor", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=False),
    # The last run the schedule started: while it is running or paused, the next tick waits (runs do not overlap).
    sa.Column("last_run_id", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.ForeignKeyConstraint(["org_id", "workflow_id"], ["workflows.org_id", "workflows.id"], ondelete="CASCADE"),
    sa.Index("ix_schedules_next_due_at", "next_due_at"),
)

# --- documents (migration 0006) ----------------------------------------------------------------------------

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    # content_type .. checksum_sha256 repeat the current version's, so reads and dedup need no join
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("checksum_sha256", sa.Text, nullable=False),
    sa.Column("current_version", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("tags", postgresql.ARRAY(sa.Text), nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON object, exact text
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    # knowledge indexing of the current version (migration 0012): pending, indexed, skipped (no text) or failed;
    # pending rows are the indexers' queue (server/runtime/indexer.py)
    sa.Column("index_status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("index_chunks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("index_error", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_documents_checksum", "org_id", "checksum_sha256"),
    sa.Index("ix_documents_expiring", "expires_at", postgresql_where=sa.text("expires_at IS NOT NULL")),
    sa.Index("ix_documents_index_pending", "updated_at", postgresql_where=sa.text("index_status = 'pending'")),
)

document_versions = sa.Table(
    "document_versions",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("document_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("content_type", sa.Text, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    # the blob's name in the blob store (per org): identical bytes share one blob
    sa.Column("checksum_sha256", sa.Text, nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.ForeignKeyConstraint(["org_id", "document_id"], ["documents.org_id", "documents.id"], ondelete="CASCADE"),
    sa.Index("ix_document_versions_checksum", "org_id", "checksum_sha256"),
)

# No foreign key to documents: the trail outlives the document it describes.
document_audit = sa.Table(
    "document_audit",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("document_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("details", sa.Text, nullable=False),  # JSON object
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Index("ix_document_audit_document", "org_id", "document_id", "id"),
)

# ---- custom tables (migration 0005). The rows of each custom table live in a real table of its own in the schema
# `hyphae_tables`, named from the catalog id (server/store/custom_tables.py); these are the catalog and the audit.

custom_tables = sa.Table(
    "custom_tables",
    metadata,
    sa.Column("org_id", sa.Text, sa.ForeignKey("orgs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    # The declared fields, JSON: [{"name", "type", "required", "maxLength"?}, ...]
    sa.Column("fields", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.UniqueConstraint("org_id", "name", name="custom_tables_org_id_name_key"),
)

custom_table_audit = sa.Table(
    "custom_table_audit",
    metadata,
    # No foreign key to custom_tables: the audit of a dropped table stays on record.
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("table_id", sa.Text, primary_key=True),
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("operation", sa.Text, nullable=False),  # insert, update, upsert or delete
    sa.Column("row_id", sa.BigInteger, nullable=False),
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),  # of a bulk entry (row_count > 1): the rows' COPY text lines
    sa.Column("actor_kind", sa.Text, nullable=False),  # api_key, org_header, run, agent or sdk_user
    sa.Column("actor_id", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    # > 1: one bulk insert standing for this many entries (ids and row ids one range each; migration 0014)
    sa.Column("row_count", sa.Integer, nullable=False, server_default="1"),
    sa.Index("ix_custom_table_audit_row", "org_id", "table_id", "row_id"),
)

custom_table_step_results = sa.Table(
    "custom_table_step_results",
    metadata,
    # A workflow step's table operation, by the step's idempotency key: a retried step returns this result instead
    # of writing again. Written in the transaction of the mutation.
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("idempotency_key", sa.Text, primary_key=True),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
)

# --- AI workflow generation (migration 0010) ----------------------------------------------------------------------

ai_generations = sa.Table(
    "ai_generations",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("id", sa.Text, primary_key=True),  # llm_gen-<uuid> (generate) or aiproc-<uuid> (create-from-ai)
    sa.Column("kind", sa.Text, nullable=False),  # generate or create
    sa.Column("status", sa.Text, nullable=False),  # processing, completed or failed
    sa.Column("prompt", sa.Text, nullable=False),
    # {"model", "temperature", "name"} as asked
    sa.Column("options", sa.Text, nullable=False),
    # One entry per model draft, committed before the next model call: {"text", "draft", "errors"}
    sa.Column("attempts", sa.Text, nullable=False, server_default="[]"),
    # The last parsed draft {"name", "description", "definition", "explanation"}
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("workflow_id", sa.Text, nullable=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_ai_generations_processing", "created_at", postgresql_where=sa.text("status = 'processing'")),
)

# --- agents ---------------------------------------------------------------------------------------------------

agent_steps = sa.Table(
    "agent_steps",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    # the react step's idempotency key (`<run>:<step>`, or `<run>:<step>:<item>:<inner>` inside a foreach)
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("iteration", sa.Integer, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),  # model, tool or pause
    sa.Column("request", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=True),  # NULL while the call is in flight (or the pause unanswered)
    sa.Column("success", sa.Boolean, nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["org_id", "run_id"], ["runs.org_id", "runs.id"], ondelete="CASCADE"),
)

# Knowledge retrieval (server.store.knowledge): one row per chunk of an indexed source, for the version of the
# source last indexed. `tsv` weighs the source's title and the chunk's heading path above its body.
knowledge_chunks = sa.Table(
    "knowledge_chunks",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("source_id", sa.Text, primary_key=True),
    sa.Column("chunk_index", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("title", sa.Text, nullable=False, server_default=""),
    sa.Column("heading", sa.Text, nullable=False, server_default=""),
    # Offsets of `body` in the source's extracted text (citations).
    sa.Column("start_offset", sa.Integer, nullable=False),
    sa.Column("end_offset", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    # Only when an embedding model is configured (and pgvector is there to compare them).
    sa.Column("embedding", sa.ARRAY(sa.REAL), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.Column(
        "tsv",
        TSVECTOR,
        sa.Computed(
            "setweight(to_tsvector('english'::regconfig, title || ' ' || heading), 'A') "
            "|| to_tsvector('english'::regconfig, body)",
            persisted=True,
        ),
    ),
    sa.Index("ix_knowledge_chunks_tsv", "tsv", postgresql_using="gin"),
)

# The distinct words (4+ letters, lower case) of each indexed source: a question's word that no chunk holds is
# matched to the closest of these by trigram similarity. Per source, so deleting a source forgets its words.
knowledge_terms = sa.Table(
    "knowledge_terms",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("source_id", sa.Text, primary_key=True),
    sa.Column("term", sa.Text, primary_key=True),
    sa.Index("ix_knowledge_terms_term_trgm", "term", postgresql_using="gin", postgresql_ops={"term": "gin_trgm_ops"}),
)

# The journal of foreach loops (server.store.loop_items): one row per finished item (completed or failed), written
# as the item ends, so a loop step run again skips the items already done.
loop_items = sa.Table(
    "loop_items",
    metadata,
    sa.Column("org_id", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, primary_key=True),
    # the loop step's idempotency key (`<run>:<step>`, or deeper for a loop nested in a loop)
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),  # completed or failed
    sa.Column("result", sa.Text, nullable=False),  # the item's entry of the loop's results (JSON)
    sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False, server_default=now),
    sa.ForeignKeyConstraint(["org_id", "run_id"], ["runs.org_id", "runs.id"], ondelete="CASCADE"),
)
