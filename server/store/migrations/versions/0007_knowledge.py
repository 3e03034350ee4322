"""Knowledge retrieval: the chunks of each indexed source, searchable by full text (tsvector), and the words of
each source, searchable by trigrams (to correct typos and complete partial words in questions).

Revision ID: 0007
Revises: 0004
"""

from alembic import op

revision = "0007"
down_revision = "0006"

# pg_trgm ships with Postgres (contrib) and is trusted: a database owner may create it without superuser rights.
SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE knowledge_chunks (
    org_id text NOT NULL,
    source_id text NOT NULL,
    chunk_index integer NOT NULL,
    version integer NOT NULL,
    title text NOT NULL DEFAULT '',
    heading text NOT NULL DEFAULT '',
    start_offset integer NOT NULL,
    end_offset integer NOT NULL,
    body text NOT NULL,
    embedding real[],
    created_at timestamptz NOT NULL DEFAULT now(),
    tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english'::regconfig, title || ' ' || heading), 'A')
        || to_tsvector('english'::regconfig, body)
    ) STORED,
    PRIMARY KEY (org_id, source_id, chunk_index)
);
CREATE INDEX ix_knowledge_chunks_tsv ON knowledge_chunks USING gin (tsv);
CREATE TABLE knowledge_terms (
    org_id text NOT NULL,
    source_id text NOT NULL,
    term text NOT NULL,
    PRIMARY KEY (org_id, source_id, term)
);
CREATE INDEX ix_knowledge_terms_term_trgm ON knowledge_terms USING gin (term gin_trgm_ops)
"""


def upgrade() -> None:
    for statement in SCHEMA.split(";"):
        if statement.strip():
            op.execute(statement)
