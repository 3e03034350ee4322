"""The scheduler: starts the runs of scheduled workflows when their tick is due (spec section 4.1).

Every worker process runs one Scheduler next to its Worker; they coordinate through Postgres only. About every
second, one transaction takes due `schedules` rows (`next_due_at <= now()`) with `FOR UPDATE SKIP LOCKED`, at most
BATCH of them, so two processes never fire the same tick. For each:

* its last run still `running` or `paused` -> nothing is started: runs of a schedule never overlap. Such rows are
  not even taken; the tick stays due, so the next run starts as soon as the previous one ends (the tick is
  "queued" -- at most one, however many ticks pass meanwhile);
* otherwise a normal run is created (input `{}`, the same context and `workflow_run_started` event as
  `POST /workflows/{id}/execute`), recorded as the schedule's `last_run_id`, and `next_due_at` becomes
  `next_due(spec, now)`.

Missed ticks: the next tick is computed from *now*, not from the tick that was due, so after downtime (or while a
long run held the schedule) a schedule fires once, not once per missed tick. `every` schedules keep their phase
(anchor + k * interval), so the next tick after a late one is on the usual grid.

A schedule whose run cannot be started (an unexpected error) is retried a minute later, never blocking the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from server.domain import schedule
from server.runtime.launch import start_run
from server.store import TenantRepository
from server.store import schedules as store
from server.store.db import clock, connect, log_will_retry

log = logging.getLogger("hyphae.scheduler")

BATCH = 20
RETRY = timedelta(minutes=1)


class Scheduler:
    def __init__(
        self, engine: AsyncEngine, wake: Callable[[], None], *, poll_seconds: float = 1.0, batch: int = BATCH
    ) -> None:
        self.engine = engine
        self.wake = wake
        self.poll_seconds = poll_seconds
        self.batch = batch

    async def tick(self) -> tuple[int, int]:
        """Fire the due schedules (one transaction); returns (schedules taken, runs started)."""
        started = 0
        async with connect(self.engine) as connection:
            now = await clock(connection)
            rows = await store.take_due(connection, limit=self.batch)
            for row in rows:
                try:
                    async with connection.begin_nested():
                        _, run_id = await start_run(TenantRepository(connection, row.org_id), row.workflow_id, {}, "{}")
                        due = schedule.next_due(json.loads(row.spec), now, anchor=row.anchor)
                        await store.fired(connection, row.org_id, row.workflow_id, run_id=run_id, next_due_at=due)
                    started += 1
                except Exception:
                    log.exception("workflow %s (org %s): scheduled run not started", row.workflow_id, row.org_id)
                    await store.fired(connection, row.org_id, row.workflow_id, run_id=None, next_due_at=now + RETRY)
        if started:
            self.wake()
        return len(rows), started

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            taken = 0
            try:
                taken, _ = await self.tick()
            except Exception:
                log_will_retry(log, "could not fire schedules; will retry")
            if taken >= self.batch:
                continue  # more may be due
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_seconds)


@contextlib.asynccontextmanager
async def running_scheduler(scheduler: Scheduler) -> AsyncIterator[Scheduler]:
    """The scheduler loop as a background task of the caller's event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    try:
        yield scheduler
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
