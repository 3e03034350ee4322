"""db actions: a parameterised query against the org's own Postgres, never Hyphae's database."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa

from server.store.db import sqlalchemy_url
from tests.conftest import ServerInfo
from tests.server.runs_helpers import wait_for


def tcp_url(url: str) -> str:
    parsed = sa.engine.make_url(sqlalchemy_url(url))
    if not parsed.host:
        pytest.skip(
            "needs a Postgres reachable over TCP (set HYPHAE_TEST_DATABASE_URL); the embedded one is socket-only"
        )
    return str(parsed.set(drivername="postgresql").render_as_string(hide_password=False))


def db_workflow(api: httpx.Client, datasource: str, query: str, params: list[object]) -> str:
    api.post("/org-config", json={"key": "db:warehouse", "value": datasource})
    action = {
        "action_name": "get_pending_orders",
        "kind": "db",
        "datasource": "orgconfig:db:warehouse",
        "query": query,
        "params": params,
        "outputKey": "orders",
    }
    assert api.post("/actions", json=action).status_code == 201
    definition = {"actions": [{"type": "get_pending_orders", "properties": {}}]}
    workflow_id = api.post("/workflows", json={"name": "db", "definition": definition}).json()["id"]
    return str(
        api.post(f"/workflows/{workflow_id}/execute", json={"input": {"status": "pending", "min": 5}}).json()["run_id"]
    )


def test_query_with_bound_parameters_returns_rows(api: httpx.Client, fresh_database: str) -> None:
    datasource = tcp_url(fresh_database)
    engine = sa.create_engine(sqlalchemy_url(fresh_database))
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE orders (id int, status text, total int)"))
        connection.execute(sa.text("INSERT INTO orders VALUES (1, 'pending', 10), (2, 'pending', 3), (3, 'done', 99)"))
    engine.dispose()
    run_id = db_workflow(
        api,
        datasource,
        "SELECT id, total FROM orders WHERE status = $1 AND total > $2 ORDER BY id",
        ["@input.status", "@input.min"],
    )
    run = wait_for(api, run_id)
    assert run["status"] == "completed", run
    assert run["context"]["orders"] == [{"id": 1, "total": 10}]
    assert "postgresql://" not in str(run)  # the datasource (a secret) never shows


def test_injection_attempts_stay_values(api: httpx.Client, fresh_database: str) -> None:
    datasource = tcp_url(fresh_database)
    engine = sa.create_engine(sqlalchemy_url(fresh_database))
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (name text)"))
    engine.dispose()
    run_id = db_workflow(api, datasource, "INSERT INTO t VALUES ($1)", ["x'); DROP TABLE t; --"])
    run = wait_for(api, run_id)
    assert run["status"] == "completed", run
    assert run["context"]["orders"] == {"rowCount": 1}


def test_hyphaes_own_database_is_refused(api: httpx.Client, server: ServerInfo) -> None:
    run = wait_for(api, db_workflow(api, tcp_url(server.database_url), "SELECT 1", []))
    assert run["status"] == "failed"
    assert "Hyphae's own database" in run["error"]


def test_non_postgres_datasources_fail_clearly(api: httpx.Client) -> None:
    run = wait_for(api, db_workflow(api, "mysql://user:pw@host:3306/crm", "SELECT 1", []))
    assert run["status"] == "failed"
    assert "postgresql:// datasources only" in run["error"]
    assert "pw@" not in run["error"]
