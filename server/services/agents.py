"""AgentService: standalone agents (docs /agents). An agent run is a `runs` row whose definition is one react
`loop` step; workers execute it like any run (server/runtime/agent.py), so this service only starts, reads, resumes
and cancels runs, and projects the run plus its journal (server/store/agents.py) into the documented shape."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hyphae.agents.v1 import agent_pb2, agent_service_pb2_grpc
from hyphae.agents.v1 import agent_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import dsl, evaluate
from server.errors import InvalidArgument, NotFound
from server.ids import new_id
from server.runtime.events import EventHub
from server.services import Context, timestamp
from server.store import agents as store
from server.store import pagination, tenant
from server.store import runs as run_store
from server.store.db import in_unit_of_work

STATUS = {
    "running": agent_pb2.AGENT_STATUS_RUNNING,
    "paused": agent_pb2.AGENT_STATUS_PAUSED,
    "completed": agent_pb2.AGENT_STATUS_COMPLETED,
    "failed": agent_pb2.AGENT_STATUS_FAILED,
    "cancelled": agent_pb2.AGENT_STATUS_CANCELLED,
    "condition_not_met": agent_pb2.AGENT_STATUS_FAILED,  # never for an agent run (it has no condition)
}
STATUS_NAMES = {number: name for name, number in STATUS.items() if name != "condition_not_met"}
SETTINGS = ("model", "max_iterations", "timeout_ms", "temperature", "on_stuck")
# A synchronous execute waits at most this long unless the agent's timeout_ms says otherwise.
SYNC_WAIT_SECONDS = 120.0
STOP_REASONS = {
    "max_iterations_reached": "max_iterations",
    "stuck": "stuck",
    "timeout": "timeout",
    "llm_error": "llm_error",
    "tool_error": "tool_error",
}
ESCALATE = "__escalate__"


def agent_properties(spec: agent_pb2.AgentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the react step's properties, the input) from the body: settings from `config`, overridden by flat keys."""
    config = jsonvalue.parse(spec.config, "config") if spec.HasField("config") else {}
    if not isinstance(config, dict):
        raise InvalidArgument("must be a JSON object", field="config")
    unknown = sorted(set(config) - set(SETTINGS))
    if unknown:
        raise InvalidArgument(f"unknown key {unknown[0]!r} (expected one of {', '.join(SETTINGS)})", field="config")
    settings = dict(config)
    for name in ("model", "max_iterations", "timeout_ms", "temperature"):
        if spec.HasField(name):
            settings[name] = getattr(spec, name)
    if spec.HasField("on_stuck"):
        settings["on_stuck"] = jsonvalue.parse(spec.on_stuck, "on_stuck")
    tools = jsonvalue.parse(spec.tools, "tools") if spec.HasField("tools") else []
    value = jsonvalue.parse(spec.input, "input") if spec.HasField("input") else {}
    if not isinstance(value, dict):
        raise InvalidArgument("must be a JSON object", field="input")
    properties = {"mode": "react", "objective": spec.objective, "tools": tools, **settings}
    try:
        dsl.validate_definition(
            {"actions": [{"type": "loop", "properties": properties}]}, step_types=(), allow_react=True
        )
    except dsl.DefinitionError as exc:
        field = exc.path.removeprefix("definition.actions[0].properties.")
        if field.startswith(tuple(SETTINGS)) and field.split(".")[0] in config:
            field = f"config.{field}"
        raise InvalidArgument(exc.message, field=field) from None
    return properties, value


def _react_step(definition: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The first react step of a run's definition (a standalone agent's only step)."""
    for index, step in enumerate(definition.get("actions") or []):
        properties = step.get("properties") or {}
        if step.get("type") == "loop" and properties.get("mode") == "react":
            return index, properties
    return 0, {}


def trace_entries(journal: list[Any]) -> list[agent_pb2.TraceEntry]:
    entries = []
    for row in journal:
        if row.kind == "model":
            continue
        request = json.loads(row.request)
        response = json.loads(row.response) if row.response is not None else None
        entry = agent_pb2.TraceEntry(
            iteration=row.iteration,
            timestamp=timestamp(row.started_at),
            thought=str(request.get("thought") or request.get("detail") or ""),
            action=str(request.get("action") or (ESCALATE if row.kind == "pause" else "")),
            action_input=jsonvalue.of(request.get("action_input", {"question": request.get("question")})),
            success=bool(row.success),
        )
        if response is not None:
            entry.observation.CopyFrom(jsonvalue.of(response.get("observation")))
        entries.append(entry)
    return entries


def _stop_reason(status: str, error: str) -> str:
    if status == "completed":
        return "end_turn"
    if status == "cancelled":
        return "cancelled"
    if status != "failed":
        return ""
    reason = error.split(": ", 1)[1] if error.startswith("step ") and ": " in error else error
    return STOP_REASONS.get(reason.split(":", 1)[0], "tool_error" if reason else "")


def agent_proto(run: Any, journal: list[Any], pending: dict[str, Any], with_trace: bool) -> agent_pb2.AgentRun:
    """`pending`: the run's pending interrupts by kind. Paused only while a workflow tool waits for its child run
    (`child_run`), the agent reads as running; a pause for a person (`agent`) is shown."""
    parked = "child_run" in pending
    pause = pending.get("agent")
    tokens = (sum(row.prompt_tokens for row in journal), sum(row.completion_tokens for row in journal))
    context = json.loads(run.context)
    _, properties = _react_step(json.loads(run.definition))
    objective = evaluate.stringify(evaluate.resolve(properties.get("objective") or "", context))
    message = agent_pb2.AgentRun(
        agent_run_id=run.id,
        status=STATUS["running" if parked and run.status == "paused" else run.status],
        objective=objective,
        iterations=max((row.iteration for row in journal if row.kind != "model"), default=0),
        triggered_runs=[child for row in journal if (child := json.loads(row.request).get("child_run_id")) is not None],
        created_at=timestamp(run.created_at),
        completed_at=timestamp(run.completed_at),
        updated_at=timestamp(run.updated_at),
        previous_run_id=str(context.get("__previous_run_id") or ""),
        error=run.error,
        stop_reason=_stop_reason(run.status, run.error),
        usage=agent_pb2.Usage(prompt_tokens=tokens[0], completion_tokens=tokens[1], total_tokens=sum(tokens)),
    )
    result = json.loads(run.output) if run.output is not None else None
    if run.status == "completed" and isinstance(result, dict) and "answer" in result:
        message.final_answer.CopyFrom(jsonvalue.of(result.get("answer")))
        if isinstance(result.get("confidence"), int | float):
            message.confidence = float(result["confidence"])
        message.summary = str(result.get("summary") or "")
    if pause is not None and run.status == "paused":
        payload = json.loads(pause.payload)
        message.pause.CopyFrom(jsonvalue.of({k: v for k, v in payload.items() if k not in ("scope", "seq")}))
    if with_trace:
        message.trace.extend(trace_entries(journal))
    return message


def human_input(request: pb.ResumeAgentRequest) -> Any:
    for name in ("human_input", "input"):
        if request.HasField(name):
            return jsonvalue.parse(getattr(request, name), name)
    text = request.response or request.guidance or request.message
    if request.HasField("approved"):
        return {"approved": request.approved, "message": text} if text else {"approved": request.approved}
    if not text:
        raise InvalidArgument(
            "is required: the person's answer (or input, response, guidance, message, approved)", field="human_input"
        )
    return text


class AgentService(agent_service_pb2_grpc.AgentServiceServicer):
    def __init__(self, engine: AsyncEngine, events: EventHub, wake_workers: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.wake_workers = wake_workers
        self.events = events  # the process's one LISTEN connection, shared with RunService

    async def _read(self, org_id: str, run_id: str, with_trace: bool) -> agent_pb2.AgentRun:
        async with tenant(self.engine, org_id) as repo:
            run = await store.get(repo, run_id)
            journal = (await store.journals(repo, [run_id]))[run_id]
            pending = (await store.pending_interrupts(repo, [run_id]))[run_id]
        return agent_proto(run, journal, pending, with_trace)

    async def _previous(self, org_id: str, run_id: str) -> dict[str, Any]:
        """What a new run learns from `previous_run_id`: its objective, answer and the last steps of its trace."""
        if not run_id.startswith(store.AGENT_PREFIX):
            raise InvalidArgument("must be an agent run id (agent-...)", field="previous_run_id")
        try:
            previous = await self._read(org_id, run_id, with_trace=True)
        except NotFound:
            raise NotFound(f"previous_run_id {run_id!r} not found") from None
        steps = [
            {"action": e.action, "observation": json.loads(e.observation.raw) if e.observation.raw else None}
            for e in previous.trace[-5:]
        ]
        return {
            "run_id": run_id,
            "objective": previous.objective,
            "status": STATUS_NAMES.get(previous.status, ""),
            "final_answer": json.loads(previous.final_answer.raw) if previous.final_answer.raw else None,
            "last_steps": steps,
        }

    async def ExecuteAgent(self, request: pb.ExecuteAgentRequest, context: Context) -> pb.ExecuteAgentResponse:
        org_id = auth.org_id()
        properties, value = agent_properties(request.agent)
        run_id = new_id("agent")
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        run_context = evaluate.new_context(value, run_id=run_id, now=now)
        if request.agent.previous_run_id:
            run_context["__previous_run_id"] = request.agent.previous_run_id
            run_context["__previous_agent"] = await self._previous(org_id, request.agent.previous_run_id)
        definition = {"actions": [{"type": "loop", "properties": properties}]}
        async with tenant(self.engine, org_id) as repo:
            await store.create(
                repo,
                run_id=run_id,
                definition=jsonvalue.dumps(definition, default=str),
                input_raw=request.agent.input.raw if request.agent.HasField("input") else "{}",
                context_raw=jsonvalue.dumps(run_context, default=str),
            )
        self.wake_workers()
        # Inside an idempotent unit of work the run commits only with the answer: answer at once, as with async.
        if not request.async_mode and not in_unit_of_work():
            timeout = properties.get("timeout_ms")
            await self._wait(org_id, run_id, timeout / 1000 + 5 if isinstance(timeout, int) else SYNC_WAIT_SECONDS)
        return pb.ExecuteAgentResponse(agent=await self._read(org_id, run_id, with_trace=False))

    async def _wait(self, org_id: str, run_id: str, seconds: float) -> None:
        """Until the run ends or pauses for a person, or `seconds` pass (parked on a child run, it goes on)."""
        deadline = asyncio.get_running_loop().time() + seconds
        async with self.events.subscribe(org_id, run_id) as subscription:
            while True:
                async with tenant(self.engine, org_id) as repo:
                    status = await run_store.status(repo, run_id)
                    parked = (
                        status == "paused" and "child_run" in (await store.pending_interrupts(repo, [run_id]))[run_id]
                    )
                left = deadline - asyncio.get_running_loop().time()
                if (status != "running" and not parked) or left <= 0:
                    return
                await subscription.wait(min(left, 1.0))

    async def ListAgents(self, request: pb.ListAgentsRequest, context: Context) -> pb.ListAgentsResponse:
        status = STATUS_NAMES.get(request.status, "")
        page = pagination.page_request(
            page_size=request.page_size, page_token=request.page_token, filters={"status": status}
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, status=status)
            ids = [row.id for row in rows]
            journals = await store.journals(repo, ids)
            pending = await store.pending_interrupts(repo, ids)
            agents = [agent_proto(row, journals[row.id], pending[row.id], False) for row in rows]
        return pb.ListAgentsResponse(agents=agents, next_page_token=token)

    async def GetAgentUsage(self, request: pb.GetAgentUsageRequest, context: Context) -> pb.GetAgentUsageResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            prompt, completion = await store.usage(repo)
        usage = agent_pb2.Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
        return pb.GetAgentUsageResponse(usage=usage)

    async def GetAgentStatus(self, request: pb.GetAgentStatusRequest, context: Context) -> pb.GetAgentStatusResponse:
        return pb.GetAgentStatusResponse(
            agent=await self._read(auth.org_id(), request.agent_run_id, with_trace=request.include_trace)
        )

    async def GetAgentTrace(self, request: pb.GetAgentTraceRequest, context: Context) -> pb.GetAgentTraceResponse:
        return pb.GetAgentTraceResponse(agent=await self._read(auth.org_id(), request.agent_run_id, with_trace=True))

    async def ResumeAgent(self, request: pb.ResumeAgentRequest, context: Context) -> pb.ResumeAgentResponse:
        answer = human_input(request)
        org_id = auth.org_id()
        async with tenant(self.engine, org_id) as repo:
            await store.resume(repo, request.agent_run_id, answer)
        self.wake_workers()
        return pb.ResumeAgentResponse(agent=await self._read(org_id, request.agent_run_id, with_trace=False))

    async def CancelAgent(self, request: pb.CancelAgentRequest, context: Context) -> pb.CancelAgentResponse:
        org_id = auth.org_id()
        async with tenant(self.engine, org_id) as repo:
            await run_store.cancel(repo, request.agent_run_id, "cancelled with DELETE /agents/{id}")
        return pb.CancelAgentResponse(agent=await self._read(org_id, request.agent_run_id, with_trace=False))
