"""Live run events: WatchRun over SSE, NDJSON and gRPC (same ordered events, Last-Event-ID resume, the stream
ends with the run), following a run that is still going, tenancy, and the org-wide WatchEvents stream."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from hyphae.runs.v1 import run_service_pb2, run_service_pb2_grpc

from tests.conftest import ServerInfo
from tests.server.runs_helpers import wait_for

FINAL_TYPES = {
    "workflow_run_completed",
    "workflow_run_failed",
    "workflow_run_condition_not_met",
    "workflow_run_cancelled",
}
MATCH = {"type": "matcher", "properties": {"left": "@input.a", "right": "@input.b", "matchOn": ["id"]}}
TWO_MATCHERS = {"actions": [MATCH, {**MATCH, "outputKey": "again"}]}
INPUT = {"a": [{"id": 1}], "b": [{"id": 1}]}


def sse(source: httpx.Response | Iterator[str]) -> list[tuple[int, dict[str, Any]]]:
    """(id, data) of every SSE event, read until the server closes the stream."""
    events: list[tuple[int, dict[str, Any]]] = []
    event_id, data = None, None
    for line in source.iter_lines() if isinstance(source, httpx.Response) else source:
        if line.startswith("id: "):
            event_id = int(line[4:])
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            assert event_id is not None
            events.append((event_id, data))
            event_id, data = None, None
    return events


def start_run(api: httpx.Client, definition: dict[str, Any], run_input: dict[str, Any]) -> str:
    created = api.post("/workflows", json={"name": f"events-{uuid.uuid4().hex[:6]}", "definition": definition})
    assert created.status_code == 201, created.text
    started = api.post(f"/workflows/{created.json()['id']}/execute", json={"input": run_input})
    assert started.status_code == 200, started.text
    return str(started.json()["run_id"])


@pytest.fixture
def finished_run(api: httpx.Client) -> str:
    run_id = start_run(api, TWO_MATCHERS, INPUT)
    assert wait_for(api, run_id)["status"] == "completed"
    return run_id


def watch_grpc(server: ServerInfo, org: str, run_id: str, **fields: Any) -> list[tuple[int, str]]:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        request = run_service_pb2.WatchRunRequest(run_id=run_id, **fields)
        return [
            (item.sequence, item.event.type)
            for item in stub.WatchRun(request, metadata=(("x-org-id", org),), timeout=30)
        ]


def test_sse_delivers_every_event_in_order_and_ends_with_the_run(api: httpx.Client, finished_run: str) -> None:
    with api.stream("GET", f"/runs/{finished_run}/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse(response)
    assert [event_id for event_id, _ in events] == [1, 2, 3, 4]
    assert [data["sequence"] for _, data in events] == [1, 2, 3, 4]
    assert [data["event"]["sequence"] for _, data in events] == [1, 2, 3, 4]
    assert [data["event"]["type"] for _, data in events] == [
        "workflow_run_started",
        "step_completed",
        "step_completed",
        "workflow_run_completed",
    ]
    first = events[0][1]["event"]
    assert first["run_id"] == finished_run
    assert isinstance(first["data"], dict) and first["created_at"]


def test_grpc_sees_the_same_events_as_sse(server: ServerInfo, api: httpx.Client, org: str, finished_run: str) -> None:
    with api.stream("GET", f"/runs/{finished_run}/events") as response:
        over_sse = [(event_id, data["event"]["type"]) for event_id, data in sse(response)]
    assert watch_grpc(server, org, finished_run) == over_sse
    assert watch_grpc(server, org, finished_run, after_sequence=2) == over_sse[2:]


def test_last_event_id_resumes_after_it(api: httpx.Client, finished_run: str) -> None:
    with api.stream("GET", f"/runs/{finished_run}/events", headers={"Last-Event-ID": "2"}) as response:
        assert [event_id for event_id, _ in sse(response)] == [3, 4]
    with api.stream("GET", f"/runs/{finished_run}/events", params={"after_sequence": 3}) as response:
        assert [event_id for event_id, _ in sse(response)] == [4]


def test_ndjson_when_asked(api: httpx.Client, finished_run: str) -> None:
    response = api.get(f"/runs/{finished_run}/events", headers={"Accept": "application/x-ndjson"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    assert [line["sequence"] for line in lines] == [1, 2, 3, 4]
    assert lines[-1]["event"]["type"] == "workflow_run_completed"


def test_condition_not_met_ends_the_stream_with_its_event(api: httpx.Client) -> None:
    run_id = start_run(api, {"condition": {"equal": [1, 2]}, "actions": [MATCH]}, INPUT)
    with api.stream("GET", f"/runs/{run_id}/events") as response:  # may start before the run ends: follows it
        types = [data["event"]["type"] for _, data in sse(response)]
    assert types == ["workflow_run_started", "workflow_run_condition_not_met"]


def test_another_orgs_run_is_not_found(server: ServerInfo, api: httpx.Client, finished_run: str) -> None:
    other = {"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"}
    assert api.get(f"/runs/{finished_run}/events", headers=other).status_code == 404
    assert api.get("/runs/run-nope/events").status_code == 404
    with pytest.raises(grpc.RpcError) as caught:
        watch_grpc(server, other["X-Org-Id"], finished_run)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


class Gate:
    """A local HTTP endpoint that holds each request until released."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.release = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                gate.arrived.set()
                gate.release.wait(60)
                payload = b'{"ok": true}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hold"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def gate() -> Iterator[Gate]:
    server = Gate()
    yield server
    server.release.set()
    server.server.shutdown()


def start_held_run(api: httpx.Client, gate: Gate) -> str:
    action = {"action_name": f"hold_{uuid.uuid4().hex[:6]}", "kind": "http", "url": gate.url, "http_method": "POST"}
    assert api.post("/actions", json=action).status_code == 201
    run_id = start_run(api, {"actions": [{"type": action["action_name"], "properties": {}}]}, {})
    assert gate.arrived.wait(30), "the run never reached its HTTP step"
    return run_id


def test_follows_a_running_run_until_it_ends(server: ServerInfo, api: httpx.Client, org: str, gate: Gate) -> None:
    run_id = start_held_run(api, gate)
    # Caught up and still running: stop_when_caught_up answers what is there and ends.
    with api.stream("GET", f"/runs/{run_id}/events", params={"stop_when_caught_up": "true"}) as response:
        assert [data["event"]["type"] for _, data in sse(response)] == ["workflow_run_started"]

    with api.stream("GET", f"/runs/{run_id}/events") as response:
        lines = response.iter_lines()
        assert next(lines) == "id: 1"
        assert json.loads(next(lines)[6:])["event"]["type"] == "workflow_run_started"
        assert next(lines) == ""
        assert api.get(f"/runs/{run_id}/status").json()["status"] == "running"
        gate.release.set()  # only now can the step complete: what follows arrives live
        rest = sse(lines)
    assert [(event_id, data["event"]["type"]) for event_id, data in rest] == [
        (2, "step_completed"),
        (3, "workflow_run_completed"),
    ]
    assert watch_grpc(server, org, run_id) == [
        (1, "workflow_run_started"),
        (2, "step_completed"),
        (3, "workflow_run_completed"),
    ]


def test_grpc_follows_a_running_run(server: ServerInfo, api: httpx.Client, org: str, gate: Gate) -> None:
    run_id = start_held_run(api, gate)
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        stream = stub.WatchRun(
            run_service_pb2.WatchRunRequest(run_id=run_id), metadata=(("x-org-id", org),), timeout=30
        )
        first = next(iter(stream))
        assert (first.sequence, first.event.type) == (1, "workflow_run_started")
        gate.release.set()
        rest = [(item.sequence, item.event.type) for item in stream]
    assert rest == [(2, "step_completed"), (3, "workflow_run_completed")]


def test_org_stream_carries_the_orgs_events_live(server: ServerInfo, api: httpx.Client, org: str) -> None:
    received: queue.Queue[Any] = queue.Queue()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = run_service_pb2_grpc.RunServiceStub(channel)
        stream = stub.WatchEvents(run_service_pb2.WatchEventsRequest(), metadata=(("x-org-id", org),), timeout=60)

        def read() -> None:
            try:
                for item in stream:
                    received.put(item.event)
            except grpc.RpcError as exc:
                received.put(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        # The stream is live only: start runs until it shows one, so it is surely subscribed.
        while True:
            wait_for(api, start_run(api, TWO_MATCHERS, INPUT))
            try:
                received.get(timeout=1)
                break
            except queue.Empty:
                continue
        other_api = httpx.Client(base_url=server.http_url, headers={"X-Org-Id": f"test-{uuid.uuid4().hex[:12]}"})
        with other_api:
            wait_for(other_api, start_run(other_api, TWO_MATCHERS, INPUT))
        run_id = start_run(api, TWO_MATCHERS, INPUT)
        mine: list[tuple[int, str]] = []
        while not mine or mine[-1][1] not in FINAL_TYPES:
            event = received.get(timeout=30)
            assert not isinstance(event, Exception), event
            assert event.run_id.startswith("run-")
            if event.run_id == run_id:
                mine.append((event.sequence, event.type))
            else:  # earlier runs of this org only (the other org's run never shows)
                assert api.get(f"/runs/{event.run_id}/status").status_code == 200
    reader.join(10)  # closing the channel cancelled the stream
    assert mine == [
        (1, "workflow_run_started"),
        (2, "step_completed"),
        (3, "step_completed"),
        (4, "workflow_run_completed"),
    ]


def test_org_stream_filters_by_type_over_sse(server: ServerInfo, api: httpx.Client) -> None:
    received: queue.Queue[Any] = queue.Queue()

    def read() -> None:  # the first event, then hang up
        with (
            httpx.Client(base_url=server.http_url, headers=api.headers, timeout=60) as client,
            client.stream("GET", "/events", params={"types": "workflow_run_completed"}) as response,
        ):
            received.put(response.status_code)
            event_id = None
            for line in response.iter_lines():
                if line.startswith("id:"):
                    event_id = line
                if line.startswith("data: "):
                    received.put((event_id, json.loads(line[6:])))
                    return

    threading.Thread(target=read, daemon=True).start()
    run_ids: set[str] = set()
    status: Any = None
    delivered: Any = None
    deadline = time.monotonic() + 60
    # The stream is live only: a run that ends before it has subscribed is not delivered. Start runs until one is
    # (the headers come with the first event, or after the gateway's short grace period).
    while delivered is None and time.monotonic() < deadline:
        run_id = start_run(api, TWO_MATCHERS, INPUT)
        run_ids.add(run_id)
        wait_for(api, run_id)
        try:
            item = received.get(timeout=1)
        except queue.Empty:
            continue
        if status is None:
            status = item
        else:
            delivered = item
    assert status == 200
    assert delivered is not None, "no run's completion reached the stream"
    event_id, first = delivered
    assert event_id is None  # the org stream is live only: no resumable ids
    assert first["event"]["type"] == "workflow_run_completed"
    assert first["event"]["run_id"] in run_ids


def test_hub_fans_out_notifications_and_survives_a_dropped_connection(server: ServerInfo) -> None:
    """The hub on its own: notices by run and by org, a killed LISTEN connection is reopened (subscribers are told
    they may have missed notices), and the connection closes once the last subscriber has gone."""
    from server.runtime.events import EventHub, Notice
    from server.store.db import sqlalchemy_url

    url = str(
        sa.engine.make_url(sqlalchemy_url(server.database_url)).set(drivername="postgresql").render_as_string(False)
    )
    name = f"hub-test-{uuid.uuid4().hex[:6]}"

    async def notify(payload: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as connection:
            await connection.execute("SELECT pg_notify('hyphae_run_events', %s)", (payload,))

    async def main() -> None:
        hub = EventHub(url, idle_seconds=0.05, application_name=name)
        async with hub.subscribe("org-a", "run-1") as by_run, hub.subscribe("org-a") as by_org:
            while hub.connections < 1:
                await asyncio.sleep(0.01)
            assert by_run.take_missed() and by_org.take_missed()  # listening started after they subscribed
            assert await by_run.wait(0) == [] and await by_org.wait(0) == []  # that wake-up, drained
            await notify("org-b\x1frun-1\x1f1")
            await notify("org-a\x1frun-2\x1f1")
            await notify("org-a\x1frun-1\x1f7")
            assert await by_run.wait(10) == [Notice("org-a", "run-1", 7)]
            received = await by_org.wait(10)
            while len(received) < 2:
                received += await by_org.wait(10)
            assert received == [Notice("org-a", "run-2", 1), Notice("org-a", "run-1", 7)]

            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", (name,)
                )
            while hub.connections < 2:
                await asyncio.sleep(0.01)
            assert await by_run.wait(10) == [] and by_run.take_missed()
            await notify("org-a\x1frun-1\x1f8")
            assert await by_run.wait(10) == [Notice("org-a", "run-1", 8)]
        await asyncio.sleep(0.5)
        assert hub.listening is False
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
            left = await admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
            assert (await left.fetchone()) == (0,)

    asyncio.run(main())
