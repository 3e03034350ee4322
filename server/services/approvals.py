"""ApprovalService: pending approvals and forms, the answers that resume their runs, and the listing of every
interrupt (GET /interrupts: approvals, forms, agent pauses, runs parked on a child run)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hyphae.approvals.v1 import approval_service_pb2 as pb
from hyphae.approvals.v1 import approval_service_pb2_grpc, interrupt_pb2
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.domain import evaluate
from server.errors import InvalidArgument
from server.services import Context, timestamp
from server.store import interrupts as store
from server.store import pagination, tenant

KINDS = {
    "approval": interrupt_pb2.INTERRUPT_KIND_APPROVAL,
    "form": interrupt_pb2.INTERRUPT_KIND_FORM,
    "agent": interrupt_pb2.INTERRUPT_KIND_AGENT,
    "child_run": interrupt_pb2.INTERRUPT_KIND_CHILD_RUN,
}
KIND_NAMES = {value: name for name, value in KINDS.items()}
STATUSES = {
    "pending": interrupt_pb2.INTERRUPT_STATUS_PENDING,
    "answered": interrupt_pb2.INTERRUPT_STATUS_ANSWERED,
    "expired": interrupt_pb2.INTERRUPT_STATUS_EXPIRED,
}
STATUS_NAMES = {value: name for name, value in STATUSES.items()}
# Where each kind is answered (child_run: by its child run ending, not by a person).
ANSWER_PATHS = {
    "approval": "/approvals/{run}/{step}",
    "form": "/forms/{run}/{step}/submit",
    "agent": "/agents/{run}/resume",
}


def interrupt_proto(row: Any) -> interrupt_pb2.Interrupt:
    payload = json.loads(row.payload)
    message = interrupt_pb2.Interrupt(
        run_id=row.run_id,
        step_index=row.step_index,
        kind=KINDS[row.kind],
        status=STATUSES[row.status],
        workflow_id=row.workflow_id,
        comment=str(payload.get("comment") or ""),
        expected_keys=[str(key) for key in payload.get("expected_keys") or []],
        expires_at=timestamp(row.expires_at),
        created_at=timestamp(row.created_at),
        answered_at=timestamp(row.answered_at),
    )
    if "request_payload" in payload:
        message.request_payload.CopyFrom(jsonvalue.of(payload["request_payload"]))
    return message


def pending_proto(row: Any) -> interrupt_pb2.PendingInterrupt:
    payload = json.loads(row.payload)
    question = payload.get("question") if row.kind == "agent" else payload.get("comment")
    path = ANSWER_PATHS.get(row.kind, "")
    return interrupt_pb2.PendingInterrupt(
        run_id=row.run_id,
        step_index=row.step_index,
        kind=KINDS[row.kind],
        status=STATUSES[row.status],
        workflow_id=row.workflow_id,
        question=evaluate.stringify(question) if question is not None else "",
        payload=jsonvalue.of(payload),
        expires_at=timestamp(row.expires_at),
        created_at=timestamp(row.created_at),
        answered_at=timestamp(row.answered_at),
        answer_method="POST" if path else "",
        answer_path=path.format(run=row.run_id, step=row.step_index),
    )


def step_index(step_id: str) -> int:
    if not (step_id.isascii() and step_id.isdigit()) or len(step_id) > 6:
        raise InvalidArgument("must be the step's index in definition.actions, e.g. 0", field="step_id")
    return int(step_id)


class ApprovalService(approval_service_pb2_grpc.ApprovalServiceServicer):
    def __init__(self, engine: AsyncEngine, wake_workers: Callable[[], None] = lambda: None) -> None:
        self.engine = engine
        self.wake_workers = wake_workers

    async def ListApprovals(self, request: pb.ListApprovalsRequest, context: Context) -> pb.ListApprovalsResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            rows = await store.pending(repo, "approval")
        return pb.ListApprovalsResponse(approvals=[interrupt_proto(row) for row in rows])

    async def ListRunApprovals(
        self, request: pb.ListRunApprovalsRequest, context: Context
    ) -> pb.ListRunApprovalsResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            rows = await store.pending(repo, "approval", run_id=request.run_id)
        return pb.ListRunApprovalsResponse(approvals=[interrupt_proto(row) for row in rows])

    async def ListInterrupts(self, request: pb.ListInterruptsRequest, context: Context) -> pb.ListInterruptsResponse:
        status = STATUS_NAMES.get(request.status, "pending")
        kind = KIND_NAMES.get(request.kind, "")
        filters = {"status": status, "kind": kind, "run_id": request.run_id}
        page = pagination.page_request(page_size=request.page_size, page_token=request.page_token, filters=filters)
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, status=status, kind=kind, run_id=request.run_id)
        return pb.ListInterruptsResponse(interrupts=[pending_proto(row) for row in rows], next_page_token=token)

    async def SubmitApproval(self, request: pb.SubmitApprovalRequest, context: Context) -> pb.SubmitApprovalResponse:
        index = step_index(request.step_id)
        if not request.HasField("approved"):
            raise InvalidArgument("is required: true to approve, false to reject", field="approved")
        comment = request.comment or request.comments
        data = jsonvalue.parse(request.data, "data") if request.HasField("data") else None
        decision = {"approved": request.approved, "comment": comment, "data": data}
        async with tenant(self.engine, auth.org_id()) as repo:
            run, _ = await store.take(repo, request.run_id, index, "approval")
            await store.resume(
                repo,
                run,
                index,
                answer=decision,
                step_output=decision,
                context_updates={"__approved": request.approved, "__comment": comment, "__approval_data": data},
                event="pbot_approval_decided",
            )
        self.wake_workers()
        return pb.SubmitApprovalResponse(
            run_id=request.run_id, step_index=index, approved=request.approved, status="running"
        )

    async def ListPendingForms(
        self, request: pb.ListPendingFormsRequest, context: Context
    ) -> pb.ListPendingFormsResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            rows = await store.pending(repo, "form")
        return pb.ListPendingFormsResponse(forms=[interrupt_proto(row) for row in rows])

    async def SubmitForm(self, request: pb.SubmitFormRequest, context: Context) -> pb.SubmitFormResponse:
        index = step_index(request.step_id)
        body = jsonvalue.parse(request.body, "body")
        data = body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else body
        if not isinstance(data, dict):
            raise InvalidArgument('must be a JSON object: {"data": {...}} or the keys themselves', field="body")
        async with tenant(self.engine, auth.org_id()) as repo:
            run, interrupt = await store.take(repo, request.run_id, index, "form")
            expected = [str(key) for key in json.loads(interrupt.payload).get("expected_keys") or []]
            missing = [key for key in expected if key not in data]
            if missing:
                raise InvalidArgument(f"misses expected key(s): {', '.join(missing)}", field="data")
            await store.resume(
                repo, run, index, answer=data, step_output=data, context_updates=data, event="pbot_form_submitted"
            )
        self.wake_workers()
        return pb.SubmitFormResponse(run_id=request.run_id, step_index=index, status="running")
