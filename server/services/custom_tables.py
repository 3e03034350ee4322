"""TableService: custom tables over REST/gRPC. Checks with domain.custom_tables, SQL in store.custom_tables."""

from __future__ import annotations

from typing import Any

from hyphae.api.v1 import json_pb2
from hyphae.tables.v1 import table_pb2, table_service_pb2_grpc
from hyphae.tables.v1 import table_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import custom_tables as domain
from server.errors import InvalidArgument, NotFound
from server.services import Context, timestamp
from server.store import custom_tables as store
from server.store import pagination, tenant


def actor() -> store.Actor:
    """Who the audit log names for a call: the API key, the org (direct engine mode) or the SDK key."""
    principal = auth.principal()
    if principal.kind == "secret":
        return store.Actor("api_key", principal.key_id)
    if principal.kind == "publishable":
        return store.Actor("sdk_user", principal.key_id)
    return store.Actor("org_header", principal.org_id)


def to_proto(table: store.Table) -> table_pb2.CustomTable:
    message = table_pb2.CustomTable(id=table.id, name=table.name, created_at=timestamp(table.created_at))
    for field in table.fields:
        item = message.fields.add(name=field.name, type=field.type, required=field.required)
        if field.max_length is not None:
            item.max_length = field.max_length
    return message


def _json(text: str | None) -> json_pb2.Json:
    return json_pb2.Json(raw="null" if text is None else text)


def audit_to_proto(row: Any) -> table_pb2.AuditEntry:
    return table_pb2.AuditEntry(
        id=row.id,
        operation=row.operation,
        row_id=row.row_id,
        before=_json(row.before),
        after=_json(row.after),
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        created_at=timestamp(row.created_at),
    )


class TableService(table_service_pb2_grpc.TableServiceServicer):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def CreateTable(self, request: pb.CreateTableRequest, context: Context) -> pb.CreateTableResponse:
        domain.check_name(request.name, "name")
        fields = [
            domain.Field(f.name, f.type, f.required, f.max_length if f.HasField("max_length") else None)
            for f in request.fields
        ]
        domain.check_fields(fields)
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.create(repo, request.name, fields)
        return pb.CreateTableResponse(table=to_proto(table))

    async def ListTables(self, request: pb.ListTablesRequest, context: Context) -> pb.ListTablesResponse:
        page = pagination.page_request(
            page_size=request.page_size, page_token=request.page_token, limit=request.limit, offset=request.offset
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            tables, token = await store.page(repo, page)
        return pb.ListTablesResponse(tables=[to_proto(t) for t in tables], next_page_token=token)

    async def GetTable(self, request: pb.GetTableRequest, context: Context) -> pb.GetTableResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
        return pb.GetTableResponse(table=to_proto(table))

    async def DeleteTable(self, request: pb.DeleteTableRequest, context: Context) -> pb.DeleteTableResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            await store.drop(repo, await store.find(repo, request.name))
        return pb.DeleteTableResponse(name=request.name, deleted=True)

    async def InsertRow(self, request: pb.InsertRowRequest, context: Context) -> pb.InsertRowResponse:
        row = jsonvalue.parse(request.row, "row", decimals=True)
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            if isinstance(row, dict) and len(row) == 1:  # {"data": {...}} / {"row": {...}}, when not a field
                [(wrapper, inner)] = row.items()
                if wrapper in ("data", "row") and wrapper not in table.schema.by_name and isinstance(inner, dict):
                    row = inner
            [stored] = await store.insert(repo, table, [table.schema.row(row, "")], actor())
        return pb.InsertRowResponse(row=json_pb2.Json(raw=stored))

    async def BulkInsertRows(self, request: pb.BulkInsertRowsRequest, context: Context) -> pb.BulkInsertRowsResponse:
        if not request.rows:
            raise InvalidArgument("needs at least one row", field="rows")
        if len(request.rows) > domain.MAX_BULK_ROWS:
            raise InvalidArgument(f"at most {domain.MAX_BULK_ROWS} rows per call", field="rows")
        return_rows = request.return_rows if request.HasField("return_rows") else True
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            encoder = domain.CopyEncoder(table.schema)
            # encoded while the COPY runs (a bad row stops it, and the transaction rolls back)
            lines = (
                encoder.line(jsonvalue.parse(raw, f"rows[{i}]", decimals=True), f"rows[{i}]")
                for i, raw in enumerate(request.rows)
            )
            inserted = await store.insert_lines(
                repo, table, lines, actor(), count=len(request.rows), return_rows=return_rows
            )
        return pb.BulkInsertRowsResponse(
            inserted=len(inserted.ids),
            ids=inserted.ids,
            rows=[json_pb2.Json(raw=r) for r in inserted.rows or ()],
        )

    async def UpdateRows(self, request: pb.UpdateRowsRequest, context: Context) -> pb.UpdateRowsResponse:
        uses_keys = bool(request.keys) or request.HasField("values") or request.HasField("fields")
        uses_where = request.HasField("where") or request.HasField("set")
        if uses_keys and uses_where:
            raise InvalidArgument("give either keys/values/fields or where/set, not both", field="where")
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            schema = table.schema
            if uses_where:
                where = (
                    schema.selection(jsonvalue.parse(request.where, "where", decimals=True), "where")
                    if request.HasField("where")
                    else {}
                )
                changes = schema.changes(
                    jsonvalue.parse(request.set, "set", decimals=True) if request.HasField("set") else {}, "set"
                )
                selection_field = "where"
            else:
                values = jsonvalue.parse(request.values, "values", decimals=True) if request.HasField("values") else []
                where = schema.keys_values(list(request.keys), values)
                changes = schema.changes(
                    jsonvalue.parse(request.fields, "fields", decimals=True) if request.HasField("fields") else {},
                    "fields",
                )
                selection_field = "keys"
            if not where:
                raise InvalidArgument(
                    "must select rows (updating every row needs an explicit filter)", field=selection_field
                )
            rows = await store.update(repo, table, where, changes, actor())
        return pb.UpdateRowsResponse(updated=len(rows), rows=[json_pb2.Json(raw=r) for r in rows])

    async def ListRows(self, request: pb.ListRowsRequest, context: Context) -> pb.ListRowsResponse:
        where_raw = jsonvalue.parse(request.where, "where", decimals=True) if request.HasField("where") else {}
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            page=request.page,
            filters={"name": request.name, "where": request.where.raw, "sort": request.sort},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            where = table.schema.selection(where_raw, "where")
            sort = store.parse_sort(table, request.sort)
            rows, token = await store.select(repo, table, where, sort, page)
            total = await store.count(repo, table, where)
        return pb.ListRowsResponse(
            rows=[json_pb2.Json(raw=r) for r in rows],
            total=total,
            limit=page.size,
            offset=page.offset,
            next_page_token=token,
        )

    async def PatchRow(self, request: pb.PatchRowRequest, context: Context) -> pb.PatchRowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            changes = table.schema.changes(jsonvalue.parse(request.changes, "changes", decimals=True), "changes")
            rows = await store.update(repo, table, {"id": request.row_id}, changes, actor())
        if not rows:
            raise NotFound(f"row {request.row_id} not found in custom table {request.name!r}")
        return pb.PatchRowResponse(row=json_pb2.Json(raw=rows[0]))

    async def DeleteRow(self, request: pb.DeleteRowRequest, context: Context) -> pb.DeleteRowResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            deleted = await store.delete(repo, table, request.row_id, actor())
        if not deleted:
            raise NotFound(f"row {request.row_id} not found in custom table {request.name!r}")
        return pb.DeleteRowResponse(row_id=request.row_id, deleted=True)

    async def ListAudit(self, request: pb.ListAuditRequest, context: Context) -> pb.ListAuditResponse:
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters={"name": request.name, "row_id": request.row_id},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            table = await store.find(repo, request.name)
            rows, token = await store.audit_page(repo, table, page, row_id=request.row_id)
        return pb.ListAuditResponse(entries=[audit_to_proto(r) for r in rows], next_page_token=token)
