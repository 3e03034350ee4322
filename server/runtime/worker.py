"""Workers: claim runnable runs from Postgres and execute them; Postgres is the queue.

Each process runs one Worker with `concurrency` slots. A claim is a lease (`runs.lease_owner` until
`lease_expires_at`) renewed by a heartbeat; a worker that dies stops renewing, its leases expire and another
worker resumes the runs from their last committed step. Every write of an executing run is fenced by the lease,
so a worker that lost a run cannot write for it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from server.errors import Unavailable
from server.runtime.executor import Executor
from server.store import interrupts
from server.store import runs as store
from server.store.db import connect, direct_pool, log_will_retry

log = logging.getLogger("hyphae.worker")


class Worker:
    def __init__(
        self,
        engine: AsyncEngine,
        executor: Executor,
        *,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = asyncio.Event()
        self._running: dict[str, tuple[store.Lease, asyncio.Task[None]]] = {}
        self._last_expiry = 0.0
        # Runs still leased to us whose execution stopped because the database failed: claimed again at once.
        self._orphans: set[str] = set()
        self._reserved = 0  # slots promised to runs being created in this process (`reserve`)
        # Runs may be waiting for a slot (a wake-up, or a claim that filled every free slot): a slot that frees up
        # claims at once. Otherwise it waits for a wake-up or the poll (runs created here are handed over directly).
        self._backlog = False
        self._active = False

    def wake(self) -> None:
        """A run was queued in this process: look now instead of at the next poll."""
        self._backlog = True
        self._wake.set()

    def reserve(self) -> str | None:
        """A slot for a run this process is about to create: the owner to insert it leased to (so it needs no
        claim), or None when the worker is not running or every slot is taken. Always followed by `adopt`."""
        if not self._active or len(self._running) + self._reserved >= self.concurrency:
            return None
        self._reserved += 1
        return self.owner

    def adopt(self, row: Any | None) -> None:
        """The reserved slot's run, committed leased to this worker, starts now (None: no run was created)."""
        self._reserved -= 1
        if row is None or not self._active:  # not created, or stopping: its lease expires, another worker resumes it
            self._wake.set()
            return
        self._start(store.Lease(self.owner, row.org_id, row.id), row)

    def _start(self, lease: store.Lease, row: Any) -> None:
        # A fresh context: a run handed over by an API call must not inherit that request's (principal, unit of work).
        task = asyncio.create_task(self._execute(lease, row), context=contextvars.Context())
        self._running[row.id] = (lease, task)

    async def run(self, stop: asyncio.Event) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        self._active = True
        try:
            while not stop.is_set():
                # Cleared before claiming: a run queued (or a slot freed) while we claim sets it again, so the wait
                # below returns at once instead of sleeping until the next poll.
                self._wake.clear()
                free = self.concurrency - len(self._running) - self._reserved
                claimed = 0
                if free > 0:
                    self._backlog = False  # a wake-up during the claim sets it again
                    claimed = await self._claim(free)
                    if claimed >= free:
                        self._backlog = True  # more runs may be waiting for a slot
                if free <= 0 or claimed < free:
                    waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
                    await asyncio.wait(waits, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
                    for waiting in waits:
                        waiting.cancel()
        finally:
            self._active = False
            heartbeat.cancel()
            tasks = [task for _, task in self._running.values()]
            for task in tasks:  # leases expire and another worker resumes these runs from their last step
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _expire_interrupts(self) -> None:
        """Forms (and approvals) past their TTL fail their run with a timeout error, and runs parked on a finished
        child run are queued again; any worker may do it."""
        now = asyncio.get_running_loop().time()
        if now - self._last_expiry < 1.0:
            return
        self._last_expiry = now
        try:
            async with connect(self.engine) as connection:
                await interrupts.expire_due(connection)
            async with connect(self.engine) as connection:  # runs parked on a child that has ended go on
                await interrupts.wake_parents(connection)
        except Exception:
            log_will_retry(log, "could not expire interrupts or wake parents; will retry")

    async def _claim(self, free: int) -> int:
        await self._expire_interrupts()
        mine = sorted(self._orphans)
        try:
            async with direct_pool(self.engine).connection() as connection:
                rows = await store.claim(
                    connection, self.owner, lease_seconds=self.lease_seconds, limit=free, mine=mine
                )
        except Exception:
            log_will_retry(log, "could not claim runs; will retry")
            await asyncio.sleep(self.poll_seconds)
            return 0
        if len(rows) < free:  # every claimable run was taken: the orphans not among them are no longer ours
            self._orphans.difference_update(mine)
        for row in rows:
            self._orphans.discard(row.id)
            self._start(store.Lease(self.owner, row.org_id, row.id), row)
        return len(rows)

    async def _execute(self, lease: store.Lease, row: Any) -> None:
        try:
            await self.executor.execute(lease, row)
        except store.LeaseLost:
            log.info("run %s is no longer ours (cancelled or taken over)", lease.run_id)
        except Unavailable:
            # Still leased to us: claimed again (from its last committed step) once the database answers.
            log.warning("run %s: the database is unreachable; will resume it when it is back", lease.run_id)
            self._orphans.add(lease.run_id)
            await asyncio.sleep(self.poll_seconds)  # not a tight loop if the database keeps failing
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("run %s: unexpected error; its lease will expire and another worker will retry", lease.run_id)
        finally:
            self._running.pop(lease.run_id, None)
            if self._backlog or self._orphans:
                self._wake.set()  # a slot is free and runs may be waiting: claim now

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(self.lease_seconds / 3)
            leases = [lease for lease, _ in self._running.values()]
            if not leases:
                continue
            try:
                async with connect(self.engine) as connection:
                    lost = await store.renew(connection, leases, self.lease_seconds)
            except Exception:
                log_will_retry(log, "heartbeat failed; will retry")
                continue
            for run_id in lost:
                entry = self._running.get(run_id)
                if entry is not None:
                    entry[1].cancel()


@contextlib.asynccontextmanager
async def running_worker(worker: Worker) -> Any:
    """The worker loop as a background task of the caller's event loop."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
