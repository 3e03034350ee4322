"""Custom tables in Postgres: the catalog row per table (a tenant table) and one real table per custom table.

The real table lives in the schema `hyphae_tables` and is named from the catalog id (`t_<uuid hex>`), never from
user input; it has a bigint identity `id`, one typed column per declared field (the name checked by
`domain.custom_tables.NAME`, always quoted) with a btree index each, and created/updated timestamps. It is reached
only through a `Table` that `find` returned for the caller's org via `TenantRepository`, so another org's table is
simply not found. Every mutation writes its audit rows in its transaction (single-row inserts, updates and deletes
in the same statement, as data-modifying CTEs), so a row change and its audit entry commit together; a bulk insert's
entries are one row (`_bulk_audit`, expanded by `audit_page`). Rows are rendered by Postgres (`row_to_json`,
timestamps in UTC): numbers keep their digits.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from server.domain import custom_tables as domain
from server.errors import AlreadyExists, InvalidArgument, NotFound
from server.ids import new_id
from server.store import pagination
from server.store import runs as run_store
from server.store.repository import TenantRepository
from server.store.tables import custom_table_audit, custom_table_step_results, custom_tables, runs
from server.store.unique import unique_violation

SCHEMA = "hyphae_tables"
# After a bulk insert at least this large (and at least as large as the table was) the table is analysed, so the
# planner picks the field indexes at once instead of after autovacuum's next pass.
ANALYZE_AFTER = 10_000


@dataclass(frozen=True)
class Table:
    id: str
    name: str
    fields: list[domain.Field]
    created_at: datetime

    @property
    def relation(self) -> str:
        return f'"{SCHEMA}"."{self.physical_name}"'

    @property
    def physical_name(self) -> str:
        return "t_" + "".join(ch for ch in self.id.split("-", 1)[1] if ch.isalnum()).lower()

    def index_name(self, position: int) -> str:
        return f"{self.physical_name}_{position}"

    def sql_type(self, name: str) -> str:
        if name == "id":
            return "bigint"
        if name in ("created_at", "updated_at"):
            return "timestamptz"
        return domain.SQL_TYPES[self.schema.by_name[name].type]

    @property
    def schema(self) -> domain.Schema:
        return domain.Schema(self.fields)


@dataclass(frozen=True)
class Actor:
    kind: str  # api_key, org_header, run, agent or sdk_user
    id: str


def _quote(name: str) -> str:
    if not domain.NAME.fullmatch(name):  # names are checked on create; this guards the one place they enter SQL
        raise ValueError(f"not a column name: {name!r}")
    return f'"{name}"'


def _from_row(row: Any) -> Table:
    return Table(row.id, row.name, domain.fields_from_spec(json.loads(row.fields)), row.created_at)


async def _utc(repo: TenantRepository) -> None:
    await repo.connection.execute(sa.text("SET LOCAL TIME ZONE 'UTC'"))


async def create(repo: TenantRepository, name: str, fields: list[domain.Field]) -> Table:
    spec = json.dumps([f.spec() for f in fields], separators=(",", ":"))
    taken = AlreadyExists(f"a custom table named {name!r} already exists in this org", reason="TABLE_NAME_TAKEN")
    with unique_violation(taken):
        row = await repo.insert(custom_tables, {"id": new_id("custom_table"), "name": name, "fields": spec})
    table = _from_row(row)
    columns = [f"{_quote(f.name)} {domain.SQL_TYPES[f.type]}{' NOT NULL' if f.required else ''}" for f in table.fields]
    await repo.connection.execute(
        sa.text(
            f"CREATE TABLE {table.relation} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            + "".join(f"{column}, " for column in columns)
            + "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    for position, field in enumerate(table.fields):
        await repo.connection.execute(
            sa.text(f'CREATE INDEX "{table.index_name(position)}" ON {table.relation} ({_quote(field.name)})')
        )
    return table


async def find(repo: TenantRepository, name: str) -> Table:
    row = await repo.get(custom_tables, name=name)
    if row is None:
        raise NotFound(f"custom table {name!r} not found")
    return _from_row(row)


async def page(repo: TenantRepository, request: pagination.PageRequest) -> tuple[list[Table], str]:
    rows, token = await repo.page(custom_tables, request, sort="name", descending=False)
    return [_from_row(row) for row in rows], token


async def drop(repo: TenantRepository, table: Table) -> None:
    await repo.delete(custom_tables, id=table.id)
    await repo.connection.execute(sa.text(f"DROP TABLE IF EXISTS {table.relation}"))


def _audit_insert(source: str, before: str, after: str, sources: str = "") -> str:
    return (
        "INSERT INTO custom_table_audit (org_id, table_id, operation, row_id, before, after, actor_kind, actor_id) "
        f"SELECT :org, :table_id, :operation, {source}.id, {before}, {after}, :actor_kind, :actor_id "
        f"FROM {sources or source}"
    )


async def _bulk_audit(repo: TenantRepository, params: dict[str, Any], count: int, copied: str) -> bool:
    """One audit row for `count` rows inserted as one id range (migration 0014): draws `count` audit ids and, when
    they are one range, writes the row; False (nothing written) when another writer's ids came in between."""
    drawn = await repo.connection.execute(
        sa.text(
            "WITH q AS MATERIALIZED (SELECT pg_get_serial_sequence('custom_table_audit', 'id')::regclass AS seq), "
            "s AS (SELECT nextval(q.seq) AS v FROM q, generate_series(1, :n)) SELECT min(v), max(v) FROM s"
        ),
        {"n": count},
    )
    first, last = drawn.one()
    if last - first + 1 != count:
        return False
    await repo.connection.execute(
        sa.text(
            "INSERT INTO custom_table_audit "
            "(org_id, table_id, id, operation, row_id, row_count, before, after, actor_kind, actor_id) "
            "VALUES (:org, :table_id, :audit_id, :operation, :low, :n, NULL, :copied, :actor_kind, :actor_id)"
        ),
        {**params, "audit_id": first, "n": count, "copied": copied},
    )
    return True


def _audit_params(repo: TenantRepository, table: Table, operation: str, actor: Actor) -> dict[str, Any]:
    return {
        "org": repo.org_id,
        "table_id": table.id,
        "operation": operation,
        "actor_kind": actor.kind,
        "actor_id": actor.id,
    }


_COPY_CONTEXT = re.compile(r"line (\d+), column (\w+)")


def _copy_error(exc: psycopg.errors.DataError, row_path: str) -> InvalidArgument:
    """The COPY error Postgres raised for one value, naming the row and field it came from."""
    message = exc.diag.message_primary or str(exc)
    found = _COPY_CONTEXT.search(exc.diag.context or "")
    if found is None:
        return InvalidArgument(message, field=row_path or "row")
    row, column = int(found.group(1)) - 1, found.group(2)
    return InvalidArgument(message, field=f"{row_path}[{row}].{column}" if row_path else column)


@dataclass(frozen=True)
class Inserted:
    """What an insert wrote: the new ids in the order given, and the stored rows as JSON text when asked for."""

    ids: list[int]
    rows: list[str] | None


# COPY data goes to Postgres in pieces of about this many characters, each sent as soon as it is encoded, so
# Postgres stores one piece while the caller encodes the next (two processes, two cores).
COPY_PIECE = 1 << 16
# An insert of at least this many rows (ids one range) is audited by one bulk row (migration 0014).
BULK_AUDIT_ROWS = 2


async def insert(
    repo: TenantRepository, table: Table, rows: list[dict[str, Any]], actor: Actor, *, operation: str = "insert"
) -> list[str]:
    """Insert coerced rows (as `Schema.row` returns them; all or none); the stored rows as JSON text, in order."""
    if len(rows) == 1:
        return [await _insert_one(repo, table, rows[0], actor, operation)]
    names = [f.name for f in table.fields]
    lines = ["\t".join([domain.copy_text(row.get(n)) for n in names]) for row in rows]
    inserted = await insert_lines(
        repo,
        table,
        lines,
        actor,
        count=len(lines),
        operation=operation,
        return_rows=True,
        row_path="rows" if len(rows) > 1 else "",
    )
    assert inserted.rows is not None
    return inserted.rows


# Where Postgres names the bound parameter whose input function refused a value ("unnamed portal parameter $2 = ...").
_PARAMETER_CONTEXT = re.compile(r"parameter \$(\d+)")


async def _insert_one(repo: TenantRepository, table: Table, row: dict[str, Any], actor: Actor, operation: str) -> str:
    """One row in one statement: the INSERT and its audit entry (a data-modifying CTE, as updates and deletes do),
    the stored row rendered by `row_to_json` as every other path renders it. Each value goes in as the text COPY
    would give its type's input function (`domain.copy_text` read back by `copy_fields`), so a row stores and
    renders the same whichever path wrote it; a value Postgres refuses is an InvalidArgument naming the field."""
    await _utc(repo)
    params: dict[str, Any] = {}
    values: list[str] = []
    for position, field in enumerate(table.fields):
        [params[f"f{position}"]] = domain.copy_fields(domain.copy_text(row.get(field.name)))
        values.append(f"CAST(:f{position} AS {domain.SQL_TYPES[field.type]})")
    # The field values come first in the statement, so the driver numbers them $1..$n (read back on an error).
    params.update(_audit_params(repo, table, operation, actor))
    columns = ", ".join(_quote(f.name) for f in table.fields)
    statement = sa.text(
        f"WITH ins AS (INSERT INTO {table.relation} ({columns}) VALUES ({', '.join(values)}) RETURNING *), "
        f"aud AS ({_audit_insert('ins', 'NULL', 'row_to_json(ins)::text')}) "
        "SELECT row_to_json(ins)::text FROM ins"
    )
    try:
        return str((await repo.connection.execute(statement, params)).scalar_one())
    except sa.exc.DBAPIError as exc:
        if not isinstance(exc.orig, psycopg.errors.DataError):
            raise
        message = exc.orig.diag.message_primary or str(exc.orig)
        found = _PARAMETER_CONTEXT.search(exc.orig.diag.context or "")
        position = int(found.group(1)) - 1 if found is not None else -1
        named = table.fields[position].name if 0 <= position < len(table.fields) else "row"
        raise InvalidArgument(message, field=named) from None


async def insert_lines(
    repo: TenantRepository,
    table: Table,
    lines: Iterable[str],
    actor: Actor,
    *,
    count: int,
    operation: str = "insert",
    return_rows: bool = False,
    row_path: str = "rows",
) -> Inserted:
    """Insert `count` rows given as COPY text lines of the declared fields in order (`domain.CopyEncoder`), all or
    none. `lines` may be a generator that encodes (and checks) each row as it is consumed: an error it raises
    aborts the COPY and, with the caller's transaction, the whole insert.

    Ids are drawn from the table's identity sequence first (one statement answering the range when it is
    contiguous, as it is unless another insert drew ids at the same moment), the rows go in by one COPY on this
    transaction's connection, then one INSERT ... SELECT writes their audit entries (the after-image rendered by
    Postgres) and, only when asked, the same statement reads the stored rows back. A value Postgres still refuses
    (a numeric beyond its range) is an InvalidArgument naming `<row_path>[i].<field>` (the field alone when
    `row_path` is empty)."""
    await _utc(repo)
    drawn = await repo.connection.execute(
        sa.text(
            # the sequence looked up once: pg_get_serial_sequence per row costs more than nextval itself
            "WITH q AS MATERIALIZED (SELECT pg_get_serial_sequence(:relation, 'id')::regclass AS seq), "
            "s AS (SELECT nextval(q.seq) AS v FROM q, generate_series(1, :n)) "
            "SELECT min(v), max(v), CASE WHEN max(v) - min(v) + 1 = :n THEN NULL ELSE array_agg(v ORDER BY v) END "
            "FROM s"
        ),
        {"relation": table.relation, "n": count},
    )
    low, high, scattered = drawn.one()
    ids = [int(i) for i in scattered] if scattered is not None else list(range(int(low), int(high) + 1))
    raw = await repo.connection.get_raw_connection()
    driver: psycopg.AsyncConnection[Any] = raw.driver_connection  # type: ignore[assignment]
    columns = ", ".join(["id", *(_quote(f.name) for f in table.fields)])
    # Kept for a bulk audit entry (the rows exactly as COPYed): only when the ids are one range and there are many.
    bulk = scattered is None and BULK_AUDIT_ROWS <= count <= domain.MAX_BULK_ROWS
    copied: list[str] | None = [] if bulk else None
    try:
        async with driver.cursor() as cursor, cursor.copy(f"COPY {table.relation} ({columns}) FROM STDIN") as copy:

            async def send(piece: list[str]) -> None:
                chunk = "".join(piece)
                await copy.write(chunk)
                if copied is not None:
                    copied.append(chunk)

            piece: list[str] = []
            size = 0
            for row_id, line in zip(ids, lines, strict=True):
                text = f"{row_id}\t{line}\n"
                piece.append(text)
                size += len(text)
                if size >= COPY_PIECE:
                    await send(piece)
                    piece, size = [], 0
            if piece:
                await send(piece)
    except psycopg.errors.DataError as exc:
        raise _copy_error(exc, row_path) from None
    params: dict[str, Any] = {**_audit_params(repo, table, operation, actor)}
    if scattered is None:
        params.update(low=low, high=high)
        mine = "t.id BETWEEN :low AND :high"  # every id in the range was drawn above, so these are our rows
    else:
        params["ids"] = ids
        mine = "t.id = ANY(:ids)"
    audited = copied is not None and await _bulk_audit(repo, params, count, "".join(copied))
    rows: list[str] | None = None
    if return_rows and audited:
        statement = sa.text(f"SELECT row_to_json(t)::text FROM {table.relation} t WHERE {mine} ORDER BY t.id")
        rows = [str(r) for r in (await repo.connection.execute(statement, params)).scalars()]
    elif return_rows:
        statement = sa.text(
            f"WITH ins AS (SELECT t.id, row_to_json(t)::text AS row FROM {table.relation} t WHERE {mine}), "
            f"aud AS ({_audit_insert('ins', 'NULL', 'ins.row')}) "
            "SELECT ins.row FROM ins ORDER BY ins.id"
        )
        rows = [str(r) for r in (await repo.connection.execute(statement, params)).scalars()]
    elif not audited:
        statement = sa.text(_audit_insert("t", "NULL", "row_to_json(t)::text", f"{table.relation} t WHERE {mine}"))
        await repo.connection.execute(statement, params)
    if count >= ANALYZE_AFTER:
        # Only when this insert at least doubles what the planner knows of the table (-1: never analysed), so a
        # series of bulk inserts analyses log(n) times, not every time.
        known = await repo.connection.execute(
            sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:relation)"), {"relation": table.relation}
        )
        if count >= (known.scalar_one_or_none() or 0):
            await repo.connection.execute(sa.text(f"ANALYZE {table.relation}"))
    return Inserted(ids, rows)


def _condition(table: Table, where: dict[str, Any], params: dict[str, Any], alias: str) -> str:
    parts: list[str] = []
    for position, (name, value) in enumerate(where.items()):
        column = f"{alias}.{_quote(name)}"
        sql_type = table.sql_type(name)
        key = f"w{position}"
        if isinstance(value, list):
            present = [v for v in value if v is not None]
            params[key] = present
            test = f"{column} = ANY(CAST(:{key} AS {sql_type}[]))"
            parts.append(f"({test} OR {column} IS NULL)" if len(present) < len(value) else test)
        elif value is None:
            parts.append(f"{column} IS NULL")
        else:
            params[key] = value
            parts.append(f"{column} = CAST(:{key} AS {sql_type})")
    return " AND ".join(parts) or "TRUE"


async def update(
    repo: TenantRepository,
    table: Table,
    where: dict[str, Any],
    changes: dict[str, Any],
    actor: Actor,
    *,
    operation: str = "update",
) -> list[str]:
    """Set `changes` on the rows `where` selects; the rows as they are now."""
    await _utc(repo)
    params = _audit_params(repo, table, operation, actor)
    condition = _condition(table, where, params, "t")
    sets = []
    for position, (name, value) in enumerate(changes.items()):
        params[f"s{position}"] = value
        sets.append(f"{_quote(name)} = CAST(:s{position} AS {table.sql_type(name)})")
    statement = sa.text(
        f"WITH old AS (SELECT t.id, row_to_json(t)::text AS before FROM {table.relation} t WHERE {condition} "
        "FOR UPDATE), "
        f"upd AS (UPDATE {table.relation} t SET {', '.join(sets)}, updated_at = now() FROM old WHERE t.id = old.id "
        "RETURNING t.*), "
        f"aud AS ({_audit_insert('upd', 'old.before', 'row_to_json(upd)::text', 'upd JOIN old ON old.id = upd.id')}) "
        "SELECT row_to_json(upd)::text AS row FROM upd ORDER BY upd.id"
    )
    result = await repo.connection.execute(statement, params)
    return [str(r) for r in result.scalars()]


async def delete(repo: TenantRepository, table: Table, row_id: int, actor: Actor) -> bool:
    await _utc(repo)
    params = {**_audit_params(repo, table, "delete", actor), "row_id": row_id}
    statement = sa.text(
        f"WITH del AS (DELETE FROM {table.relation} t WHERE t.id = :row_id RETURNING t.*), "
        f"aud AS ({_audit_insert('del', 'row_to_json(del)::text', 'NULL')}) "
        "SELECT count(*) FROM del"
    )
    return bool((await repo.connection.execute(statement, params)).scalar_one())


async def lock_selection(repo: TenantRepository, table: Table, where: dict[str, Any]) -> None:
    """Serialise upserts of one selection (two concurrent upserts would otherwise both insert)."""
    key = json.dumps([table.id, sorted((k, str(v)) for k, v in where.items())])
    await repo.connection.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


@dataclass(frozen=True)
class Sort:
    column: str = "id"
    descending: bool = False


def parse_sort(table: Table, sort: str) -> Sort:
    text = sort.strip()
    descending = text.startswith("-")
    name = text.lstrip("-+") or "id"
    if name not in ("id", "created_at", "updated_at") and name not in table.schema.by_name:
        raise InvalidArgument(
            f"{name!r} is not a field of this table (id, created_at, updated_at or a declared field)", field="sort"
        )
    return Sort(name, descending)


def select_statement(
    table: Table, where: dict[str, Any], sort: Sort, request: pagination.PageRequest
) -> tuple[sa.TextClause, dict[str, Any]]:
    """The query of one page of rows (also EXPLAINed by tests): keyset on (sort column, id), nulls last."""
    params: dict[str, Any] = {}
    conditions = [_condition(table, where, params, "t")]
    column = f"t.{_quote(sort.column)}"
    less_or_more = "<" if sort.descending else ">"
    if request.after is not None:
        try:
            after_value, after_id = json.loads(request.after, parse_float=Decimal)
            after_id = int(after_id)
        except (ValueError, TypeError):
            raise InvalidArgument("is not a token of this listing", field="page_token") from None
        params["after_id"] = after_id
        if sort.column == "id":
            conditions.append(f"t.id {less_or_more} :after_id")
        elif after_value is None:
            conditions.append(f"({column} IS NULL AND t.id {less_or_more} :after_id)")
        else:
            params["after_value"] = after_value
            typed = f"CAST(:after_value AS {table.sql_type(sort.column)})"
            conditions.append(
                f"({column} {less_or_more} {typed} OR ({column} = {typed} AND t.id {less_or_more} :after_id) "
                f"OR {column} IS NULL)"
            )
    direction = "DESC" if sort.descending else "ASC"
    order = f"t.id {direction}" if sort.column == "id" else f"{column} {direction} NULLS LAST, t.id {direction}"
    params["limit"] = request.size + 1
    params["offset"] = request.offset
    statement = sa.text(
        f"SELECT row_to_json(t)::text AS row, json_build_array({column}, t.id)::text AS cursor "
        f"FROM {table.relation} t WHERE {' AND '.join(conditions)} ORDER BY {order} LIMIT :limit OFFSET :offset"
    )
    return statement, params


async def select(
    repo: TenantRepository, table: Table, where: dict[str, Any], sort: Sort, request: pagination.PageRequest
) -> tuple[list[str], str]:
    await _utc(repo)
    statement, params = select_statement(table, where, sort, request)
    rows = list((await repo.connection.execute(statement, params)).all())
    rows, token = pagination.next_token(rows, request, "cursor")
    return [str(row.row) for row in rows], token


async def count(repo: TenantRepository, table: Table, where: dict[str, Any]) -> int:
    params: dict[str, Any] = {}
    condition = _condition(table, where, params, "t")
    statement = sa.text(f"SELECT count(*) FROM {table.relation} t WHERE {condition}")
    return int((await repo.connection.execute(statement, params)).scalar_one())


@dataclass(frozen=True)
class AuditEntry:
    id: int
    operation: str
    row_id: int
    before: str | None
    after: str | None
    actor_kind: str
    actor_id: str
    created_at: datetime


async def audit_page(
    repo: TenantRepository, table: Table, request: pagination.PageRequest, *, row_id: int = 0
) -> tuple[list[AuditEntry], str]:
    """Newest first, keyset-paged on the entry id like every listing (`pagination`), bulk rows expanded into their
    entries (migration 0014): the newest `size + 1 + offset` stored rows below the cursor hold at least that many
    entries below it, since each row's first entry has the row's own id."""
    audit = custom_table_audit.c
    wanted = request.size + 1 + request.offset
    query = repo.select(custom_table_audit, audit.table_id == table.id)
    if request.after is not None:
        query = query.where(audit.id < int(request.after))
    if row_id:  # a bulk row covering row_id starts at most MAX_BULK_ROWS before it: a bounded index range
        query = query.where(
            audit.row_id.between(row_id - domain.MAX_BULK_ROWS + 1, row_id), audit.row_id + audit.row_count > row_id
        )
    stored = (await repo.connection.execute(query.order_by(audit.id.desc()).limit(wanted))).all()
    entries: list[AuditEntry] = []
    copied: list[tuple[int, str]] = []  # (position in entries, COPY line) of the expanded entries
    for row in stored:
        if row.row_count == 1:
            entries.append(
                AuditEntry(
                    row.id,
                    row.operation,
                    row.row_id,
                    row.before,
                    row.after,
                    row.actor_kind,
                    row.actor_id,
                    row.created_at,
                )
            )
            continue
        lines = row.after.split("\n")
        offsets = [row_id - row.row_id] if row_id else range(row.row_count - 1, -1, -1)
        for k in offsets:
            if request.after is not None and row.id + k >= int(request.after):
                continue
            copied.append((len(entries), lines[k]))
            entries.append(
                AuditEntry(
                    row.id + k, row.operation, row.row_id + k, None, None, row.actor_kind, row.actor_id, row.created_at
                )
            )
            if len(entries) >= wanted:
                break
        if len(entries) >= wanted:
            break
    rendered = await _render_copied(repo, table, [(line, entries[i].created_at) for i, line in copied])
    for (position, _), after in zip(copied, rendered, strict=True):
        entries[position] = dataclasses.replace(entries[position], after=after)
    return pagination.next_token(entries[request.offset :], request, "id")


async def _render_copied(repo: TenantRepository, table: Table, lines: list[tuple[str, datetime]]) -> list[str]:
    """Rows as a bulk insert COPYed them (with the insert's time as created/updated) rendered as `row_to_json` of the
    stored row renders them: each column's text through its type's input function, as COPY read it."""
    if not lines:
        return []
    width = 1 + len(table.fields)
    values: list[str | None] = []
    for line, created_at in lines:
        columns = domain.copy_fields(line)
        if len(columns) != width:
            raise ValueError(f"a bulk audit line of {table.id} has {len(columns)} columns, not {width}")
        values.extend(columns)
        values.append(created_at.isoformat())
    await _utc(repo)
    stride = width + 1
    casts = [f"v[i * {stride} + 1]::bigint"]
    casts += [f"v[i * {stride} + {n + 2}]::{domain.SQL_TYPES[f.type]}" for n, f in enumerate(table.fields)]
    casts += [f"v[i * {stride} + {stride}]::timestamptz"] * 2
    statement = sa.text(
        f"SELECT row_to_json(ROW({', '.join(casts)})::{table.relation})::text "
        "FROM (SELECT CAST(:values AS text[]) AS v) a, generate_series(0, :n - 1) AS i ORDER BY i"
    )
    result = await repo.connection.execute(statement, {"values": values, "n": len(lines)})
    return [str(r) for r in result.scalars()]


async def claim_step(repo: TenantRepository, key: str) -> str | None:
    """Claim a workflow step's table operation by its idempotency key. None: go ahead (the result is recorded
    with `record_step` in this transaction); else the JSON result an earlier attempt recorded."""
    statement = (
        pg_insert(custom_table_step_results)
        .values(org_id=repo.org_id, idempotency_key=key)
        .on_conflict_do_nothing()
        .returning(custom_table_step_results.c.idempotency_key)
    )
    if (await repo.connection.execute(statement)).first() is not None:
        return None
    row = await repo.get(custom_table_step_results, idempotency_key=key)
    return "null" if row is None or row.result is None else str(row.result)


async def purge_step_results(connection: AsyncConnection) -> int:
    """Drop the recorded results of table steps whose run has ended (the key starts with the run id): a step is only
    retried while its run runs. Housekeeping across every org (called periodically by the server)."""
    results = custom_table_step_results.c
    ended = sa.select(runs.c.id).where(
        runs.c.org_id == results.org_id,
        runs.c.id == sa.func.split_part(results.idempotency_key, ":", 1),
        runs.c.status.in_(run_store.FINAL),
    )
    result = await connection.execute(sa.delete(custom_table_step_results).where(sa.exists(ended)))
    return int(result.rowcount)


async def record_step(repo: TenantRepository, key: str, result: str) -> None:
    await repo.update(custom_table_step_results, {"idempotency_key": key}, {"result": result})
