"""RunService: execute a workflow, read and list runs, cancel one. Workers (server/runtime) do the executing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

from hyphae.api.v1 import json_pb2
from hyphae.runs.v1 import run_pb2, run_service_pb2_grpc
from hyphae.runs.v1 import run_service_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncEngine

from server import auth, jsonvalue
from server.errors import InvalidArgument, Unavailable
from server.runtime.events import EventHub, Notice
from server.runtime.launch import start_run, start_run_direct
from server.runtime.worker import Worker
from server.services import Context, timestamp
from server.store import pagination, tenant
from server.store import runs as store
from server.store.db import clock, direct_pool, in_unit_of_work

RUN_STATUS = {
    "running": run_pb2.RUN_STATUS_RUNNING,
    "paused": run_pb2.RUN_STATUS_PAUSED,
    "completed": run_pb2.RUN_STATUS_COMPLETED,
    "failed": run_pb2.RUN_STATUS_FAILED,
    "condition_not_met": run_pb2.RUN_STATUS_CONDITION_NOT_MET,
    "cancelled": run_pb2.RUN_STATUS_CANCELLED,
}
RUN_STATUS_NAMES = {number: name for name, number in RUN_STATUS.items()}
STEP_STATUS = {
    "running": run_pb2.STEP_STATUS_RUNNING,
    "completed": run_pb2.STEP_STATUS_COMPLETED,
    "skipped": run_pb2.STEP_STATUS_SKIPPED,
    "failed": run_pb2.STEP_STATUS_FAILED,
    "paused": run_pb2.STEP_STATUS_PAUSED,
}


def _json(raw: str | None) -> json_pb2.Json | None:
    return json_pb2.Json(raw=raw) if raw is not None else None


def step_proto(row: Any) -> run_pb2.RunStep:
    duration = 0
    if row.completed_at is not None:
        duration = int((row.completed_at - row.started_at).total_seconds() * 1000)
    return run_pb2.RunStep(
        index=row.index,
        type=row.type,
        status=STEP_STATUS[row.status],
        output_key=row.output_key,
        output=_json(row.output),
        error=row.error,
        attempts=row.attempts,
        on_false=row.on_false,
        started_at=timestamp(row.started_at),
        completed_at=timestamp(row.completed_at),
        duration_ms=duration,
    )


def run_proto(row: Any, steps: list[Any] | None = None) -> run_pb2.Run:
    """A run; its context and steps only when `steps` is given (a single run read, not a listing)."""
    run = run_pb2.Run(
        run_id=row.id,
        workflow_id=row.workflow_id,
        workflow_name=row.workflow_name,
        workflow_version=row.workflow_version,
        status=RUN_STATUS[row.status],
        input=json_pb2.Json(raw=row.input),
        output=_json(row.output),
        error=row.error,
        current_step=row.current_step,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
        completed_at=timestamp(row.completed_at),
    )
    if steps is not None:
        run.context.raw = row.context
        run.steps.extend(step_proto(step) for step in steps)
    return run


def event_proto(row: Any) -> run_pb2.RunEvent:
    return run_pb2.RunEvent(
        run_id=row.run_id,
        sequence=row.sequence,
        type=row.type,
        data=json_pb2.Json(raw=row.data),
        created_at=timestamp(row.created_at),
    )


# Events read per query; a stream keeps reading while batches come back full.
EVENT_BATCH = 500
# The org stream catches up (after a missed notification) over at most this much past, and forgets the runs it has
# seen after twice that: live only, best effort across a lost LISTEN connection.
ORG_CATCH_UP = timedelta(minutes=5)


class RunService(run_service_pb2_grpc.RunServiceServicer):
    def __init__(self, engine: AsyncEngine, events: EventHub, worker: Worker | None = None) -> None:
        self.engine = engine
        # This process's worker, if it runs one: a new run goes straight to it when it has a free slot.
        self.worker = worker
        # The process's one LISTEN connection (shared with AgentService): started on the first stream, closed a few
        # seconds after the last one ends.
        self.events = events

    async def ExecuteWorkflow(self, request: pb.ExecuteWorkflowRequest, context: Context) -> pb.ExecuteWorkflowResponse:
        value = jsonvalue.parse(request.input, "input")
        if not isinstance(value, dict):
            raise InvalidArgument('must be a JSON object: the body is {"input": {...}}', field="input")
        worker = self.worker
        if in_unit_of_work():  # an Idempotency-Key: the run commits with the stored answer
            async with tenant(self.engine, auth.org_id()) as repo:
                workflow, run_id = await start_run(repo, request.workflow_id, value, request.input.raw)
            workflow_id = workflow.id
            if worker is not None:
                worker.wake()
        else:
            # Inserted already leased to this process's worker when it has a slot free: it starts the run at once,
            # without a claim (the lease makes it as recoverable as a claimed run).
            owner = worker.reserve() if worker is not None else None
            row = None
            try:
                row = await start_run_direct(
                    self.engine,
                    auth.org_id(),
                    request.workflow_id,
                    value,
                    request.input.raw,
                    lease_owner=owner,
                    lease_seconds=worker.lease_seconds if worker is not None else 0.0,
                )
            finally:
                if worker is not None:
                    if owner is not None:
                        worker.adopt(row)
                    else:
                        worker.wake()
            run_id, workflow_id = row.id, row.workflow_id
        return pb.ExecuteWorkflowResponse(run_id=run_id, status=run_pb2.RUN_STATUS_RUNNING, workflow_id=workflow_id)

    async def GetRunStatus(self, request: pb.GetRunStatusRequest, context: Context) -> pb.GetRunStatusResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.get(repo, request.run_id)
            steps = await store.steps(repo, request.run_id)
        return pb.GetRunStatusResponse(run=run_proto(row, steps))

    async def ListRuns(self, request: pb.ListRunsRequest, context: Context) -> pb.ListRunsResponse:
        status = RUN_STATUS_NAMES.get(request.status, "")
        page = pagination.page_request(
            page_size=request.page_size,
            page_token=request.page_token,
            limit=request.limit,
            offset=request.offset,
            filters={"workflow_id": request.workflow_id, "status": status},
        )
        async with tenant(self.engine, auth.org_id()) as repo:
            rows, token = await store.page(repo, page, workflow_id=request.workflow_id, status=status)
        return pb.ListRunsResponse(runs=[run_proto(row) for row in rows], next_page_token=token)

    async def CancelRun(self, request: pb.CancelRunRequest, context: Context) -> pb.CancelRunResponse:
        async with tenant(self.engine, auth.org_id()) as repo:
            row = await store.cancel(repo, request.run_id, request.reason)
            steps = await store.steps(repo, request.run_id)
        return pb.CancelRunResponse(run=run_proto(row, steps))

    async def _run_events(self, org_id: str, run_id: str, after_sequence: int) -> tuple[bool, list[Any]]:
        """(the run had ended when read, its events after `after_sequence`): one statement, one snapshot, so an
        ended run's batch holds its final event."""
        async with direct_pool(self.engine).connection() as connection:
            status, rows = await store.status_and_events(
                connection, org_id, run_id, after_sequence=after_sequence, limit=EVENT_BATCH
            )
        return status in store.FINAL and len(rows) < EVENT_BATCH, rows

    async def WatchRun(self, request: pb.WatchRunRequest, context: Context) -> AsyncIterator[pb.WatchRunResponse]:
        org_id = auth.org_id()
        last = max(request.after_sequence, 0)
        # Subscribed before every read, so a notice of an event the read missed is waiting in the queue.
        async with self.events.subscribe(org_id, request.run_id) as subscription:
            first = True
            while True:
                try:
                    ended, rows = await self._run_events(org_id, request.run_id, last)  # NOT_FOUND before streaming
                except Unavailable:
                    if first:
                        raise
                    await subscription.wait()  # the database is away: the stream waits, and reads again
                    continue
                first = False
                for row in rows:
                    last = row.sequence
                    yield pb.WatchRunResponse(event=event_proto(row), sequence=row.sequence)
                caught_up = len(rows) < EVENT_BATCH
                if ended or (caught_up and request.stop_when_caught_up):
                    return
                if caught_up:
                    while True:
                        notices = await subscription.wait()
                        missed = subscription.take_missed()  # the read that follows is the catch-up
                        # Notices of events already delivered (their NOTIFY came after our read) need no read; a
                        # timeout ([]) does, as it heals a lost notification.
                        if missed or not notices or max(notice.sequence for notice in notices) > last:
                            break

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Context
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        org_id = auth.org_id()
        types = set(request.types)
        # run id -> (last sequence delivered, its created_at): where each run's next read starts.
        seen: dict[str, tuple[int, datetime]] = {}
        async with self.events.subscribe(org_id) as subscription:
            async with tenant(self.engine, org_id) as repo:
                since = await clock(repo.connection)
            subscription.take_missed()  # nothing before `since` is ours to deliver
            while True:
                notices = await subscription.wait()
                missed = subscription.take_missed()
                if not notices and not missed:
                    continue
                try:
                    rows = await self._org_events(org_id, notices, seen, since if missed else None)
                except Unavailable:  # the database is away: catch up from the table once it answers
                    subscription.missed = True
                    continue
                for row in rows:
                    if row.sequence <= seen.get(row.run_id, (0, since))[0]:
                        continue
                    seen[row.run_id] = (row.sequence, row.created_at)
                    if not types or row.type in types:
                        yield pb.WatchEventsResponse(event=event_proto(row))

    async def _org_events(
        self, org_id: str, notices: list[Notice], seen: dict[str, tuple[int, datetime]], since: datetime | None
    ) -> list[Any]:
        """The events the notices point at (each run read from its last delivered sequence) and, when notices may
        have been missed (`since` given), the org's recent events, in order; duplicates are dropped by the caller."""
        firsts: dict[str, int] = {}
        for notice in notices:
            firsts.setdefault(notice.run_id, notice.sequence)
        rows: list[Any] = []
        async with tenant(self.engine, org_id) as repo:
            if since is not None:
                now, recent = await store.recent_events(repo, since=since, window=ORG_CATCH_UP, limit=5000)
                for run_id in [run_id for run_id, (_, at) in seen.items() if at < now - 2 * ORG_CATCH_UP]:
                    del seen[run_id]
                rows.extend(recent)
            for run_id, first in firsts.items():
                after = seen[run_id][0] if run_id in seen else first - 1
                while True:
                    batch = await store.events(repo, run_id, after_sequence=after, limit=EVENT_BATCH)
                    rows.extend(batch)
                    if len(batch) < EVENT_BATCH:
                        break
                    after = batch[-1].sequence
        return rows
