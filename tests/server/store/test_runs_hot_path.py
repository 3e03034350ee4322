"""The workers' one-statement writes (server/store/runs.py): create, claim, start a step, commit a step and the run.
Each is fenced by the lease, keeps event sequences gapless, and NOTIFYs its events in order."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest

from server.errors import NotFound
from server.store import runs as store

ORG = "hot-org"


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


async def connected(url: str) -> psycopg.AsyncConnection[Any]:
    connection = await psycopg.AsyncConnection.connect(libpq(url), autocommit=True)
    await connection.execute("INSERT INTO orgs (id, name) VALUES (%s, %s) ON CONFLICT DO NOTHING", (ORG, ORG))
    await connection.execute(
        "INSERT INTO workflows (org_id, id, name, definition) VALUES (%s, 'wf_1', 'hot', '{\"actions\": []}')"
        " ON CONFLICT DO NOTHING",
        (ORG,),
    )
    return connection


async def events_of(connection: psycopg.AsyncConnection[Any], run_id: str) -> list[tuple[int, str]]:
    cursor = await connection.execute(
        "SELECT sequence, type FROM run_events WHERE org_id = %s AND run_id = %s ORDER BY sequence", (ORG, run_id)
    )
    return [(int(sequence), str(kind)) for sequence, kind in await cursor.fetchall()]


def test_a_run_is_created_claimed_advanced_and_finished_with_gapless_notified_events(fresh_database: str) -> None:
    async def scenario() -> None:
        connection = await connected(fresh_database)
        listener = await psycopg.AsyncConnection.connect(libpq(fresh_database), autocommit=True)
        await listener.execute("LISTEN hyphae_run_events")
        await store.create_direct(connection, ORG, "wf_1", run_id="run_1", input_raw="{}", context_raw="{}")
        with pytest.raises(NotFound):
            await store.create_direct(connection, ORG, "wf_missing", run_id="run_2", input_raw="{}", context_raw="{}")

        [row] = await store.claim(connection, "worker-a", lease_seconds=30, limit=5, mine=[])
        assert (row.id, row.lease_owner, row.current_step) == ("run_1", "worker-a", 0)
        assert await store.claim(connection, "worker-b", lease_seconds=30, limit=5, mine=[]) == []
        lease = store.Lease("worker-a", ORG, "run_1")

        assert await store.start_step_direct(connection, lease, 0, step_type="http", idempotency_key="run_1:0") == 1
        first = store.StepResult(0, "http", "completed", "out", '{"a":1}', "", False, started=True)
        await store.commit(
            connection, lease, context='{"out":{"a":1}}', events=[("step_completed", {})], step=first, current_step=1
        )
        last = store.StepResult(1, "matcher", "completed", "m", "[]", "", False, started=False)
        await store.commit(
            connection,
            lease,
            context="{}",
            events=[("step_completed", {}), ("workflow_run_completed", {"status": "completed"})],
            step=last,
            status="completed",
            output="[]",
        )

        assert await events_of(connection, "run_1") == [
            (1, "workflow_run_started"),
            (2, "step_completed"),
            (3, "step_completed"),
            (4, "workflow_run_completed"),
        ]
        notified = [n.payload.split("\x1f")[2] async for n in _notifies(listener, 4)]
        assert notified == ["1", "2", "3", "4"]
        cursor = await connection.execute(
            "SELECT status, output, current_step, lease_owner, completed_at IS NOT NULL FROM runs WHERE id = 'run_1'"
        )
        assert await cursor.fetchone() == ("completed", "[]", 1, None, True)
        cursor = await connection.execute("SELECT index, status, attempts FROM run_steps ORDER BY index")
        assert await cursor.fetchall() == [(0, "completed", 1), (1, "completed", 1)]

        status, rows = await store.status_and_events(connection, ORG, "run_1", after_sequence=2, limit=10)
        assert (status, [r.sequence for r in rows]) == ("completed", [3, 4])
        with pytest.raises(NotFound):
            await store.status_and_events(connection, "other-org", "run_1", after_sequence=0, limit=10)
        await listener.close()
        await connection.close()

    asyncio.run(scenario())


async def _notifies(listener: psycopg.AsyncConnection[Any], count: int) -> Any:
    received = 0
    async for notify in listener.notifies(timeout=5):
        yield notify
        received += 1
        if received == count:
            return


def test_a_worker_that_lost_its_lease_writes_nothing(fresh_database: str) -> None:
    async def scenario() -> None:
        connection = await connected(fresh_database)
        await store.create_direct(connection, ORG, "wf_1", run_id="run_1", input_raw="{}", context_raw="{}")
        await store.claim(connection, "worker-a", lease_seconds=30, limit=1, mine=[])
        stale = store.Lease("worker-b", ORG, "run_1")
        step = store.StepResult(0, "matcher", "completed", "", None, "", False, started=False)
        with pytest.raises(store.LeaseLost):
            await store.commit(
                connection, stale, context="{}", events=[("step_completed", {})], step=step, current_step=1
            )
        with pytest.raises(store.LeaseLost):
            await store.start_step_direct(connection, stale, 0, step_type="http", idempotency_key="run_1:0")
        assert await events_of(connection, "run_1") == [(1, "workflow_run_started")]
        cursor = await connection.execute("SELECT count(*) FROM run_steps")
        assert await cursor.fetchone() == (0,)
        await connection.close()

    asyncio.run(scenario())


def test_a_worker_takes_back_its_own_interrupted_run_before_the_lease_expires(fresh_database: str) -> None:
    async def scenario() -> None:
        connection = await connected(fresh_database)
        await store.create_direct(connection, ORG, "wf_1", run_id="run_1", input_raw="{}", context_raw="{}")
        await store.claim(connection, "worker-a", lease_seconds=300, limit=1, mine=[])
        assert await store.claim(connection, "worker-a", lease_seconds=300, limit=1, mine=[]) == []
        assert await store.claim(connection, "worker-b", lease_seconds=300, limit=1, mine=["run_1"]) == []
        [row] = await store.claim(connection, "worker-a", lease_seconds=300, limit=1, mine=["run_1"])
        assert row.id == "run_1"
        await connection.close()

    asyncio.run(scenario())
