"""Schedules end to end: the `schedules` row follows the workflow (create, update, delete); a due tick starts one
normal run with input {} (made due by moving `next_due_at` into the past in the database); missed ticks fire
once; a schedule's runs never overlap (a paused run holds the next tick, which starts when it ends); two
schedulers on one database never fire one tick twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from server.runtime.scheduler import Scheduler
from server.store.db import create_engine, sqlalchemy_url
from tests.conftest import ServerInfo
from tests.server.runs_helpers import wait_for

APPROVAL = {"type": "PbotApproval", "properties": {"comment": "ok?"}}


@pytest.fixture(scope="module")
def db(server: ServerInfo) -> Iterator[sa.Engine]:
    engine = sa.create_engine(sqlalchemy_url(server.database_url), poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


def create(api: httpx.Client, name: str, schedule: dict[str, Any] | None, actions: list[Any] | None = None) -> str:
    definition: dict[str, Any] = {"actions": actions if actions is not None else []}
    if schedule is not None:
        definition["schedule"] = schedule
    created = api.post("/workflows", json={"name": name, "definition": definition})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def row(db: sa.Engine, org: str, workflow_id: str) -> Any:
    with db.connect() as connection:
        return connection.execute(
            sa.text("SELECT *, now() AS db_now FROM schedules WHERE org_id = :org AND workflow_id = :id"),
            {"org": org, "id": workflow_id},
        ).first()


def make_due(
    db: sa.Engine, org: str, workflow_id: str, *, ago: str = "1 second", anchor_ago: str | None = None
) -> None:
    """Move the next tick (and optionally the anchor) into the past, as if time had passed."""
    sets = "next_due_at = now() - CAST(:ago AS interval)"
    if anchor_ago is not None:
        sets += ", anchor = now() - CAST(:anchor_ago AS interval)"
    with db.begin() as connection:
        updated = connection.execute(
            sa.text(f"UPDATE schedules SET {sets} WHERE org_id = :org AND workflow_id = :id"),
            {"org": org, "id": workflow_id, "ago": ago, "anchor_ago": anchor_ago},
        )
    assert updated.rowcount == 1


def runs_of(api: httpx.Client, workflow_id: str) -> list[dict[str, Any]]:
    listed = api.get(f"/workflows/{workflow_id}/runs")
    assert listed.status_code == 200, listed.text
    return list(listed.json()["runs"])


def wait_runs(api: httpx.Client, workflow_id: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = runs_of(api, workflow_id)
        if len(runs) >= count:
            return runs
        time.sleep(0.1)
    raise AssertionError(f"workflow {workflow_id}: expected {count} run(s), have {runs_of(api, workflow_id)}")


def wait_until(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


SCHEDULER_TICKS = 3.5
"""Seconds to watch for a run that must not start: several scheduler polls (about one a second)."""


def test_a_due_tick_starts_a_normal_run_with_empty_input(api: httpx.Client, db: sa.Engine, org: str) -> None:
    workflow_id = create(api, "every-minute", {"every": "1m"})
    assert runs_of(api, workflow_id) == []
    make_due(db, org, workflow_id)
    [run] = wait_runs(api, workflow_id, 1)
    assert run["input"] == {}
    assert run["workflow_id"] == workflow_id
    finished = wait_for(api, run["run_id"])
    assert finished["status"] == "completed"
    assert finished["context"]["input"] == {}
    assert finished["context"]["__run_id"] == run["run_id"]
    assert finished["context"]["now"].endswith("Z")
    assert row(db, org, workflow_id).last_run_id == run["run_id"]


def test_missed_ticks_fire_once_and_the_next_tick_is_in_the_future(api: httpx.Client, db: sa.Engine, org: str) -> None:
    workflow_id = create(api, "hourly", {"every": "1h"})
    # ten hourly ticks were missed (anchor 9.5 h ago, first tick due 8.5 h ago)
    make_due(db, org, workflow_id, ago="8 hours 30 minutes", anchor_ago="9 hours 30 minutes")
    wait_runs(api, workflow_id, 1)
    wait_until(lambda: row(db, org, workflow_id).next_due_at > row(db, org, workflow_id).db_now)
    time.sleep(SCHEDULER_TICKS)
    runs = runs_of(api, workflow_id)
    assert len(runs) == 1, runs
    schedule = row(db, org, workflow_id)
    assert schedule.last_run_id == runs[0]["run_id"]
    # the next tick is on the anchor's hourly grid, within the next hour
    assert timedelta(0) < schedule.next_due_at - schedule.db_now <= timedelta(hours=1)
    assert (schedule.next_due_at - schedule.anchor) % timedelta(hours=1) == timedelta(0)


def test_runs_do_not_overlap_the_next_tick_waits_for_the_paused_run(api: httpx.Client, db: sa.Engine, org: str) -> None:
    workflow_id = create(api, "needs-approval", {"every": "1h"}, [APPROVAL])
    make_due(db, org, workflow_id)
    [first] = wait_runs(api, workflow_id, 1)
    wait_for(api, first["run_id"], until=("paused",))

    make_due(db, org, workflow_id)  # the next tick comes while the first run waits for a person
    time.sleep(SCHEDULER_TICKS)
    assert [r["run_id"] for r in runs_of(api, workflow_id)] == [first["run_id"]]
    queued = row(db, org, workflow_id)
    assert queued.next_due_at <= queued.db_now  # still due: queued behind the paused run
    assert queued.last_run_id == first["run_id"]

    assert api.post(f"/approvals/{first['run_id']}/0", json={"approved": True}).status_code == 200
    assert wait_for(api, first["run_id"])["status"] == "completed"
    runs = wait_runs(api, workflow_id, 2)
    second = next(r for r in runs if r["run_id"] != first["run_id"])
    wait_for(api, second["run_id"], until=("paused",))
    time.sleep(SCHEDULER_TICKS)
    assert len(runs_of(api, workflow_id)) == 2
    after = row(db, org, workflow_id)
    assert after.last_run_id == second["run_id"]
    assert after.next_due_at > after.db_now
    assert api.post(f"/runs/{second['run_id']}/cancel", json={}).status_code == 200


def test_the_schedule_row_follows_the_workflow(api: httpx.Client, db: sa.Engine, org: str) -> None:
    workflow_id = create(api, "synced", {"cron": "0 0 1 1 *", "timezone": "Asia/Tokyo"})
    created = row(db, org, workflow_id)
    assert created.spec == '{"cron":"0 0 1 1 *","timezone":"Asia/Tokyo"}'
    assert created.anchor <= created.db_now < created.next_due_at
    # midnight on 1 January in Tokyo is 15:00 UTC on 31 December
    due = created.next_due_at.astimezone(UTC)
    assert (due.month, due.day, due.hour, due.minute) == (12, 31, 15, 0)

    def put(schedule: dict[str, Any] | None) -> None:
        definition: dict[str, Any] = {"actions": []}
        if schedule is not None:
            definition["schedule"] = schedule
        updated = api.put(f"/workflows/{workflow_id}", json={"name": "synced", "definition": definition})
        assert updated.status_code == 200, updated.text

    # the same schedule (keys in another order): anchor and next tick kept
    put({"timezone": "Asia/Tokyo", "cron": "0 0 1 1 *"})
    same = row(db, org, workflow_id)
    assert (same.anchor, same.next_due_at) == (created.anchor, created.next_due_at)
    # another schedule: re-anchored now
    put({"every": "6h"})
    changed = row(db, org, workflow_id)
    assert changed.spec == '{"every":"6h"}'
    assert changed.anchor > created.anchor
    assert changed.next_due_at == changed.anchor + timedelta(hours=6)
    # no schedule: no row; and back
    put(None)
    assert row(db, org, workflow_id) is None
    put({"every": "1d", "at": "02:00"})
    assert row(db, org, workflow_id) is not None
    assert api.delete(f"/workflows/{workflow_id}").status_code == 200
    assert row(db, org, workflow_id) is None


@pytest.mark.parametrize(
    ("schedule", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "definition.schedule.cron", "out of range"),
        ({"cron": "0 0 30 2 *"}, "definition.schedule.cron", "never fires"),
        ({"every": "6h", "at": "02:00"}, "definition.schedule.at", "only applies"),
    ],
)
def test_a_bad_schedule_is_rejected_at_create_naming_the_field(
    api: httpx.Client, db: sa.Engine, org: str, schedule: dict[str, Any], field: str, words: str
) -> None:
    response = api.post("/workflows", json={"name": "bad", "definition": {"actions": [], "schedule": schedule}})
    assert response.status_code == 400, response.text
    assert field in response.json()["message"]
    assert words in response.json()["message"]
    assert api.get("/workflows").json()["workflows"] == []


def test_two_schedulers_never_fire_one_tick_twice(fresh_database: str) -> None:
    org, workflow_id = "org-scheduler", "workflow-scheduler"
    with sa.create_engine(sqlalchemy_url(fresh_database), poolclass=sa.pool.NullPool).begin() as connection:
        connection.execute(sa.text("INSERT INTO orgs (id, name) VALUES (:org, :org)"), {"org": org})
        connection.execute(
            sa.text("INSERT INTO workflows (org_id, id, name, definition) VALUES (:org, :id, 'w', '{\"actions\":[]}')"),
            {"org": org, "id": workflow_id},
        )
        for index in range(30):  # more than one batch of other due schedules
            other = {"org": org, "id": f"other-{index}"}
            connection.execute(
                sa.text("INSERT INTO workflows (org_id, id, name, definition) VALUES (:org, :id, :id, '{}')"), other
            )
            connection.execute(
                sa.text(
                    "INSERT INTO schedules (org_id, workflow_id, spec, anchor, next_due_at) "
                    "VALUES (:org, :id, '{\"every\":\"1h\"}', now(), now() - interval '1 minute')"
                ),
                other,
            )
        connection.execute(
            sa.text(
                "INSERT INTO schedules (org_id, workflow_id, spec, anchor, next_due_at) "
                "VALUES (:org, :id, '{\"every\":\"1h\"}', now() - interval '5 hours', now() - interval '4 hours')"
            ),
            {"org": org, "id": workflow_id},
        )

    woken: list[int] = []

    async def main() -> None:
        engines = [create_engine(fresh_database, pool_size=2) for _ in range(3)]
        try:
            schedulers = [Scheduler(engine, lambda: woken.append(1)) for engine in engines]
            for _ in range(3):
                await asyncio.gather(*(scheduler.tick() for scheduler in schedulers))
        finally:
            for engine in engines:
                await engine.dispose()

    asyncio.run(main())
    with sa.create_engine(sqlalchemy_url(fresh_database), poolclass=sa.pool.NullPool).connect() as connection:
        per_workflow: dict[str, int] = dict(
            connection.execute(sa.text("SELECT workflow_id, count(*) FROM runs GROUP BY workflow_id")).all()
        )
        pending = connection.execute(sa.text("SELECT count(*) FROM schedules WHERE next_due_at <= now()")).scalar()
        inputs = set(connection.execute(sa.text("SELECT DISTINCT input FROM runs")).scalars())
    assert per_workflow == {workflow_id: 1, **{f"other-{index}": 1 for index in range(30)}}
    assert pending == 0
    assert inputs == {"{}"}
    assert woken
