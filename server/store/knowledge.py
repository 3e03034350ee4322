"""Knowledge retrieval, the SQL half: index a source's text as chunks, search an org's chunks, delete a source.

Public surface (no gRPC here; the documents service calls `index_source` after an upload or a new version and
`delete_source` after a delete, the agents' `knowledge_search` tool and the Hyfn / Hyponema knowledge endpoints
call `search`):

- `index_source(connection, org_id, source_id, version, content, content_type, name, filename=None, embedder=None)
  -> int`
- `delete_source(connection, org_id, source_id) -> bool`
- `search(connection_or_engine, org_id, query, limit=5, source_ids=None, embedder=None) -> list[Hit]`
- `prepare_embeddings(engine, model) -> Embedder | None` (once at start-up; None = full text + trigrams only)

Search blends these signals into one score per chunk, each in 0..1:
- full text: `ts_rank_cd` (cover density, rank/(rank+1), divided by the best candidate's) of the question's
  lexemes OR-ed together, over a `tsvector` that weighs the source title and heading path above the body;
- strict match: a bonus when the chunk satisfies the question's `websearch_to_tsquery` (every word, "phrases",
  `or`); its `-exclusions` remove chunks from the candidates altogether;
- word coverage: the share of the question's content words the chunk holds. A word that no chunk in scope holds
  (a typo, a partial word) is matched by trigram `similarity` against the words of the sources
  (`knowledge_terms`, gin_trgm_ops): the closest ones join the full-text query and count by their similarity
  (`refnd` ~ `refund` 0.44), so the stemmer's blind spot is covered without a trigram scan of chunk bodies;
- embeddings (only with pgvector and a configured model): cosine similarity of the question and the chunk.
Everything runs within one org (`TenantRepository`) and, if given, a set of source ids; rows of another org are
never read.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.domain import knowledge
from server.domain.knowledge import Embedder
from server.store.db import connect
from server.store.repository import TenantRepository
from server.store.tables import knowledge_chunks, knowledge_terms

log = logging.getLogger("hyphae.knowledge")

ENGLISH: sa.ColumnElement[Any] = sa.literal_column("'english'::regconfig")
# Candidates drawn from each index before blending; the blend re-orders them.
POOL = 60
# Trigram similarity a stored word needs to stand in for a question's word (`refnd` ~ `refund`: 0.44;
# `warehou` ~ `warehouse`: 0.64).
SIMILARITY_THRESHOLD = 0.3
CORRECTIONS_PER_WORD = 3
MAX_QUERY_WORDS = 12
# Blend weights: full text carries most; coverage favours chunks holding more of the question's words (typos
# included); the strict match breaks ties toward chunks holding all of them. Embeddings take a share when on.
WEIGHTS = {"fts": 0.55, "coverage": 0.3, "strict": 0.15}
WEIGHTS_WITH_VECTORS = {"fts": 0.4, "coverage": 0.2, "strict": 0.1, "vector": 0.3}
SNIPPET_OPTIONS = "MaxFragments=2,MaxWords=35,MinWords=12,FragmentDelimiter= … ,StartSel=**,StopSel=**"

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)
# Words that say nothing about which document answers: left out of word coverage and typo correction (the
# full-text side has Postgres's own stop list).
_STOP_WORDS = """
a about above after again against all am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
out over own same she should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with would you your yours get
got need want know tell please there's what's i'm can't don't does doesn't
"""
_STOP = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class Hit:
    """One chunk that answers a query, with what is needed to cite it."""

    source_id: str
    version: int
    chunk_index: int
    start: int  # offsets of the chunk in the source's extracted text
    end: int
    heading: str  # heading path, "A > B"
    title: str  # the source's name as indexed
    text: str  # the whole chunk
    snippet: str  # the best fragments, matches between ** **
    score: float  # blended, 0..1


# --- indexing --------------------------------------------------------------------------------------------------


async def index_source(
    connection: AsyncConnection,
    org_id: str,
    source_id: str,
    version: int,
    content: bytes,
    content_type: str,
    name: str,
    *,
    filename: str | None = None,
    embedder: Embedder | None = None,
) -> int:
    """Extract, chunk and index one version of a source; returns the number of chunks.

    `name` is the source's title (a document's display name, which users may rename to anything); the format comes
    from `content_type` and `filename`, the file's own name (default: `name`, for sources titled by their file).

    The index keeps one version per source, the last one indexed: this replaces every chunk the source had (any
    version), in the caller's transaction, so a search sees the old chunks or the new ones, never a mix.
    Raises `UnsupportedContent` (an InvalidArgument, field `content_type`) for bytes it cannot read."""
    # Extraction and chunking are CPU work (a big PDF takes seconds): off the event loop.
    file = name if filename is None else filename
    chunks = await asyncio.to_thread(lambda: knowledge.chunk(knowledge.extract(content, content_type, file)))
    embeddings: list[list[float]] | None = None
    if embedder is not None and chunks:
        embeddings = await asyncio.to_thread(embedder.embed, [_embedding_text(name, c.heading, c.text) for c in chunks])
    repo = TenantRepository(connection, org_id)
    await _lock_source(connection, org_id, source_id)
    await repo.delete(knowledge_chunks, source_id=source_id)
    await repo.delete(knowledge_terms, source_id=source_id)
    title = knowledge.title_words(name)
    rows = [
        {
            "source_id": source_id,
            "chunk_index": c.index,
            "version": version,
            "title": title,
            "heading": c.heading,
            "start_offset": c.start,
            "end_offset": c.end,
            "body": c.text,
            "embedding": embeddings[c.index] if embeddings is not None else None,
        }
        for c in chunks
    ]
    for start in range(0, len(rows), 500):
        await repo.insert_many(knowledge_chunks, rows[start : start + 500])
    terms = sorted(knowledge.terms(" ".join([title, *{c.heading for c in chunks}, *(c.text for c in chunks)])))
    for start in range(0, len(terms), 5000):
        await repo.insert_many(
            knowledge_terms, [{"source_id": source_id, "term": term} for term in terms[start : start + 5000]]
        )
    return len(rows)


async def retitle_source(connection: AsyncConnection, org_id: str, source_id: str, name: str) -> None:
    """A source renamed: its chunks take the new title (their weighted `tsv` follows, a generated column) and its
    words the new title's, so a search by the new name finds it without re-indexing the content. The old title's
    words stay among its trigram words (harmless: they only widen fuzzy matching), and embeddings keep the old
    title until the next version is indexed."""
    repo = TenantRepository(connection, org_id)
    await _lock_source(connection, org_id, source_id)
    title = knowledge.title_words(name)
    if not await repo.update_all(knowledge_chunks, {"source_id": source_id}, {"title": title}):
        return  # not indexed (yet, or not indexable): the indexer uses the current name when it gets there
    terms = sorted(knowledge.terms(title))
    if terms:
        await connection.execute(
            pg_insert(knowledge_terms)
            .values([{"org_id": repo.org_id, "source_id": source_id, "term": term} for term in terms])
            .on_conflict_do_nothing()
        )


async def delete_source(connection: AsyncConnection, org_id: str, source_id: str) -> bool:
    """Drop a source from the index (its chunks and its words); False when it had none (unknown ids are no error)."""
    repo = TenantRepository(connection, org_id)
    await _lock_source(connection, org_id, source_id)
    await repo.delete(knowledge_terms, source_id=source_id)
    return await repo.delete(knowledge_chunks, source_id=source_id)


async def _lock_source(connection: AsyncConnection, org_id: str, source_id: str) -> None:
    """Writers of one source (a retried upload, a delete racing a new version) take turns until commit, rather
    than collide on the primary key or leave a mix of both."""
    await connection.execute(
        sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(f"knowledge:{org_id}:{source_id}", 0)))
    )


def _embedding_text(name: str, heading: str, text: str) -> str:
    return "\n".join(part for part in (knowledge.title_words(name), heading, text) if part)


# --- search ----------------------------------------------------------------------------------------------------


async def search(
    target: AsyncConnection | AsyncEngine,
    org_id: str,
    query: str,
    limit: int = 5,
    source_ids: Sequence[str] | None = None,
    *,
    embedder: Embedder | None = None,
) -> list[Hit]:
    """The `limit` best chunks of the org for `query` (a question or keywords, typos tolerated), best first.

    `source_ids` restricts the search to those sources (an empty sequence finds nothing). Never raises on odd
    input: a query with no searchable word answers []."""
    if isinstance(target, AsyncEngine):
        async with connect(target) as connection:
            return await _search(connection, org_id, query, limit, source_ids, embedder)
    return await _search(target, org_id, query, limit, source_ids, embedder)


async def _search(
    connection: AsyncConnection,
    org_id: str,
    query: str,
    limit: int,
    source_ids: Sequence[str] | None,
    embedder: Embedder | None,
) -> list[Hit]:
    query = query.replace("\x00", " ").strip()
    if not query or limit <= 0 or (source_ids is not None and not source_ids):
        return []
    repo = TenantRepository(connection, org_id)
    t = knowledge_chunks
    scope: list[sa.ColumnElement[bool]] = []
    if source_ids is not None:
        scope.append(t.c.source_id.in_(list(source_ids)))
    # websearch syntax `-word`: chunks holding an excluded word are no candidates at all, whatever else matches.
    scope.extend(~t.c.tsv.bool_op("@@")(sa.func.plainto_tsquery(ENGLISH, word)) for word in _excluded_words(query))

    # One round trip: the question's lexemes, and for each content word whether the stemmer keeps it and whether
    # any chunk in scope holds it. Words no chunk holds may be typos or partial words: trigrams correct those.
    words = content_words(query)
    word_queries = [sa.func.plainto_tsquery(ENGLISH, word) for word in words]
    probe = (
        await connection.execute(
            sa.select(
                sa.func.tsvector_to_array(sa.func.to_tsvector(ENGLISH, " ".join(_plain_words(query)))),
                *(sa.func.numnode(word_query) for word_query in word_queries),
                *(sa.exists(repo.select(t, t.c.tsv.bool_op("@@")(word_query), *scope)) for word_query in word_queries),
            )
        )
    ).one()
    lexemes = list(probe[0])
    stemmed = [bool(nodes) for nodes in probe[1 : 1 + len(words)]]
    held = [bool(found) for found in probe[1 + len(words) :]]
    known = [(word, word_queries[i]) for i, word in enumerate(words) if stemmed[i] and held[i]]
    # Words the stemmer drops (its stop words) say nothing either way; numbers and short words are not typos worth
    # correcting (few trigrams look like nearly everything).
    unknown = [
        word
        for i, word in enumerate(words)
        if stemmed[i] and not held[i] and len(word) >= knowledge.MIN_TERM and word.isalpha()
    ]
    query_vector: list[float] | None = None
    if embedder is not None:
        query_vector = (await asyncio.to_thread(embedder.embed, [query]))[0]

    # Typos and partial words: the closest words of the sources in scope by trigram similarity (GIN index), whose
    # stems join the full-text query; a chunk holding one counts the question's word as covered by that much.
    corrections: dict[str, list[tuple[list[str], float]]] = {}
    term_scope = [knowledge_terms.c.source_id.in_(list(source_ids))] if source_ids is not None else []
    if unknown:
        await connection.execute(
            sa.select(sa.func.set_config("pg_trgm.similarity_threshold", str(SIMILARITY_THRESHOLD), True))
        )
    for word in unknown:
        similarity = sa.func.similarity(knowledge_terms.c.term, word)
        found = await connection.execute(
            repo.select(knowledge_terms, knowledge_terms.c.term.bool_op("%")(word), *term_scope)
            .with_only_columns(
                sa.func.tsvector_to_array(sa.func.to_tsvector(ENGLISH, knowledge_terms.c.term)), similarity
            )
            .group_by(knowledge_terms.c.term)
            .order_by(similarity.desc(), knowledge_terms.c.term)
            .limit(CORRECTIONS_PER_WORD)
        )
        corrections[word] = [(list(stems), float(score)) for stems, score in found.all() if stems]
        lexemes.extend(stem for stems, _ in corrections[word] for stem in stems if stem not in lexemes)
    if not lexemes and query_vector is None:
        return []

    any_query = sa.cast(_or_query(lexemes), TSQUERY)
    strict_query = sa.func.websearch_to_tsquery(ENGLISH, query)
    fts_rank = sa.func.ts_rank_cd(t.c.tsv, any_query, 32)
    # Word coverage: the share of the question's content words the chunk holds, a held word counting 1 when its
    # stem is in the chunk, an unheld one by its best correction's similarity when the chunk holds that.
    covered: list[sa.ColumnElement[Any]] = [
        sa.case((t.c.tsv.bool_op("@@")(word_query), 1.0), else_=0.0) for _, word_query in known
    ]
    for options in corrections.values():
        if options:
            covered.append(
                sa.func.greatest(
                    *(
                        sa.case((t.c.tsv.bool_op("@@")(sa.cast(_or_query(stems), TSQUERY)), score), else_=0.0)
                        for stems, score in options
                    )
                )
            )
    counted = len(known) + len(unknown)
    coverage: sa.ColumnElement[Any] = (
        sum(covered, sa.literal(0.0)) / counted if counted and covered else sa.literal(0.0)
    )
    cosine: sa.ColumnElement[Any] = sa.literal(0.0)
    if query_vector is not None:
        # Numbers only (formatted here), so inlining is safe; pgvector compares the real[] column cast to vector.
        # Chunks embedded by another model (another dimension) score 0 instead of failing the query.
        same_model = sa.func.array_length(t.c.embedding, 1) == len(query_vector)
        distance = sa.literal_column("(knowledge_chunks.embedding::vector)").op("<=>")(
            sa.literal_column(f"'{_vector_literal(query_vector)}'::vector")
        )
        cosine = sa.case((same_model, 1 - distance), else_=sa.literal(0.0))

    candidates: list[sa.Select[Any]] = []
    if lexemes:
        candidates.append(
            repo.select(t, t.c.tsv.bool_op("@@")(any_query), *scope)
            .with_only_columns(t.c.source_id, t.c.chunk_index)
            .order_by(fts_rank.desc())
            .limit(POOL)
        )
    if query_vector is not None:
        candidates.append(
            repo.select(t, sa.func.array_length(t.c.embedding, 1) == len(query_vector), *scope)
            .with_only_columns(t.c.source_id, t.c.chunk_index)
            .order_by(cosine.desc())
            .limit(POOL)
        )
    if not candidates:
        return []
    pool = sa.union(*candidates).subquery("pool") if len(candidates) > 1 else candidates[0].subquery("pool")
    rows = (
        await connection.execute(
            repo.select(t, *scope)
            .join_from(t, pool, sa.and_(t.c.source_id == pool.c.source_id, t.c.chunk_index == pool.c.chunk_index))
            .with_only_columns(
                t.c.source_id,
                t.c.version,
                t.c.chunk_index,
                t.c.start_offset,
                t.c.end_offset,
                t.c.heading,
                t.c.title,
                t.c.body,
                fts_rank.label("fts"),
                t.c.tsv.bool_op("@@")(strict_query).label("strict"),
                coverage.label("coverage"),
                cosine.label("vector"),
            )
        )
    ).all()
    if not rows:
        return []
    weights = WEIGHTS_WITH_VECTORS if query_vector is not None else WEIGHTS
    best_fts = max(float(row.fts) for row in rows) or 1.0
    scored = sorted(
        (
            (
                weights["fts"] * float(row.fts) / best_fts
                + weights["coverage"] * float(row.coverage)
                + weights["strict"] * (1.0 if row.strict else 0.0)
                + weights.get("vector", 0.0) * max(0.0, float(row.vector)),
                row,
            )
            for row in rows
        ),
        key=lambda pair: (-pair[0], pair[1].source_id, pair[1].chunk_index),
    )[:limit]
    snippets = await _snippets(connection, repo, [row for _, row in scored], any_query if lexemes else None)
    return [
        Hit(
            source_id=row.source_id,
            version=row.version,
            chunk_index=row.chunk_index,
            start=row.start_offset,
            end=row.end_offset,
            heading=row.heading,
            title=row.title,
            text=row.body,
            snippet=snippets.get((row.source_id, row.chunk_index), ""),
            score=round(score, 6),
        )
        for score, row in scored
    ]


async def _snippets(
    connection: AsyncConnection, repo: TenantRepository, rows: list[Any], any_query: Any
) -> dict[tuple[str, int], str]:
    t = knowledge_chunks
    if any_query is None:
        return {(row.source_id, row.chunk_index): " ".join(row.body.split()[:35]) for row in rows}
    keys = [(row.source_id, row.chunk_index) for row in rows]
    result = await connection.execute(
        repo.select(t, sa.tuple_(t.c.source_id, t.c.chunk_index).in_(keys)).with_only_columns(
            t.c.source_id, t.c.chunk_index, sa.func.ts_headline(ENGLISH, t.c.body, any_query, SNIPPET_OPTIONS)
        )
    )
    return {(source_id, index): " ".join(snippet.split()) for source_id, index, snippet in result.all()}


def _excluded_words(query: str) -> list[str]:
    unquoted = re.sub(r'"[^"]*"?', " ", query)
    return [word[1:] for word in unquoted.split() if word.startswith("-") and len(word) > 1]


def _plain_words(query: str) -> list[str]:
    """The query's words minus websearch exclusions (`-word`): those must not make a chunk a candidate."""
    return [word for word in re.split(r"\s+", query) if word and not word.startswith("-")]


def content_words(query: str) -> list[str]:
    """Lower-cased words of the query worth a trigram comparison: 3+ letters, not a stop word, no exclusions."""
    seen: list[str] = []
    for token in _plain_words(query):
        for word in _WORD.findall(token.lower()):
            if len(word) >= 3 and word not in _STOP and word not in seen:
                seen.append(word)
    return seen[:MAX_QUERY_WORDS]


def _or_query(lexemes: list[str]) -> str:
    return " | ".join(_tsquery_literal(lexeme) for lexeme in lexemes)


def _tsquery_literal(lexeme: str) -> str:
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"


def _vector_literal(values: Sequence[float]) -> str:
    return "[" + ",".join(f"{float(v):.7g}" for v in values) + "]"


# --- embeddings ------------------------------------------------------------------------------------------------


async def vectors_available(connection: AsyncConnection) -> bool:
    """Whether pgvector is installed in this database (then embeddings can be compared in SQL)."""
    found = await connection.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'"))
    return found.first() is not None


async def prepare_embeddings(engine: AsyncEngine, model: str) -> Embedder | None:
    """Start-up detection: an embedder when `model` (HYPHAE_EMBEDDING_MODEL) is set, its library loads and the
    database has (or may create) the `vector` extension; otherwise None, logged, and search runs on full text and
    trigrams alone."""
    if not model:
        return None
    try:
        async with connect(engine) as connection:
            if not await vectors_available(connection):
                available = await connection.execute(
                    sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
                )
                if available.first() is None:
                    log.warning("HYPHAE_EMBEDDING_MODEL is set but this Postgres has no pgvector; not embedding")
                    return None
                await connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS vector"))
    except sa.exc.DBAPIError:
        log.warning("cannot create the pgvector extension (needs a superuser once); not embedding", exc_info=True)
        return None
    try:
        return await asyncio.to_thread(knowledge.load_embedder, model)
    except Exception:
        log.warning("cannot load embedding model %r; not embedding", model, exc_info=True)
        return None
