"""AiService: AI workflow generation (submit, status, result; create-from-ai) and workflow graphs.

Submitting stores an `ai_generations` row and wakes this process's generator (server/runtime/generation.py), which
drafts, validates and retries; reads serve the row. Ids of another org, or of the other kind (a generation id asked
for as a create-from-ai process), are not found.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from hyphae.ai.v1 import ai_pb2, ai_service_pb2_grpc
from hyphae.ai.v1 import ai_service_pb2 as pb
from hyphae.api.v1 import json_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import dag, dsl
from server.domain.generation import MAX_PROMPT_CHARS
from server.errors import AlreadyExists, InvalidArgument
from server.services import Context, timestamp
from server.store import generations as store
from server.store import tenant
from server.store import workflows as workflow_store
from server.store.tables import workflows as workflows_table

STATUS = {
    "processing": ai_pb2.GENERATION_STATUS_PROCESSING,
    "completed": ai_pb2.GENERATION_STATUS_COMPLETED,
    "failed": ai_pb2.GENERATION_STATUS_FAILED,
}


def _options(prompt: str, options: ai_pb2.LlmOptions, name: str = "") -> str:
    if not prompt.strip():
        raise InvalidArgument("must describe the workflow to generate", field="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidArgument(f"must be at most {MAX_PROMPT_CHARS} characters", field="prompt")
    if len(options.model) > 200:
        raise InvalidArgument("must be at most 200 characters", field="llmOptions.model")
    value: dict[str, Any] = {"model": options.model}
    if options.HasField("temperature"):
        if not (math.isfinite(options.temperature) and 0 <= options.temperature <= 2):
            raise InvalidArgument("must be between 0 and 2", field="llmOptions.temperature")
        value["temperature"] = options.temperature
    if name:
        value["name"] = name
    return json.dumps(value)


def _last_errors(attempts: list[dict[str, Any]]) -> list[str]:
    return list(attempts[-1]["errors"]) if attempts else []


def to_proto(row: Any) -> ai_pb2.Generation:
    attempts: list[dict[str, Any]] = json.loads(row.attempts)
    result: dict[str, Any] = json.loads(row.result) if row.result else {}
    errors = _last_errors(attempts)
    generation = ai_pb2.Generation(
        generation_id=row.id,
        status=STATUS[row.status],
        prompt=row.prompt,
        name=result.get("name") or json.loads(row.options).get("name", ""),
        description=result.get("description", ""),
        explanation=result.get("explanation", ""),
        validation=ai_pb2.Validation(valid=bool(attempts) and not errors, errors=errors),
        attempts=len(attempts),
        history=[
            ai_pb2.Attempt(number=i + 1, valid=not attempt["errors"], errors=attempt["errors"])
            for i, attempt in enumerate(attempts)
        ],
        error=row.error or "",
        workflow_id=row.workflow_id or "",
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        completed_at=timestamp(row.completed_at),
    )
    for action in result.get("actions", []):
        generation.actions.append(json_pb2.Json(raw=json.dumps(action, ensure_ascii=False)))
    if "definition" in result:
        generation.definition.CopyFrom(json_pb2.Json(raw=json.dumps(result["definition"], ensure_ascii=False)))
    return generation


class AiService(ai_service_pb2_grpc.AiServiceServicer):
    def __init__(self, engine: AsyncEngine, wake_generator: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.wake_generator = wake_generator

    async def GenerateWorkflow(
        self, request: pb.GenerateWorkflowRequest, context: Context
    ) -> pb.GenerateWorkflowResponse:
        options = _options(request.prompt, request.llm_options)
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.create(repo, kind="generate", prompt=request.prompt, options=options)
        self.wake_generator()
        return pb.GenerateWorkflowResponse(
            generation_id=row.id,
            status=ai_pb2.GENERATION_STATUS_PROCESSING,
            message="Workflow generation initiated. Please use the status endpoint to track progress.",
        )

    async def GetGenerationStatus(
        self, request: pb.GetGenerationStatusRequest, context: Context
    ) -> pb.GetGenerationStatusResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.generation_id, kind="generate")
        attempts = json.loads(row.attempts)
        return pb.GetGenerationStatusResponse(
            generation_id=row.id,
            status=STATUS[row.status],
            attempts=len(attempts),
            errors=_last_errors(attempts),
            error=row.error or "",
        )

    async def GetGeneration(self, request: pb.GetGenerationRequest, context: Context) -> pb.GetGenerationResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.generation_id, kind="generate")
        return pb.GetGenerationResponse(generation=to_proto(row))

    async def CreateWorkflowFromAi(
        self, request: pb.CreateWorkflowFromAiRequest, context: Context
    ) -> pb.CreateWorkflowFromAiResponse:
        if request.name and (not request.name.strip() or len(request.name) > 200):
            raise InvalidArgument("must be 1-200 characters", field="name")
        options = _options(request.prompt, request.llm_options, request.name)
        async with tenant(self.engine, auth.org_id()) as repo:
            if request.name and await repo.get(workflows_table, name=request.name) is not None:
                raise AlreadyExists(
                    f"a workflow named {request.name!r} already exists in this org; pick another name",
                    reason="WORKFLOW_NAME_TAKEN",
                )
            row = await store.create(repo, kind="create", prompt=request.prompt, options=options)
        self.wake_generator()
        return pb.CreateWorkflowFromAiResponse(
            process_id=row.id,
            status=ai_pb2.GENERATION_STATUS_PROCESSING,
            message="Workflow creation initiated. Poll GET /workflows/generation-status/{process_id}.",
        )

    async def GetCreateFromAi(self, request: pb.GetCreateFromAiRequest, context: Context) -> pb.GetCreateFromAiResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.process_id, kind="create")
        return pb.GetCreateFromAiResponse(process=to_proto(row))

    async def GetCreateFromAiStatus(
        self, request: pb.GetCreateFromAiStatusRequest, context: Context
    ) -> pb.GetCreateFromAiStatusResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.process_id, kind="create")
        attempts = json.loads(row.attempts)
        return pb.GetCreateFromAiStatusResponse(
            process_id=row.id,
            status=STATUS[row.status],
            attempts=len(attempts),
            errors=_last_errors(attempts),
            error=row.error or "",
            workflow_id=row.workflow_id or "",
        )

    async def GenerateDag(self, request: pb.GenerateDagRequest, context: Context) -> pb.GenerateDagResponse:
        if request.workflow_id:
            async with tenant(self.engine, auth.org_id()) as repo:
                row = await workflow_store.get(repo, request.workflow_id)
            definition = jsonvalue.loads(row.definition)
        elif request.HasField("definition"):
            definition = jsonvalue.parse(request.definition, "definition")
            if isinstance(definition, dict) and "actions" not in definition and "definition" in definition:
                definition = definition["definition"]  # a whole workflow object
        else:
            raise InvalidArgument("give a workflow definition or a workflow_id", field="definition")
        try:
            # any step type: the graph does not need the actions to be registered
            dsl.validate_definition(definition, step_types=lambda _: True, allow_react=True)
        except dsl.DefinitionError as exc:
            raise InvalidArgument(exc.message, field=exc.path) from None
        graph = dag.build(definition)
        return pb.GenerateDagResponse(
            nodes=[ai_pb2.DagNode(id=n.id, kind=n.kind, type=n.type, label=n.label, path=n.path) for n in graph.nodes],
            edges=[ai_pb2.DagEdge(source=e.source, target=e.target, label=e.label) for e in graph.edges],
        )
