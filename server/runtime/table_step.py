"""The `custom-table` step: the primitive and registered actions of kind `custom-table` run this same code.

Properties (the action's `table` / `operation` are defaults the step may override):
- `write`: insert one row made of the keys[i] = values[i] pairs and `fields` → the stored row.
- `read`: the rows where keys[i] = values[i] (all rows without keys), by id, at most `limit` (default 1000) → a list.
- `update`: set `fields` on the rows keys/values select → `{"updated": n, "rows": [...]}`.
- `upsert`: update the rows keys/values select, or insert keys + fields when there is none →
  `{"updated": n, "inserted": m, "rows": [...]}`.

A mutation is made under the step's idempotency key (`<run_id>:<index>`, inside loops longer): the key and the result
commit in the mutation's transaction, so a step that runs again after a crash (the write committed, the step's own
result did not) returns the recorded result instead of writing twice. The audit log names the run as the actor.
"""

from __future__ import annotations

from typing import Any

from hyphae.actions.v1 import action_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import jsonvalue
from server.domain import custom_tables as domain
from server.errors import HyphaeError
from server.store import custom_tables as store
from server.store import pagination, tenant

PRIMITIVE = "custom-table"


class TableStepFailed(Exception):
    """The operation cannot succeed (unknown table, invalid value, ...); the message says why."""


def handles(step_type: str, action: action_pb2.Action | None) -> bool:
    return step_type == PRIMITIVE or (action is not None and action.kind == action_pb2.ACTION_KIND_CUSTOM_TABLE)


async def run(
    engine: AsyncEngine,
    org_id: str,
    run_id: str,
    key: str,
    step: dict[str, Any],
    step_type: str,
    properties: dict[str, Any],
    action: action_pb2.Action | None,
) -> tuple[Any, str]:
    """Run the step's table operation for run `run_id` (the audit's actor); (output, context key of the output
    or "")."""
    actor = store.Actor("run", run_id)
    table_name = properties.get("table") or (action.table if action is not None and action.HasField("table") else "")
    operation = properties.get("operation") or (
        action.operation if action is not None and action.HasField("operation") else ""
    )
    if not isinstance(table_name, str) or not table_name:
        raise TableStepFailed("custom-table: properties.table must name a custom table")
    if operation not in domain.OPERATIONS:
        raise TableStepFailed(f"custom-table: properties.operation must be one of {', '.join(domain.OPERATIONS)}")
    try:
        output = await _operate(engine, org_id, key, table_name, str(operation), properties, actor)
    except HyphaeError as exc:
        raise TableStepFailed(f"custom table {table_name!r} ({operation}): {exc.message}") from None
    if step.get("outputKey"):
        output_key = str(step["outputKey"])
    elif action is not None:
        output_key = action.output_key if action.HasField("output_key") else step_type
    else:
        output_key = ""
    return output, output_key


async def _operate(
    engine: AsyncEngine,
    org_id: str,
    key: str,
    table_name: str,
    operation: str,
    properties: dict[str, Any],
    actor: store.Actor,
) -> Any:
    async with tenant(engine, org_id) as repo:
        table = await store.find(repo, table_name)
        schema = table.schema
        keys, values = properties.get("keys"), properties.get("values")
        pairs = schema.keys_values(keys or [], values or [], "properties") if keys or values else {}
        raw_pairs = dict(zip(keys or [], values or [], strict=False))  # as written: schema.row coerces them
        fields = properties.get("fields")
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise TableStepFailed("custom-table: properties.fields must be an object")
        if operation == "read":
            limit = properties.get("limit", domain.DEFAULT_READ_ROWS)
            if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= domain.MAX_READ_ROWS:
                raise TableStepFailed(f"custom-table: properties.limit must be a whole number 1-{domain.MAX_READ_ROWS}")
            page = pagination.PageRequest(size=limit, after=None, offset=0, filter_hash="")
            rows, _ = await store.select(repo, table, pairs, store.Sort(), page)
            return [jsonvalue.loads(row) for row in rows]
        recorded = await store.claim_step(repo, key)
        if recorded is not None:  # this step's write committed in an earlier attempt
            return jsonvalue.loads(recorded)
        if operation == "write":
            row = schema.row({**raw_pairs, **fields}, "properties.fields")
            [stored] = await store.insert(repo, table, [row], actor)
            output: Any = jsonvalue.loads(stored)
        else:
            if not pairs:
                raise TableStepFailed(f"custom-table: operation {operation!r} needs properties.keys/values")
            if operation == "update":
                changes = schema.changes(fields, "properties.fields")
                updated = await store.update(repo, table, pairs, changes, actor)
                output = {"updated": len(updated), "rows": [jsonvalue.loads(r) for r in updated]}
            else:
                await store.lock_selection(repo, table, pairs)
                updated = (
                    await store.update(
                        repo, table, pairs, schema.changes(fields, "properties.fields"), actor, operation="upsert"
                    )
                    if fields
                    else (await store.select(repo, table, pairs, store.Sort(), _ALL))[0]
                )
                inserted: list[str] = []
                if not updated:
                    row = schema.row({**raw_pairs, **fields}, "properties.fields")
                    inserted = await store.insert(repo, table, [row], actor, operation="upsert")
                output = {
                    "updated": len(updated) if fields else 0,
                    "inserted": len(inserted),
                    "rows": [jsonvalue.loads(r) for r in updated + inserted],
                }
        await store.record_step(repo, key, jsonvalue.of(output).raw)
        return output


_ALL = pagination.PageRequest(size=domain.MAX_READ_ROWS, after=None, offset=0, filter_hash="")
