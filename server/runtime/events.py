"""Live run events: one LISTEN connection per process, fanned out to in-process subscribers.

Every transition appends a `run_events` row and `pg_notify('hyphae_run_events', '<org>\\x1f<run>\\x1f<seq>')` in
its transaction (server/store/runs.append_event). Notifications are only wake-ups: the table is the truth, so a
subscriber re-reads the table after its last sequence when woken, and also every POLL_SECONDS (which heals a missed
notification). Queues are bounded; a subscriber whose queue is full is marked `missed` and catches up from the table.

The hub's connection is its own (never one of the pool's: a pooled connection must not keep LISTENing). It is
opened on the first subscription, reopened with backoff when it drops (every subscriber is then marked `missed`),
and closed IDLE_SECONDS after the last subscriber left (or when the event loop ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import psycopg

log = logging.getLogger("hyphae.events")

CHANNEL = "hyphae_run_events"
POLL_SECONDS = 2.0
IDLE_SECONDS = 5.0
QUEUE_SIZE = 256
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 10.0


@dataclass(frozen=True)
class Notice:
    org_id: str
    run_id: str
    sequence: int


def parse(payload: str) -> Notice | None:
    parts = payload.split("\x1f")
    if len(parts) != 3 or not (parts[2].isascii() and parts[2].isdigit()):
        return None
    return Notice(parts[0], parts[1], int(parts[2]))


@dataclass(eq=False)
class Subscription:
    """What one stream waits on: notices of its run (or of its org), plus a `missed` flag meaning "notices may have
    been lost (full queue, LISTEN connection (re)opened): catch up from the table"."""

    org_id: str
    run_id: str | None
    queue: asyncio.Queue[Notice | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    missed: bool = False

    def offer(self, notice: Notice | None) -> None:
        if notice is None:
            self.missed = True
        try:
            self.queue.put_nowait(notice)
        except asyncio.QueueFull:
            self.missed = True  # the queue is full, so the waiter is awake anyway

    async def wait(self, timeout: float = POLL_SECONDS) -> list[Notice]:
        """The notices received so far, waiting up to `timeout` for the first one ([] on timeout)."""
        received: list[Notice | None] = []
        if self.queue.empty():
            with contextlib.suppress(TimeoutError):
                received.append(await asyncio.wait_for(self.queue.get(), timeout))
        while not self.queue.empty():
            received.append(self.queue.get_nowait())
        return [notice for notice in received if notice is not None]

    def take_missed(self) -> bool:
        missed, self.missed = self.missed, False
        return missed


class EventHub:
    def __init__(
        self, url: str, *, idle_seconds: float = IDLE_SECONDS, application_name: str = "hyphae-events"
    ) -> None:
        self.url = url
        self.idle_seconds = idle_seconds
        self.application_name = application_name
        self._by_run: dict[tuple[str, str], set[Subscription]] = {}
        self._by_org: dict[str, set[Subscription]] = {}
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.TimerHandle | None = None
        self.connections = 0  # LISTEN connections opened so far (tests and logs)

    @property
    def listening(self) -> bool:
        """The LISTEN task is running (connected, or reconnecting)."""
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return sum(len(s) for s in self._by_run.values()) + sum(len(s) for s in self._by_org.values())

    @contextlib.asynccontextmanager
    async def subscribe(self, org_id: str, run_id: str | None = None) -> AsyncIterator[Subscription]:
        """Notices of one run (run_id given) or of every run of the org, for the duration of the block."""
        subscription = Subscription(org_id, run_id)
        registry: set[Subscription]
        if run_id is None:
            registry = self._by_org.setdefault(org_id, set())
        else:
            registry = self._by_run.setdefault((org_id, run_id), set())
        registry.add(subscription)
        self._ensure_listening()
        try:
            yield subscription
        finally:
            registry.discard(subscription)
            if not registry:
                if run_id is None:
                    self._by_org.pop(org_id, None)
                else:
                    self._by_run.pop((org_id, run_id), None)
            if not self.subscribers:
                self._closer = asyncio.get_running_loop().call_later(self.idle_seconds, self._close_if_idle)

    def _ensure_listening(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="hyphae-event-hub")

    def _close_if_idle(self) -> None:
        self._closer = None
        if self.subscribers == 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        if self._closer is not None:
            self._closer.cancel()
            self._closer = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self) -> None:
        delay = BACKOFF_FIRST
        while True:
            try:
                connection = await psycopg.AsyncConnection.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=10,
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                    application_name=self.application_name,
                )
                async with connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    delay = BACKOFF_FIRST
                    self._broadcast_missed()  # anything committed while we were not listening
                    async for notify in connection.notifies():
                        self._dispatch(notify.payload)
            except (psycopg.Error, OSError) as exc:
                if not self.subscribers:
                    return
                log.warning("event hub: LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _broadcast_missed(self) -> None:
        for registry in [*self._by_run.values(), *self._by_org.values()]:
            for subscription in registry:
                subscription.offer(None)

    def _dispatch(self, payload: str) -> None:
        notice = parse(payload)
        if notice is None:
            log.warning("event hub: ignoring malformed notification %r", payload)
            return
        for subscription in self._by_run.get((notice.org_id, notice.run_id), ()):
            subscription.offer(notice)
        for subscription in self._by_org.get(notice.org_id, ()):
            subscription.offer(notice)
