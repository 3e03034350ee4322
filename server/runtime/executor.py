"""Executes one run, step after step, each step's result committed before the next starts.

The interpreter is small: evaluate the top-level condition once, then for each step its filter (or onFalse
branch), run the step, store its output under its key in the context. Step kinds: the primitives (`matcher`,
`loop`, approvals and forms, `custom-table` in runtime/table_step.py) and registered actions of kind `http`,
`matcher`, `db`, `llm` and `custom-table`; the other kinds fail the step with a clear error until they land.
Side effects get an idempotency key (run id + step index) recorded before the first attempt and sent on every one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import httpx
import psycopg
import psycopg.conninfo
from hyphae.actions.v1 import action_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import jsonvalue
from server.blobstore import BlobStore
from server.crypto import Sealed, SecretBox, config_context
from server.domain import dsl, evaluate, matcher
from server.domain.knowledge import Embedder
from server.errors import Unavailable
from server.runtime import agent, documents, llm, outbound, table_step
from server.store import TenantRepository, interrupts, loop_items
from server.store import runs as store
from server.store.db import connect, direct_pool
from server.store.tables import actions as actions_table
from server.store.tables import org_config

MAX_STEPS = 1000
# A loop step handles at most this many items (a larger list fails the step, it is not truncated).
MAX_LOOP_ITEMS = 10_000
MAX_LOOP_CONCURRENCY = 50
MAX_LOOP_DEPTH = 4
MAX_DB_ROWS = 10_000
# Interrupt kinds a step inside a foreach may open: they resume the run AT the loop step (which skips its recorded
# items), unlike approvals and forms, which resume from the next step.
PAUSABLE_IN_LOOP = ("agent", "child_run")
log = logging.getLogger("hyphae.executor")


class StepFailed(Exception):
    """The step cannot succeed; the message is shown as the step's and the run's error."""


@dataclass
class Outcome:
    status: str  # completed, skipped or failed
    step_type: str
    output: Any = None
    output_key: str = ""
    context_updates: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    on_false: bool = False
    # paused: (kind, payload, ttl_seconds) of the interrupt to open
    interrupt: tuple[str, dict[str, Any], float | None] | None = None
    # its row was written before it ran (steps with side effects: the idempotency key is on record first)
    started: bool = False


@dataclass(frozen=True)
class LlmDefaults:
    """The server's model endpoint; an org overrides it with settings:llm_base_url and api:llm_api_key."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    model: str = "gpt-4o-mini"


class ActionCache:
    """The org's registered actions, read once per execution and only if a step needs one."""

    def __init__(self, executor: Executor, org_id: str) -> None:
        self.executor = executor
        self.org_id = org_id
        self._actions: dict[str, action_pb2.Action] | None = None

    async def get(self, step_type: str) -> action_pb2.Action | None:
        if step_type in dsl.PRIMITIVES:
            return None
        if self._actions is None:
            self._actions = await self.executor.load_actions(self.org_id)
        return self._actions.get(step_type)


class Executor:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        policy: outbound.OutboundPolicy,
        client: httpx.AsyncClient,
        llm_defaults: LlmDefaults | None = None,
        blobs: BlobStore | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        self.engine = engine
        self.box = box
        self.policy = policy
        self.client = client
        self.llm_defaults = llm_defaults or LlmDefaults()
        self.blobs = blobs  # for doc: references; None: they fail the step
        self.embedder = embedder  # knowledge_search (agents): None = full text + trigrams

    async def execute(self, lease: store.Lease, row: Any) -> None:
        """Run the steps from `current_step`. Per step one statement (its own transaction) commits its result, the
        context and its event (plus, for a step with a side effect, one before it records the attempt and its
        idempotency key); the last step's statement also completes the run (server/store/runs.commit)."""
        definition = jsonvalue.loads(row.definition)
        context: dict[str, Any] = jsonvalue.loads(row.context)
        steps: list[Any] = definition.get("actions", [])[:MAX_STEPS]
        registered = ActionCache(self, lease.org_id)
        if row.current_step == 0 and definition.get("condition") is not None:
            try:
                met = evaluate.evaluate_condition(definition["condition"], context, "definition.condition")
            except evaluate.EvaluationError as exc:
                await self._finish(lease, "failed", context, None, str(exc), "workflow_run_failed")
                return
            if not met:
                await self._finish(lease, "condition_not_met", context, None, "", "workflow_run_condition_not_met")
                return
        if row.current_step >= len(steps):  # resumed after its last step (an answered final approval)
            await self._finish(lease, "completed", context, row.output, "", "workflow_run_completed")
            return
        last_output: Any = None
        for index in range(row.current_step, len(steps)):
            outcome = await self._step(lease, index, steps[index], context, registered)
            if outcome.interrupt is not None:
                await self._pause(lease, index, outcome, context)
                return
            context.update(outcome.context_updates)
            if outcome.status == "completed":
                last_output = outcome.output
            final = outcome.status == "failed" or index == len(steps) - 1
            step = store.StepResult(
                index=index,
                step_type=outcome.step_type,
                status=outcome.status,
                output_key=outcome.output_key,
                output=None if outcome.output is None else jsonvalue.dumps(outcome.output, default=str),
                error=outcome.error,
                on_false=outcome.on_false,
                started=outcome.started,
            )
            events: list[tuple[str, dict[str, Any]]] = [
                (f"step_{outcome.status}", {"index": index, "type": outcome.step_type, "status": outcome.status})
            ]
            async with direct_pool(self.engine).connection() as connection:
                if not final:
                    await store.commit(
                        connection,
                        lease,
                        context=jsonvalue.dumps(context, default=str),
                        events=events,
                        step=step,
                        current_step=index + 1,
                    )
                    continue
                failed = outcome.status == "failed"
                events.append(
                    ("workflow_run_failed", {"error": outcome.error})
                    if failed
                    else ("workflow_run_completed", {"status": "completed"})
                )
                await store.commit(
                    connection,
                    lease,
                    context=jsonvalue.dumps(context, default=str),
                    events=events,
                    step=step,
                    status="failed" if failed else "completed",
                    output=None if failed or last_output is None else jsonvalue.dumps(last_output, default=str),
                    error=f"step {index} ({outcome.step_type}): {outcome.error}" if failed else "",
                )
                return

    async def _record_step(self, connection: Any, lease: store.Lease, index: int, outcome: Outcome) -> None:
        if not outcome.started:  # skipped, side-effect free, or failed before starting: one write makes its row
            await store.start_step(
                connection, lease, index, step_type=outcome.step_type, idempotency_key=f"{lease.run_id}:{index}"
            )
        await store.finish_step(
            connection,
            lease,
            index,
            status=outcome.status,
            output_key=outcome.output_key,
            output=None if outcome.output is None else jsonvalue.dumps(outcome.output, default=str),
            error=outcome.error,
            on_false=outcome.on_false,
        )

    async def _pause(self, lease: store.Lease, index: int, outcome: Outcome, context: dict[str, Any]) -> None:
        """The step waits for a person: one transaction opens the interrupt and parks the run at this step."""
        assert outcome.interrupt is not None
        kind, payload, ttl = outcome.interrupt
        async with connect(self.engine) as connection:
            await store.hold(connection, lease)
            await self._record_step(connection, lease, index, outcome)
            await interrupts.open_interrupt(connection, lease, index=index, kind=kind, payload=payload, ttl_seconds=ttl)
            await store.finish(
                connection,
                lease,
                status="paused",
                context=jsonvalue.dumps(context, default=str),
                output=None,
                error="",
                current_step=index,
            )
            event = {"approval": "pbot_approval_requested", "form": "pbot_form_requested"}.get(kind, "agent_paused")
            await store.append_event(connection, lease.org_id, lease.run_id, event, {"index": index, **payload})

    async def _finish(
        self, lease: store.Lease, status: str, context: dict[str, Any], output: str | None, error: str, event: str
    ) -> None:
        async with direct_pool(self.engine).connection() as connection:
            await store.commit(
                connection,
                lease,
                context=jsonvalue.dumps(context, default=str),
                events=[(event, {"status": status})],
                status=status,
                output=output,
                error=error,
            )

    def _condition(self, condition: Any, context: dict[str, Any], path: str) -> bool:
        try:
            return evaluate.evaluate_condition(condition, context, path)
        except evaluate.EvaluationError as exc:
            raise StepFailed(str(exc)) from None

    async def _step(
        self, lease: store.Lease, index: int, step: dict[str, Any], context: dict[str, Any], registered: ActionCache
    ) -> Outcome:
        step_type = str(step.get("type", ""))
        on_false = started = False
        try:
            condition = (step.get("filter") or {}).get("condition", step.get("condition"))
            if condition is not None and not self._condition(condition, context, f"definition.actions[{index}].filter"):
                if not step.get("onFalse"):
                    return Outcome("skipped", step_type)
                step, on_false = step["onFalse"], True
                step_type = str(step.get("type", ""))
            action = await registered.get(step_type)
            if step_type == "loop" or (action is not None and action.kind != action_pb2.ACTION_KIND_MATCHER):
                # a side effect follows: the attempt and its idempotency key are on record before it
                async with direct_pool(self.engine).connection() as connection:
                    await store.start_step_direct(
                        connection, lease, index, step_type=step_type, idempotency_key=f"{lease.run_id}:{index}"
                    )
                started = True
            outcome = await self._run_step(lease, f"{lease.run_id}:{index}", step, step_type, context, registered)
        except (StepFailed, evaluate.EvaluationError, matcher.MatcherError, outbound.OutboundError) as exc:
            return Outcome("failed", step_type, error=str(exc), on_false=on_false, started=started)
        except (store.LeaseLost, Unavailable):  # the database failed, not the step: the worker retries the run
            raise
        except Exception:  # a bug, not the step's fault: fail the step rather than retry it forever
            log.exception("run %s step %d (%s) failed unexpectedly", lease.run_id, index, step_type)
            return Outcome(
                "failed",
                step_type,
                error="internal error while running the step (logged)",
                on_false=on_false,
                started=started,
            )
        outcome.on_false, outcome.started = on_false, started
        return outcome

    async def _run_step(
        self,
        lease: store.Lease,
        key: str,
        step: dict[str, Any],
        step_type: str,
        context: dict[str, Any],
        registered: ActionCache,
        depth: int = 0,
    ) -> Outcome:
        """One step (its filter already passed); `key` is the idempotency key of its side effects."""
        if step_type == "loop":
            return await self._loop(lease, key, step, context, registered, depth)
        properties = await self._documents(lease, evaluate.resolve(step.get("properties") or {}, context))
        action = await registered.get(step_type)
        if step_type == "matcher":
            return self._matcher(step_type, properties, step)
        if step_type == "PbotApproval":
            payload = {"comment": evaluate.stringify(properties.get("comment"))}
            if properties.get("request_payload") is not None:
                payload["request_payload"] = properties["request_payload"]
            return Outcome(
                "paused", step_type, output_key=str(step.get("outputKey") or ""), interrupt=("approval", payload, None)
            )
        if step_type == "PbotForm":
            ttl = properties.get("ttl_seconds")
            form = {"expected_keys": list(properties.get("expected_keys") or [])}
            ttl_seconds = (
                float(ttl) if isinstance(ttl, (int, float)) and not isinstance(ttl, bool) and ttl > 0 else None
            )
            return Outcome("paused", step_type, interrupt=("form", form, ttl_seconds))
        if action is not None and action.kind == action_pb2.ACTION_KIND_MATCHER:
            defaults = {
                "left": action.left,
                "right": action.right,
                "matchOn": list(action.match_on),
                **({"tolerance": action.tolerance} if action.HasField("tolerance") else {}),
                **({"dateWindowDays": action.date_window_days} if action.HasField("date_window_days") else {}),
                **({"fuzzyThreshold": action.fuzzy_threshold} if action.HasField("fuzzy_threshold") else {}),
                **({"descriptionKey": action.description_key} if action.HasField("description_key") else {}),
            }
            merged = await self._documents(
                lease, {**evaluate.resolve(defaults, context, scopes=[properties]), **properties}
            )
            return self._matcher(step_type, merged, step)
        if table_step.handles(step_type, action):  # the primitive and custom-table actions: one code path
            try:
                output, key_out = await table_step.run(
                    self.engine, lease.org_id, lease.run_id, key, step, step_type, properties, action
                )
            except table_step.TableStepFailed as exc:
                raise StepFailed(str(exc)) from None
            updates = {key_out: output} if key_out else {}
            return Outcome("completed", step_type, output=output, output_key=key_out, context_updates=updates)
        if action is None or action.kind not in (
            action_pb2.ACTION_KIND_HTTP,
            action_pb2.ACTION_KIND_LLM,
            action_pb2.ACTION_KIND_DB,
        ):
            raise StepFailed(f"step type {step_type!r} cannot be executed yet by this server version")
        if action.kind == action_pb2.ACTION_KIND_HTTP:
            output = await self._http(lease, key, action, properties, context)
        elif action.kind == action_pb2.ACTION_KIND_LLM:
            output = await self._llm(lease, key, action, properties, context)
        else:
            output = await self._db(lease, action, properties, context)
        output_key = str(step.get("outputKey") or (action.output_key if action.HasField("output_key") else step_type))
        return Outcome(
            "completed", step_type, output=output, output_key=output_key, context_updates={output_key: output}
        )

    async def _loop(
        self,
        lease: store.Lease,
        key: str,
        step: dict[str, Any],
        context: dict[str, Any],
        registered: ActionCache,
        depth: int,
    ) -> Outcome:
        """`foreach`: the inner steps for every item, up to max_concurrency items at a time.

        Each finished item's result is journaled as it ends (server/store/loop_items.py, scope = this loop's key):
        run again — after a crash, or after a pause inside it was answered — the loop returns the recorded results
        of finished items and runs only the others, whose side effects carry the same idempotency keys
        (`<run>:<step>:<item>:<inner step>`) as the first time. An agent (react step) inside may pause: the other
        items run to their end and are recorded, then the loop step pauses the run with that agent's interrupt;
        answered, the loop runs again and only the paused item's agent goes on (replaying its own journal)."""
        properties = step.get("properties") or {}
        if depth >= MAX_LOOP_DEPTH:
            raise StepFailed(f"loops nest deeper than {MAX_LOOP_DEPTH} levels")
        if properties.get("mode") == "react":
            return await self._react(lease, key, properties, context)
        if properties.get("mode", "foreach") != "foreach":
            raise StepFailed(f"unknown loop mode {properties.get('mode')!r}")
        items = evaluate.resolve(properties.get("items_path"), context)
        if not isinstance(items, list):
            raise StepFailed(f"loop: items_path {properties.get('items_path')!r} must resolve to a list")
        if len(items) > MAX_LOOP_ITEMS:
            raise StepFailed(f"loop over {len(items)} items exceeds the limit of {MAX_LOOP_ITEMS} items per loop step")
        variable = str(properties.get("item_variable_name") or "item")
        inner_steps = list(properties.get("actions_to_execute") or [])
        stop_on_error = properties.get("failure_strategy", "stop_on_error") != "continue_on_error"
        limit = asyncio.Semaphore(max(1, min(int(properties.get("max_concurrency") or 1), MAX_LOOP_CONCURRENCY)))
        failed = asyncio.Event()
        async with connect(self.engine) as connection:
            recorded = await loop_items.load(connection, lease, key)
        if any(result.get("status") == "failed" for result in recorded.values()):
            failed.set()
        pauses: dict[int, tuple[str, dict[str, Any], float | None]] = {}

        async def record(position: int, result: dict[str, Any]) -> dict[str, Any]:
            async with connect(self.engine) as connection:
                await store.hold(connection, lease)
                await loop_items.record(connection, lease, key, position, result)
            return result

        async def run_item(position: int, item: Any) -> dict[str, Any]:
            if position in recorded:  # finished before this execution of the loop
                return recorded[position]
            async with limit:
                if failed.is_set() and stop_on_error:
                    return {"item": item, "status": "not_run"}
                result = await run_inner(position, item)
                if result["status"] == "paused":
                    return result
                return await record(position, result)

        async def run_inner(position: int, item: Any) -> dict[str, Any]:
            scope = {**context, variable: item, "item": item, "__index": position}
            output: Any = None
            for inner_index, inner in enumerate(inner_steps):
                inner_type = str(inner.get("type", ""))
                condition = (inner.get("filter") or {}).get("condition", inner.get("condition"))
                if condition is not None and not self._condition(condition, scope, "loop filter"):
                    if not inner.get("onFalse"):
                        continue
                    inner = inner["onFalse"]
                    inner_type = str(inner.get("type", ""))
                try:
                    outcome = await self._run_step(
                        lease, f"{key}:{position}:{inner_index}", inner, inner_type, scope, registered, depth + 1
                    )
                except (StepFailed, evaluate.EvaluationError, matcher.MatcherError) as exc:
                    failed.set()
                    return {"item": item, "status": "failed", "error": f"{inner_type}: {exc}"}
                if outcome.interrupt is not None:
                    if outcome.interrupt[0] in PAUSABLE_IN_LOOP:  # an agent: answered, it resumes in place
                        pauses[position] = outcome.interrupt
                        return {"item": item, "status": "paused"}
                    # approvals and forms resume a run from the NEXT step, which would skip the loop's rest
                    failed.set()
                    return {"item": item, "status": "failed", "error": f"{inner_type} cannot pause inside a loop"}
                if outcome.status == "failed":
                    failed.set()
                    return {"item": item, "status": "failed", "error": f"{inner_type}: {outcome.error}"}
                scope.update(outcome.context_updates)
                output = outcome.output
            return {"item": item, "status": "completed", "output": output}

        results = await asyncio.gather(*(run_item(position, item) for position, item in enumerate(items)))
        failures = [result for result in results if result["status"] == "failed"]
        if failures and stop_on_error:
            raise StepFailed(f"item {results.index(failures[0])} failed: {failures[0]['error']}")
        if pauses:  # the other items are done and recorded; the first paused item's question goes to a person
            return Outcome("paused", "loop", interrupt=pauses[min(pauses)])
        summary = {
            "total": len(items),
            "completed": sum(r["status"] == "completed" for r in results),
            "failed": len(failures),
        }
        updates: dict[str, Any] = {}
        output_key = ""
        if properties.get("collect_results"):
            output_key = str(properties.get("result_key") or "loop_results")
            updates[output_key] = results
        return Outcome(
            "completed", "loop", output={**summary, "results": results}, output_key=output_key, context_updates=updates
        )

    async def _documents(self, lease: store.Lease, properties: Any) -> Any:
        """`doc:<id>[@<version>]` strings become the document's content (server/runtime/documents.py)."""
        if self.blobs is None:
            if documents.references(properties):
                raise StepFailed("doc: references need document storage, which this worker was started without")
            return properties
        return await documents.resolve(self.engine, self.blobs, lease.org_id, properties)

    async def _react(
        self, lease: store.Lease, key: str, properties: dict[str, Any], context: dict[str, Any]
    ) -> Outcome:
        """An agent (server/runtime/agent.py): {answer, confidence, summary} under result_key, or a pause that
        parks the run at this step (resumed here, the agent replays its journal)."""
        try:
            result = await agent.ReactRunner(self, lease, key, properties, context).run()
        except agent.AgentFailed as exc:
            raise StepFailed(str(exc)) from None
        except agent.Paused as paused:  # a person's answer, or (child_run) a child run's end, resumes it here
            return Outcome("paused", "loop", interrupt=(paused.kind, paused.payload, None))
        output_key = str(properties.get("result_key") or "")
        updates = {output_key: result.output} if output_key else {}
        return Outcome("completed", "loop", output=result.output, output_key=output_key, context_updates=updates)

    def _matcher(self, step_type: str, properties: dict[str, Any], step: dict[str, Any]) -> Outcome:
        config = matcher.config_from_properties(properties)
        left, right = properties.get("left"), properties.get("right")
        if not isinstance(left, list) or not isinstance(right, list):
            raise StepFailed("matcher: left and right must resolve to lists (check the @references)")
        result = matcher.match(left, right, config)
        keys = matcher.output_keys(properties)
        values = dict(zip(keys, (result.matched, result.unmatched_left, result.unmatched_right), strict=True))
        return Outcome("completed", step_type, output=values, output_key=",".join(keys), context_updates=values)

    async def _http(
        self,
        lease: store.Lease,
        key: str,
        action: action_pb2.Action,
        properties: dict[str, Any],
        context: dict[str, Any],
    ) -> Any:
        url = str(evaluate.resolve(action.url, context, scopes=[properties]))
        headers = {k: str(v) for k, v in evaluate.resolve(dict(action.headers), context, scopes=[properties]).items()}
        method = action.http_method or "POST"
        body: Any = outbound.MISSING_BODY
        if method in ("POST", "PUT", "PATCH"):
            if action.HasField("body"):
                body = evaluate.resolve(jsonvalue.parse(action.body, "body"), context, scopes=[properties])
            else:
                body = properties
        # Every part of the request (url with its query, headers, body) may reference org config: load every key
        # any of them names, then substitute last, right before sending (results and errors are redacted).
        request = [url, headers] if body is outbound.MISSING_BODY else [url, headers, body]
        secrets = await self._secrets(lease.org_id, evaluate.secret_keys(request))
        url, headers, *rest = evaluate.substitute_secrets(request, secrets)
        if rest:
            body = rest[0]
        policy = self.policy
        if action.HasField("timeout_ms"):
            policy = dataclasses.replace(policy, timeout_seconds=action.timeout_ms / 1000)
        try:
            response = await outbound.send(
                self.client,
                method,
                url,
                policy=policy,
                headers=headers,
                json_body=body,
                idempotency_key=key,
                max_retries=action.max_retries if action.HasField("max_retries") else 2,
            )
        except outbound.OutboundError as exc:  # its message may quote the URL, which may hold a secret
            raise StepFailed(str(evaluate.redact(str(exc), secrets.values()))) from None
        if not 200 <= response.status < 300:
            raise StepFailed(f"{method} {evaluate.redact(url, secrets.values())} answered HTTP {response.status}")
        result = response.json_or_text() if action.passthrough else {"status": response.status}
        return evaluate.redact(result, secrets.values())

    async def _llm(
        self,
        lease: store.Lease,
        key: str,
        action: action_pb2.Action,
        properties: dict[str, Any],
        context: dict[str, Any],
    ) -> str:
        """Fill the template from the step's properties (then the context) and ask the org's model."""
        prompt = evaluate.stringify(evaluate.resolve(action.template, context, scopes=[properties]))
        settings = await self._config(lease.org_id, llm.SETTINGS_KEYS)
        defaults = self.llm_defaults
        try:
            return await llm.complete(
                self.client,
                self.policy,
                base_url=settings.get("settings:llm_base_url") or defaults.base_url,
                api_key=settings.get("api:llm_api_key") or defaults.api_key,
                model=action.model if action.HasField("model") else defaults.model,
                prompt=prompt,
                max_tokens=action.max_tokens if action.HasField("max_tokens") else 1024,
                temperature=action.temperature if action.HasField("temperature") else 0.7,
                idempotency_key=key,
            )
        except (llm.LlmError, outbound.OutboundError) as exc:
            raise StepFailed(str(evaluate.redact(str(exc), settings.values()))) from None

    async def _db(
        self, lease: store.Lease, action: action_pb2.Action, properties: dict[str, Any], context: dict[str, Any]
    ) -> Any:
        """A parameterised query on the org's own Postgres (never Hyphae's database): rows as objects for a query
        that returns rows (at most MAX_DB_ROWS), else {"rowCount": n}. Values are bound, never interpolated."""
        datasource = str(evaluate.resolve(action.datasource, context, scopes=[properties]))
        secrets = await self._secrets(lease.org_id, evaluate.secret_keys(datasource))
        datasource = str(evaluate.substitute_secrets(datasource, secrets))
        params = (
            evaluate.resolve(jsonvalue.parse(action.params, "params"), context, scopes=[properties])
            if (action.HasField("params"))
            else []
        )
        if not isinstance(params, list):
            raise StepFailed("params must resolve to a list")
        if not datasource.startswith(("postgresql://", "postgres://")):
            raise StepFailed("db actions support postgresql:// datasources only")
        try:
            info = psycopg.conninfo.conninfo_to_dict(datasource)
        except psycopg.ProgrammingError:
            raise StepFailed("the datasource is not a valid postgresql:// URL") from None
        host, port = str(info.get("host") or ""), int(info.get("port") or 5432)
        if not host or host.startswith("/") or "," in host:
            raise StepFailed("the datasource must name one TCP host")
        addresses = await outbound.checked_addresses(host, port, self.policy)
        own = self.engine.url
        if (
            own.port in (port, None)
            and own.database == info.get("dbname")
            and (own.host in (host, None) or any(str(a) == own.host for a in addresses))
        ):
            raise StepFailed("db actions cannot query Hyphae's own database")
        query, ordered = positional_query(action.query, params)
        try:
            async with await psycopg.AsyncConnection.connect(
                datasource, hostaddr=str(addresses[0]), connect_timeout=10, autocommit=True
            ) as connection:
                await connection.execute("SET statement_timeout = 30000")
                cursor = await connection.execute(query, ordered)
                if cursor.description is None:
                    return {"rowCount": cursor.rowcount}
                columns = [column.name for column in cursor.description]
                rows = await cursor.fetchmany(MAX_DB_ROWS)
                return [dict(zip(columns, row, strict=True)) for row in rows]
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StepFailed(f"query failed: {evaluate.redact(message, secrets.values())}") from None

    async def load_actions(self, org_id: str) -> dict[str, action_pb2.Action]:
        return {action.name: action.spec for action in await load_actions(self.engine, org_id)}

    async def _config(self, org_id: str, keys: AbstractSet[str]) -> dict[str, str]:
        return await load_config(self.engine, self.box, org_id, keys)

    async def _secrets(self, org_id: str, keys: set[str]) -> dict[str, str]:
        """Values of the orgconfig: references a step uses; every one must be set."""
        found = await self._config(org_id, keys)
        missing = sorted(keys - set(found))
        if missing:
            raise StepFailed(f"org config key {missing[0]!r} is not set; add it with POST /org-config")
        return found


class RegisteredAction(NamedTuple):
    name: str
    kind: str
    spec: action_pb2.Action


async def load_actions(engine: AsyncEngine, org_id: str) -> list[RegisteredAction]:
    """The org's registered actions, by name (the executor, the agents' tools and AI generation read them)."""
    async with connect(engine) as connection:
        repo = TenantRepository(connection, org_id)
        rows = (await connection.execute(repo.select(actions_table).order_by(actions_table.c.action_name))).all()
    return [RegisteredAction(row.action_name, row.kind, action_pb2.Action.FromString(row.spec)) for row in rows]


async def load_config(engine: AsyncEngine, box: SecretBox, org_id: str, keys: AbstractSet[str]) -> dict[str, str]:
    """The org's config values of `keys` that are set (decrypted; JSON values as text)."""
    if not keys:
        return {}
    async with connect(engine) as connection:
        repo = TenantRepository(connection, org_id)
        rows = (await connection.execute(repo.select(org_config, org_config.c.key.in_(sorted(keys))))).all()
    found = {}
    for row in rows:
        raw = box.open(Sealed(row.key_id, row.nonce, row.ciphertext), config_context(org_id, row.key))
        value = json.loads(raw)
        found[row.key] = value if isinstance(value, str) else json.dumps(value)
    return found


_POSITIONAL = re.compile(r"\$(\d+)")


def positional_query(query: str, params: list[Any]) -> tuple[str, list[Any]]:
    """`$1, $2` placeholders (as the docs write them) to psycopg's `%s`, with the values in placeholder order."""
    ordered: list[Any] = []

    def placeholder(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if not 1 <= number <= len(params):
            raise StepFailed(f"the query uses ${number} but params has {len(params)} value(s)")
        value = params[number - 1]
        ordered.append(json.dumps(value) if isinstance(value, (dict, list)) else value)
        return "%s"

    return _POSITIONAL.sub(placeholder, query.replace("%", "%%")), ordered
