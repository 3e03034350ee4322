"""The generation worker: drafts workflows with the org's model for `ai_generations` rows.

Each process that runs workers runs one Generator. It claims processing generations under a lease (renewed while it
works), asks the model for a draft (server/domain/generation.py builds the prompt), validates the draft exactly as
POST /workflows would, and on errors asks again with the validator's messages, at most MAX_ATTEMPTS drafts. Every
draft is committed before the next model call, so a generation taken over after a crash continues from the drafts
already made; each model call carries the Idempotency-Key `<generation_id>:<attempt>`. A create-from-ai process
creates the workflow in the same transaction that completes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
from hyphae.api.v1 import json_pb2
from hyphae.workflows.v1 import workflow_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import jsonvalue
from server.crypto import SecretBox
from server.domain import actions as action_rules
from server.domain import evaluate
from server.domain.generation import MAX_ATTEMPTS, ActionInfo, action_from_json, build_prompt, parse_answer
from server.errors import HyphaeError
from server.runtime import llm, outbound
from server.runtime.executor import LlmDefaults, load_actions, load_config
from server.services.workflows import sync_schedule, validated_definition
from server.store import TenantRepository
from server.store import actions as action_store
from server.store import generations as store
from server.store import workflows as workflow_store
from server.store.db import connect, log_will_retry
from server.store.tables import workflows as workflows_table

log = logging.getLogger("hyphae.generation")
MAX_ANSWER_CHARS = 50_000
DEFAULT_TEMPERATURE = 0.2


class Generator:
    def __init__(
        self,
        engine: AsyncEngine,
        box: SecretBox,
        policy: outbound.OutboundPolicy,
        client: httpx.AsyncClient,
        llm_defaults: LlmDefaults,
        *,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.box = box
        self.policy = policy
        self.client = client
        self.llm_defaults = llm_defaults
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """A generation was submitted in this process: look now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                self._wake.clear()
                free = self.concurrency - len(self._running)
                claimed = await self._claim(free) if free > 0 else 0
                if free <= 0 or claimed < free:
                    waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                    await asyncio.wait(waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
        finally:
            tasks = list(self._running.values())
            for task in tasks:  # their leases expire and another process continues from the recorded drafts
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _claim(self, free: int) -> int:
        try:
            async with connect(self.engine) as connection:
                rows = await store.claim(connection, self.owner, lease_seconds=self.lease_seconds, limit=free)
        except Exception:
            log_will_retry(log, "could not claim generations; will retry")
            await asyncio.sleep(self.poll_seconds)
            return 0
        for row in rows:
            lease = store.Lease(self.owner, row.org_id, row.id)
            self._running[row.id] = asyncio.create_task(self._guarded(lease, row))
        return len(rows)

    async def _guarded(self, lease: store.Lease, row: Any) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(lease, asyncio.current_task()))
        try:
            await self.generate(lease, row)
        except (store.LeaseLost, asyncio.CancelledError):
            log.info("generation %s is no longer ours", lease.generation_id)
        except Exception:
            log.exception("generation %s: unexpected error", lease.generation_id)
            with contextlib.suppress(Exception):
                async with connect(self.engine) as connection:
                    await store.finish(connection, lease, status="failed", error="internal error while generating")
        finally:
            heartbeat.cancel()
            self._running.pop(lease.generation_id, None)
            self._wake.set()

    async def _heartbeat(self, lease: store.Lease, task: asyncio.Task[Any] | None) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                async with connect(self.engine) as connection:
                    held = await store.renew(connection, lease, self.lease_seconds)
            except Exception:
                log_will_retry(log, "generation heartbeat failed; will retry")
                continue
            if not held and task is not None:
                task.cancel()
                return

    async def generate(self, lease: store.Lease, row: Any) -> None:
        """Draft until valid or MAX_ATTEMPTS drafts, continuing from the drafts already recorded."""
        options: dict[str, Any] = json.loads(row.options)
        attempts: list[dict[str, Any]] = json.loads(row.attempts)
        result: dict[str, Any] | None = json.loads(row.result) if row.result else None
        settings = await load_config(self.engine, self.box, row.org_id, llm.SETTINGS_KEYS)
        api_key = settings.get("api:llm_api_key") or self.llm_defaults.api_key
        actions = await self._actions(row.org_id)
        while len(attempts) < MAX_ATTEMPTS:
            prompt = build_prompt(row.prompt, actions, attempts)
            try:
                text = await llm.complete(
                    self.client,
                    self.policy,
                    base_url=settings.get("settings:llm_base_url") or self.llm_defaults.base_url,
                    api_key=api_key,
                    model=options.get("model") or self.llm_defaults.model,
                    prompt=prompt,
                    max_tokens=4096,
                    temperature=float(options.get("temperature", DEFAULT_TEMPERATURE)),
                    idempotency_key=f"{row.id}:{len(attempts) + 1}",
                )
            except (llm.LlmError, outbound.OutboundError) as exc:
                secrets = [v for v in (*settings.values(), self.llm_defaults.api_key) if v]
                message = str(evaluate.redact(str(exc), secrets))
                async with connect(self.engine) as connection:
                    await store.finish(connection, lease, status="failed", error=message)
                return
            draft, errors = parse_answer(text)
            if draft is not None:
                name = options.get("name") or draft.name
                if row.kind == "create" and not options.get("name") and name:
                    name = await self._free_name(row.org_id, name)
                result = {**draft.as_json(), "name": name}
                errors = await self._validate(row.org_id, result, creating=row.kind == "create")
            attempts.append({"text": text[:MAX_ANSWER_CHARS], "errors": errors})
            if not errors and result is not None:
                try:
                    await self._complete(lease, row, attempts, result)
                    return
                except HyphaeError as exc:  # e.g. the name was taken meanwhile
                    attempts[-1]["errors"] = [exc.message]
            async with connect(self.engine) as connection:
                await store.record(connection, lease, attempts=json.dumps(attempts), result=_dumps(result))
        async with connect(self.engine) as connection:
            last = "; ".join(attempts[-1]["errors"])
            await store.finish(
                connection, lease, status="failed", error=f"no valid draft after {len(attempts)} attempts: {last}"
            )

    async def _complete(
        self, lease: store.Lease, row: Any, attempts: list[dict[str, Any]], result: dict[str, Any]
    ) -> None:
        """Record the valid draft and complete; create-from-ai registers the drafted actions and creates the
        workflow in the same transaction."""
        async with connect(self.engine) as connection:
            await store.record(connection, lease, attempts=json.dumps(attempts), result=_dumps(result))
            workflow_id = None
            if row.kind == "create":
                workflow_id = await _provision(TenantRepository(connection, row.org_id), result, creating=True)
            await store.finish(connection, lease, status="completed", workflow_id=workflow_id)

    async def _validate(self, org_id: str, result: dict[str, Any], *, creating: bool) -> list[str]:
        """The validator's errors for a draft (none: valid), judged exactly as POST /actions and POST /workflows
        would: its actions and workflow are created in a savepoint that is then rolled back."""
        async with connect(self.engine) as connection:
            savepoint = await connection.begin_nested()
            try:
                await _provision(TenantRepository(connection, org_id), result, creating=creating)
            except HyphaeError as exc:
                return [exc.message]
            finally:
                await savepoint.rollback()
        return []

    async def _free_name(self, org_id: str, name: str) -> str:
        """The model's proposed name, suffixed _2, _3... if the org already has a workflow of that name."""
        async with connect(self.engine) as connection:
            taken = set(await TenantRepository(connection, org_id).scalars(workflows_table.c.name))
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name[:190]}_{n}"
        return candidate

    async def _actions(self, org_id: str) -> list[ActionInfo]:
        actions = await load_actions(self.engine, org_id)
        return [ActionInfo(action.name, action.kind, action.spec.description) for action in actions]


async def _provision(repo: TenantRepository, result: dict[str, Any], *, creating: bool) -> str | None:
    """Register the draft's actions and validate its workflow (creating it when `creating`): the created
    workflow's id, or a HyphaeError naming the problem."""
    for index, value in enumerate(result["actions"]):
        action = action_from_json(value, f"actions[{index}]")
        spec = action.SerializeToString(deterministic=True)
        kind = action_rules.KIND_NAMES[action.kind]
        await action_store.create(repo, action_name=action.action_name, kind=kind, spec=spec)
    workflow = _workflow(result["name"], result["description"], result["definition"])
    definition, spec_json = await validated_definition(repo, workflow)
    if not creating:
        return None
    created = await workflow_store.create(
        repo, name=workflow.name, description=workflow.description, definition=definition
    )
    if spec_json is not None:
        await sync_schedule(repo, created.id, spec_json)
    return str(created.id)


def _workflow(name: str, description: str, definition: Any) -> workflow_pb2.Workflow:
    raw = jsonvalue.dumps(definition)
    return workflow_pb2.Workflow(name=name, description=description, definition=json_pb2.Json(raw=raw))


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


@contextlib.asynccontextmanager
async def running_generator(generator: Generator) -> AsyncIterator[Generator]:
    """The generator loop as a background task of the caller's event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(generator.run(stop))
    try:
        yield generator
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
