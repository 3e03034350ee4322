"""Documents: documents, their versions and their audit trail.

Revision ID: 0006
Revises: 0004
"""

from alembic import op

revision = "0006"
down_revision = "0005"

SCHEMA = """
CREATE TABLE documents (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    name text NOT NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    checksum_sha256 text NOT NULL,
    current_version integer NOT NULL,
    status text NOT NULL,
    tags text[] NOT NULL,
    metadata text NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX ix_documents_checksum ON documents (org_id, checksum_sha256);
CREATE INDEX ix_documents_expiring ON documents (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE document_versions (
    org_id text NOT NULL,
    document_id text NOT NULL,
    version integer NOT NULL,
    filename text NOT NULL,
    content_type text NOT NULL,
    size_bytes bigint NOT NULL,
    checksum_sha256 text NOT NULL,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, document_id, version),
    FOREIGN KEY (org_id, document_id) REFERENCES documents (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_document_versions_checksum ON document_versions (org_id, checksum_sha256);
CREATE TABLE document_audit (
    org_id text NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    id text NOT NULL,
    document_id text NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    version integer NOT NULL DEFAULT 0,
    details text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX ix_document_audit_document ON document_audit (org_id, document_id, id)
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
