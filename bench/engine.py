"""Workflow engine throughput: Hyphae (through gRPC) against DBOS Transact, on the same Postgres, in one run.

    python3 scripts/uv.py run python bench/engine.py [--seconds 6] [--concurrency 32] [--workers 8,16,32]

Both engines run the same workflows, 1 step and 3 steps, each step a tiny in-memory `matcher` (no HTTP, so the
engine is what is measured), with `--concurrency` workflows in flight, closed loop, for `--seconds` each:

- Hyphae: `hyphae serve` subprocesses (once per `--workers` value), scratch database, rate limit off, X-Org-Id
  trusted. One asyncio client process (grpc.aio, generated stubs) calls ExecuteWorkflow, then detects completion
  with the server-streaming WatchRun (or, with `--completion poll`, GetRunStatus every `--poll-ms`).
- DBOS Transact: a child process of this script (`--dbos-child`) with DBOS on its own scratch database of the same
  Postgres server; `DBOS.start_workflow_async` then `handle.get_result()`; each step an async `@DBOS.step()` calling
  the same matcher function Hyphae's executor calls.

Then Postgres commits per 1-step run (`pg_stat_database.xact_commit` of each scratch database around a batch of
`--commit-runs` runs, after waiting for the statistics to be published), with inserted/updated rows per table.
For Hyphae two batches: the polled one (minus its GetRunStatus calls, one transaction each), and one without
polling (executes paced below capacity, completion checked with ListRuns at the end). The report replaces this
script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import httpx
import psycopg
from hyphae.api.v1 import json_pb2
from hyphae.runs.v1 import run_pb2, run_service_pb2, run_service_pb2_grpc
from hyphae.workflows.v1 import workflow_pb2, workflow_service_pb2, workflow_service_pb2_grpc

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- bench/engine.py: start -->"
SECTION_END = "<!-- bench/engine.py: end -->"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ORG = "bench-org"
TARGET_RATIO = 2.0
TARGET_COMMITS = 4.0
# Postgres publishes a backend's counters at most once a second while it is busy and 10 s after it went idle
# (PGSTAT_IDLE_INTERVAL), so a reading is exact only once every backend has been idle that long.
STATS_SETTLE_SECONDS = 11.0

INPUT: dict[str, Any] = {
    "l": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}],
    "r": [{"id": 2, "w": "x"}, {"id": 3, "w": "y"}, {"id": 4, "w": "z"}],
}
MATCH_ON = ["id"]


def matcher_step(suffix: str) -> dict[str, Any]:
    properties: dict[str, Any] = {"left": "@input.l", "right": "@input.r", "matchOn": MATCH_ON}
    if suffix:
        properties |= {
            "outputMatched": f"matched{suffix}",
            "outputUnmatchedLeft": f"unmatchedLeft{suffix}",
            "outputUnmatchedRight": f"unmatchedRight{suffix}",
        }
    return {"type": "matcher", "properties": properties}


DEFINITIONS: dict[int, dict[str, Any]] = {
    1: {"actions": [matcher_step("")]},
    3: {"actions": [matcher_step("1"), matcher_step("2"), matcher_step("3")]},
}

# Postgres transactions of one Hyphae run, by kind, read from the code path (server/services/runs.py,
# server/runtime/worker.py, server/runtime/executor.py); checked against the measured total in the report.
HYPHAE_CODE_PATH: list[tuple[str, str, str, str]] = [
    (
        "ExecuteWorkflow",
        "1",
        "write",
        "one statement: read the workflow, insert the run and event 1, NOTIFY (autocommit, server/store/runs.py)",
    ),
    (
        "claim",
        "0 or 1 per worker wake-up",
        "write",
        "none when execute hands the run to the in-process worker (a free slot: inserted leased to it); else one "
        "UPDATE ... SKIP LOCKED of up to the free slots, shared",
    ),
    ("(empty claim)", "when a wake-up finds nothing", "read", "a claim that takes no run (idle poll: 1/s)"),
    ("registered actions", "0 here", "read", "read once per run, and only when a step is a registered action"),
    ("start_step", "0 here", "write", "only before a side effect (http, llm, db, loop): the attempt and its key"),
    (
        "commit (step + run)",
        "1 per step",
        "write",
        "one statement: fenced run update (context and next step, or final status), step row, events, NOTIFY",
    ),
    (
        "WatchRun (client side)",
        "1 per wake-up",
        "read",
        "one statement: status + events after the last one, at subscribe and per NOTIFY of a new event",
    ),
]


# --------------------------------------------------------------------------- shared helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url(server_url: str, name: str) -> str:
    return urllib.parse.urlsplit(server_url)._replace(path=f"/{name}").geturl()


@contextlib.contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[tuple[str, str]]:
    """A fresh database on `server_url`'s Postgres: (name, URL), dropped on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name is generated above
    try:
        yield name, database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def process_cpu_seconds(*pids: int) -> float:
    """User + system CPU time of processes (all their threads), from /proc; 0.0 where /proc is missing."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every local `postgres` process by pid (all databases: other users of the server count too)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        found[int(entry.name)] = process_cpu_seconds(int(entry.name))
    return found


def postgres_cpu_since(before: dict[int, float]) -> float:
    """CPU used by Postgres processes since `before` (backends that exited meanwhile are not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in postgres_cpu().items())


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@dataclass
class Measurement:
    """One closed-loop measurement of one engine, configuration and workflow."""

    engine: str
    config: str
    steps: int
    runs: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    polls: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0  # the engine's process (for DBOS the child, which is also its own client)
    postgres_cpu: float = 0.0
    breakdown_ms: dict[str, float] = field(default_factory=dict)  # Hyphae: mean of each phase of a run

    @property
    def rate(self) -> float:
        return self.runs / self.seconds if self.seconds else 0.0

    def p(self, fraction: float) -> float:
        return percentile(self.latencies_ms, fraction)

    def per_run_ms(self, cpu_seconds: float) -> float:
        return 1000 * cpu_seconds / self.runs if self.runs else 0.0

    def line(self) -> str:
        return (
            f"{self.rate:7.1f} runs/s  p50 {self.p(0.5):6.1f} ms  p95 {self.p(0.95):6.1f} ms  "
            f"({self.runs} runs, {self.errors} errors; CPU ms/run: client {self.per_run_ms(self.client_cpu):.1f}, "
            f"engine {self.per_run_ms(self.server_cpu):.1f}, Postgres {self.per_run_ms(self.postgres_cpu):.1f})"
        )


@dataclass
class Commits:
    """Commits in one scratch database around one batch of 1-step runs."""

    engine: str
    batch: str
    runs: int
    commits: int
    client_transactions: int | None = 0  # of those, the client's status reads (one each); None: not countable
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> (inserted, updated) rows
    writes: int = 0  # transaction ids assigned on the whole server during the batch
    idle_writes: float = 0.0  # of those, expected at the rate measured just before the batch (other users, idle)

    @property
    def writes_per_run(self) -> float:
        return (self.writes - self.idle_writes) / self.runs if self.runs else 0.0

    def summary(self) -> str:
        engine = "" if self.engine_per_run is None else f", {self.engine_per_run:.2f} without the client's reads"
        return f"{self.per_run:.2f} commits/run{engine}; {self.writes_per_run:.2f} write transactions/run"

    @property
    def per_run(self) -> float:
        return self.commits / self.runs if self.runs else 0.0

    @property
    def engine_per_run(self) -> float | None:
        if self.client_transactions is None or not self.runs:
            return None
        return (self.commits - self.client_transactions) / self.runs


@dataclass
class Window:
    """What one batch cost Postgres."""

    commits: int  # xact_commit of the database
    rows: dict[str, tuple[int, int]]
    writes: int  # transaction ids assigned (server-wide: read-only transactions get none)
    idle_writes: float
    seconds: float


class Stats:
    """xact_commit and per-table row counts of one database, read once Postgres has published them, and the
    server's transaction id counter (write transactions, read at once)."""

    IDLE_SECONDS = 2.0

    def __init__(self, server_url: str, name: str, settle: float) -> None:
        self.server_url = server_url
        self.name = name
        self.settle = settle
        self.last: tuple[int, dict[str, tuple[int, int]]] | None = None

    def next_xid(self) -> int:
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            found = connection.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        assert found is not None
        return int(found[0])

    async def around(self, batch: Awaitable[T], say: Callable[[str], None]) -> tuple[T, Window]:
        """Run `batch` between two settled snapshots; the idle write rate is measured just before it."""
        if self.last is None:
            self.last = await asyncio.to_thread(self.snapshot, say)
        idle_from = await asyncio.to_thread(self.next_xid)
        await asyncio.sleep(self.IDLE_SECONDS)
        first = await asyncio.to_thread(self.next_xid)
        idle_rate = (first - idle_from) / self.IDLE_SECONDS
        began = time.perf_counter()
        result = await batch
        seconds = time.perf_counter() - began
        writes = await asyncio.to_thread(self.next_xid) - first
        after = await asyncio.to_thread(self.snapshot, say)
        commits, rows = self.delta(self.last, after)
        self.last = after
        return result, Window(commits, rows, writes, idle_rate * seconds, seconds)

    def snapshot(self, say: Callable[[str], None]) -> tuple[int, dict[str, tuple[int, int]]]:
        say(f"    waiting {self.settle:g} s for Postgres to publish its statistics ...")
        time.sleep(self.settle)
        with psycopg.connect(database_url(self.server_url, self.name), autocommit=True) as connection:
            rows = connection.execute(
                "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd FROM pg_stat_user_tables"
            ).fetchall()
        time.sleep(0.3)  # that connection's own commit (the SELECT) is published when it closes; counted below
        with psycopg.connect(self.server_url, autocommit=True) as connection:
            found = connection.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (self.name,)
            ).fetchone()
        assert found is not None
        return int(found[0]), {str(name): (int(ins), int(upd)) for name, ins, upd in rows}

    @staticmethod
    def delta(
        before: tuple[int, dict[str, tuple[int, int]]], after: tuple[int, dict[str, tuple[int, int]]]
    ) -> tuple[int, dict[str, tuple[int, int]]]:
        """Commits between two snapshots (less the one the later snapshot's row read made) and rows per table."""
        rows = {}
        for table, (ins, upd) in after[1].items():
            old_ins, old_upd = before[1].get(table, (0, 0))
            if ins - old_ins or upd - old_upd:
                rows[table] = (ins - old_ins, upd - old_upd)
        return after[0] - before[0] - 1, rows


def say(text: str) -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- Hyphae


def hyphae_command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "hyphae"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "cli.main", *args]


@dataclass(frozen=True)
class Server:
    grpc_target: str
    pid: int
    workers: int


@contextlib.contextmanager
def hyphae_serve(url: str, workers: int, work_dir: Path, profile: Path | None = None) -> Iterator[Server]:
    """`hyphae serve` on free loopback ports, up once /health answers; stopped with SIGTERM (under cProfile, writing
    `profile` as it exits, when given)."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(
        HYPHAE_DATA_DIR=str(work_dir / "data"),
        HYPHAE_DATABASE_URL=url,
        HYPHAE_HOST="127.0.0.1",
        HYPHAE_HTTP_PORT=str(http_port),
        HYPHAE_GRPC_PORT=str(grpc_port),
        HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
        HYPHAE_TRUST_ORG_HEADER="1",
        HYPHAE_WORKERS=str(workers),
    )
    log_path = work_dir / f"serve-{workers}.log"
    with log_path.open("w") as log:
        command = hyphae_command("serve")
        if profile is not None:
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "cli.main", "serve"]
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"hyphae serve exited with {child.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hyphae serve did not answer /health in time:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield Server(f"127.0.0.1:{grpc_port}", child.pid, workers)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


FINAL = {
    run_pb2.RUN_STATUS_COMPLETED,
    run_pb2.RUN_STATUS_FAILED,
    run_pb2.RUN_STATUS_CONDITION_NOT_MET,
    run_pb2.RUN_STATUS_CANCELLED,
}


def seconds_of(timestamp: Any) -> float:
    return float(timestamp.seconds) + float(timestamp.nanos) / 1e9


FINAL_EVENTS = {
    "workflow_run_completed",
    "workflow_run_failed",
    "workflow_run_condition_not_met",
    "workflow_run_cancelled",
}


def watch_available() -> bool:
    """Whether this checkout's RunService has the server-streaming WatchRun."""
    return hasattr(run_service_pb2_grpc.RunServiceServicer, "WatchRun")


def completion_label(args: argparse.Namespace) -> str:
    return "WatchRun" if args.completion == "watch" else f"GetRunStatus every {args.poll_ms:g} ms"


class HyphaeClient:
    """One grpc.aio channel; runs a workflow end to end (execute, then observe completion)."""

    def __init__(self, channel: grpc.aio.Channel, args: argparse.Namespace) -> None:
        self.runs = run_service_pb2_grpc.RunServiceStub(channel)
        self.workflows = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        self.metadata = (("x-org-id", ORG),)
        self.poll_seconds = args.poll_ms / 1000
        self.input = json_pb2.Json(raw=json.dumps(INPUT, separators=(",", ":")))
        self.watch = args.completion == "watch"

    async def create(self, steps: int, label: str) -> str:
        workflow = workflow_pb2.Workflow(
            name=f"bench-{label}-{uuid.uuid4().hex[:8]}",
            definition=json_pb2.Json(raw=json.dumps(DEFINITIONS[steps], separators=(",", ":"))),
        )
        response = await self.workflows.CreateWorkflow(
            workflow_service_pb2.CreateWorkflowRequest(workflow=workflow), metadata=self.metadata, timeout=30
        )
        return response.workflow.id

    async def execute(self, workflow_id: str) -> str:
        request = run_service_pb2.ExecuteWorkflowRequest(workflow_id=workflow_id, input=self.input)
        response = await self.runs.ExecuteWorkflow(request, metadata=self.metadata, timeout=30)
        return response.run_id

    async def status(self, run_id: str) -> Any:
        request = run_service_pb2.GetRunStatusRequest(run_id=run_id)
        return (await self.runs.GetRunStatus(request, metadata=self.metadata, timeout=30)).run

    async def wait(self, run_id: str) -> tuple[bool, Any, int]:
        """(completed, the finished run if it was read, status reads made) once the run is final."""
        if self.watch:
            final = ""
            request = run_service_pb2.WatchRunRequest(run_id=run_id)
            async for message in self.runs.WatchRun(request, metadata=self.metadata, timeout=60):
                if message.event.type in FINAL_EVENTS:
                    final = message.event.type
                    break
            return final == "workflow_run_completed", None, 0
        polls = 0
        while True:
            await asyncio.sleep(self.poll_seconds)
            run = await self.status(run_id)
            polls += 1
            if run.status in FINAL:
                return run.status == run_pb2.RUN_STATUS_COMPLETED, run, polls

    async def running(self, workflow_id: str) -> bool:
        """Whether any run of the workflow is still running (one ListRuns call)."""
        request = run_service_pb2.ListRunsRequest(
            workflow_id=workflow_id, status=run_pb2.RUN_STATUS_RUNNING, page_size=1
        )
        response = await self.runs.ListRuns(request, metadata=self.metadata, timeout=30)
        return len(response.runs) > 0

    async def failed(self, workflow_id: str) -> int:
        request = run_service_pb2.ListRunsRequest(
            workflow_id=workflow_id, status=run_pb2.RUN_STATUS_FAILED, page_size=100
        )
        response = await self.runs.ListRuns(request, metadata=self.metadata, timeout=30)
        return len(response.runs)


def breakdown(run: Any, started_wall: float, observed_wall: float) -> dict[str, float] | None:
    """Where one run's latency went, from the server's timestamps (Postgres now() = transaction start)."""
    if not run.steps or not run.HasField("created_at") or not run.HasField("completed_at"):
        return None
    first, last = run.steps[0], run.steps[-1]
    if not first.HasField("started_at") or not last.HasField("completed_at"):
        return None
    created, done = seconds_of(run.created_at), seconds_of(run.completed_at)
    return {
        "execute call -> run row": 1000 * (created - started_wall),
        "queued (run row -> first step starts)": 1000 * (seconds_of(first.started_at) - created),
        "steps (first starts -> last done)": 1000 * (seconds_of(last.completed_at) - seconds_of(first.started_at)),
        "finish (last step done -> run final)": 1000 * (done - seconds_of(last.completed_at)),
        "observed by client after final": 1000 * (observed_wall - done),
    }


async def hyphae_load(
    client: HyphaeClient,
    workflow_id: str,
    measurement: Measurement,
    concurrency: int,
    *,
    seconds: float | None = None,
    total: int | None = None,
    pids: tuple[int, ...] = (),
    sample_every: int = 0,
) -> Measurement:
    """`concurrency` loops of execute + wait, for `seconds` or until `total` runs started. Watching, every
    `sample_every`-th run is read once more after it ended (its timestamps give the latency breakdown)."""
    stop_at = time.perf_counter() + seconds if seconds is not None else float("inf")
    started = 0
    phases: dict[str, list[float]] = {}

    async def loop() -> None:
        nonlocal started
        while time.perf_counter() < stop_at and (total is None or started < total):
            started += 1
            number = started
            began, wall = time.perf_counter(), time.time()
            try:
                run_id = await client.execute(workflow_id)
                completed, run, polls = await client.wait(run_id)
                observed = time.time()
                elapsed = time.perf_counter() - began
                if run is None and sample_every and number % sample_every == 0:
                    run = await client.status(run_id)
                    polls += 1
            except grpc.RpcError:
                measurement.errors += 1
                continue
            measurement.polls += polls
            if not completed:
                measurement.errors += 1
                continue
            measurement.runs += 1
            measurement.latencies_ms.append(1000 * elapsed)
            phases_of_run = breakdown(run, wall, observed) if run is not None else None
            for name, value in (phases_of_run or {}).items():
                phases.setdefault(name, []).append(value)

    began, client_cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_seconds(*pids)
    pg = postgres_cpu()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    measurement.seconds = time.perf_counter() - began
    measurement.client_cpu = time.process_time() - client_cpu
    measurement.server_cpu = process_cpu_seconds(*pids) - server_cpu
    measurement.postgres_cpu = postgres_cpu_since(pg)
    measurement.breakdown_ms = {name: statistics.fmean(values) for name, values in phases.items()}
    return measurement


async def hyphae_throughput(server: Server, args: argparse.Namespace) -> list[Measurement]:
    out = []
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        client = HyphaeClient(channel, args)
        workflows = {steps: await client.create(steps, f"{steps}step") for steps in (1, 3)}
        config = f"HYPHAE_WORKERS={server.workers}"
        say(f"  warm-up {args.warmup:g}s, completion observed with {completion_label(args)}")
        await hyphae_load(client, workflows[1], Measurement("Hyphae", config, 1), args.concurrency, seconds=args.warmup)
        for steps in (1, 3):
            say(f"  Hyphae {config}, {steps}-step, {args.seconds:g}s ...")
            measurement = await hyphae_load(
                client,
                workflows[steps],
                Measurement("Hyphae", config, steps),
                args.concurrency,
                seconds=args.seconds,
                pids=(server.pid,),
                sample_every=10,
            )
            say(f"    {measurement.line()}")
            out.append(measurement)
    return out


async def hyphae_commits(server: Server, stats: Stats, args: argparse.Namespace, rate: float) -> list[Commits]:
    """Two batches of 1-step runs: observed like the throughput rows, and unobserved (paced executes)."""
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        client = HyphaeClient(channel, args)
        observed_workflow = await client.create(1, "commits-observed")
        unobserved_workflow = await client.create(1, "commits-unobserved")
        label = completion_label(args)
        say(f"  Hyphae commits: {args.commit_runs} 1-step runs observed with {label}, {args.concurrency} in flight")
        load = hyphae_load(
            client, observed_workflow, Measurement("Hyphae", "commits", 1), args.concurrency, total=args.commit_runs
        )
        measurement, window = await stats.around(load, say)
        # A GetRunStatus is one transaction; WatchRun's reads (one per wake-up of the stream) happen in the server.
        reads = None if client.watch else measurement.polls
        observed = commits_of("Hyphae", f"observed with {label} (as above)", measurement.runs, window, reads)
        say(f"    {observed.summary()} ({measurement.runs} runs, {measurement.errors} errors)")

        # Unobserved: executes paced at ~80% of the measured capacity (a backlog drains slowly: a worker whose slots
        # are full waits for the next execute or its 1 s poll), completion checked with ListRuns at the end.
        pace = 1 / max(0.8 * rate, 1.0)
        say(f"  Hyphae commits: {args.commit_runs} 1-step runs, not observed, executes paced at {1 / pace:.0f}/s")
        counts = {"executed": 0, "errors": 0, "listed": 0}
        in_flight = asyncio.Semaphore(args.concurrency)

        async def execute() -> None:
            async with in_flight:
                try:
                    await client.execute(unobserved_workflow)
                    counts["executed"] += 1
                except grpc.RpcError:
                    counts["errors"] += 1

        async def batch() -> None:
            began = time.perf_counter()
            tasks = []
            for index in range(args.commit_runs):
                delay = began + index * pace - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(execute()))
            await asyncio.gather(*tasks)
            while True:
                await asyncio.sleep(0.1)
                counts["listed"] += 1
                if not await client.running(unobserved_workflow):
                    return

        _, window = await stats.around(batch(), say)
        failed = await client.failed(unobserved_workflow)
        unobserved = commits_of(
            "Hyphae", "not observed (ListRuns at the end)", counts["executed"] - failed, window, counts["listed"]
        )
        say(f"    {unobserved.summary()} ({counts['executed']} executed, {counts['errors']} errors, {failed} failed)")
    return [observed, unobserved]


def commits_of(engine: str, batch: str, runs: int, window: Window, client_transactions: int | None) -> Commits:
    return Commits(
        engine, batch, runs, window.commits, client_transactions, window.rows, window.writes, window.idle_writes
    )


def run_hyphae(
    args: argparse.Namespace, name: str, url: str, work_dir: Path
) -> tuple[list[Measurement], list[Commits], Profile | None]:
    measurements: list[Measurement] = []
    for workers in args.workers:
        say(f"starting hyphae serve, HYPHAE_WORKERS={workers} ...")
        with hyphae_serve(url, workers, work_dir) as server:
            measurements += asyncio.run(hyphae_throughput(server, args))
    ones = [m for m in measurements if m.steps == 1]
    best = max(ones, key=lambda m: m.rate)
    workers = int(best.config.split("=")[1])
    say(f"starting hyphae serve, HYPHAE_WORKERS={workers} (the best 1-step) for the commit count ...")
    with hyphae_serve(url, workers, work_dir) as server:
        commits = asyncio.run(hyphae_commits(server, Stats(args.database_url, name, args.settle), args, best.rate))
    profile: Profile | None = None
    if args.profile:
        say(f"starting hyphae serve under cProfile, HYPHAE_WORKERS={workers}, for a {args.seconds:g}s 1-step run ...")
        path = work_dir / "serve.prof"
        with hyphae_serve(url, workers, work_dir, profile=path) as server:
            measurement = asyncio.run(hyphae_profiled(server, args))
        profile = Profile.read(path, measurement)
        say(f"    {profile.summary()}")
    return measurements, commits, profile


async def hyphae_profiled(server: Server, args: argparse.Namespace) -> Measurement:
    async with grpc.aio.insecure_channel(server.grpc_target) as channel:
        client = HyphaeClient(channel, args)
        workflow = await client.create(1, "profiled")
        config = f"HYPHAE_WORKERS={server.workers}, cProfile"
        await hyphae_load(client, workflow, Measurement("Hyphae", config, 1), args.concurrency, seconds=args.warmup)
        return await hyphae_load(
            client, workflow, Measurement("Hyphae", config, 1), args.concurrency, seconds=args.seconds
        )


# Where `hyphae serve`'s Python time goes, by the file (or built-in) a function lives in; first match wins.
PROFILE_GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("start-up (imports, compiling)", ("<frozen importlib", "builtins.compile", "builtins.exec", "marshal", "alembic")),
    ("SQLAlchemy (Core, pool, async bridge)", ("/sqlalchemy/", "greenlet")),
    ("psycopg (driver)", ("/psycopg/", "psycopg_binary", "psycopg_c")),
    ("asyncio event loop (incl. time waiting in epoll)", ("/asyncio/", "selectors.py", "select.epoll", "_contextvars")),
    ("gRPC", ("/grpc/", "cygrpc", "grpc._")),
    ("Hyphae code (server/, gateway/, cli/)", ("/server/", "/gateway/", "/cli/")),
    ("protobuf", ("/google/protobuf/", "google._upb")),
    ("json", ("/json/", "_json")),
]


OTHER = "other (standard library, built-ins)"


@dataclass
class Profile:
    measurement: Measurement
    groups: list[tuple[str, float]]  # (group, seconds of own time), start-up excluded, largest first
    top: list[tuple[str, int, float]]  # (function, calls, seconds of own time)
    startup: float

    @staticmethod
    def read(path: Path, measurement: Measurement) -> Profile:
        import pstats

        raw: dict[tuple[str, int, str], tuple[int, int, float, float, object]] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
        totals: dict[str, float] = {}
        functions: list[tuple[str, int, float]] = []
        for (file, line, name), (_, calls, own, _, _) in raw.items():
            where = f"{file}:{name}" if file != "~" else name
            group = next((g for g, keys in PROFILE_GROUPS if any(key in where for key in keys)), OTHER)
            totals[group] = totals.get(group, 0.0) + own
            if group != "start-up (imports, compiling)":
                short = where.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
                functions.append((f"{short}:{line}" if line else short, calls, own))
        startup = totals.pop("start-up (imports, compiling)", 0.0)
        groups = sorted(totals.items(), key=lambda item: -item[1])
        top = sorted(functions, key=lambda item: -item[2])[:10]
        return Profile(measurement, groups, top, startup)

    @property
    def total(self) -> float:
        return sum(seconds for _, seconds in self.groups)

    def summary(self) -> str:
        shares = ", ".join(f"{name} {100 * seconds / self.total:.0f}%" for name, seconds in self.groups[:4])
        return f"{self.measurement.rate:.0f} runs/s under cProfile; own time: {shares}"

    def table(self) -> str:
        lines = ["| where (own time, start-up excluded) | share |", "|---|---:|"]
        lines += [f"| {name} | {100 * seconds / self.total:.0f}% |" for name, seconds in self.groups]
        lines += ["", "| function (top 10 by own time) | calls | share |", "|---|---:|---:|"]
        lines += [f"| `{name}` | {calls} | {100 * own / self.total:.1f}% |" for name, calls, own in self.top]
        return "\n".join(lines)


# --------------------------------------------------------------------------- DBOS (child process)


def dbos_child(args: argparse.Namespace) -> None:
    """Runs in its own process: DBOS on `--dbos-database`, the load, the commit batch; JSON result on stdout."""
    from dbos import DBOS, DBOSConfig

    from server.domain import matcher

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    config = matcher.config_from_properties({"matchOn": MATCH_ON})

    @DBOS.step()
    async def match_step(left: list[Any], right: list[Any]) -> dict[str, Any]:
        result = matcher.match(left, right, config)
        return {
            "matched": result.matched,
            "unmatchedLeft": result.unmatched_left,
            "unmatchedRight": result.unmatched_right,
        }

    @DBOS.workflow()
    async def one_step(data: dict[str, Any]) -> dict[str, Any]:
        return await match_step(data["l"], data["r"])

    @DBOS.workflow()
    async def three_steps(data: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for suffix in ("1", "2", "3"):
            result = await match_step(data["l"], data["r"])
            out.update({f"{key}{suffix}": value for key, value in result.items()})
        return out

    workflows: dict[int, Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any]]]] = {
        1: one_step,
        3: three_steps,
    }
    name = str(args.dbos_database)
    dbos_config: DBOSConfig = {
        "name": "hyphae-bench",
        "system_database_url": database_url(args.database_url, name),
        "log_level": "WARNING",
    }
    DBOS(config=dbos_config)
    DBOS.launch()

    async def load(steps: int, label: str, *, seconds: float | None = None, total: int | None = None) -> Measurement:
        measurement = Measurement("DBOS", label, steps)
        workflow = workflows[steps]
        stop_at = time.perf_counter() + seconds if seconds is not None else float("inf")
        started = 0

        async def loop() -> None:
            nonlocal started
            while time.perf_counter() < stop_at and (total is None or started < total):
                started += 1
                began = time.perf_counter()
                try:
                    handle = await DBOS.start_workflow_async(workflow, INPUT)
                    result = await handle.get_result()
                except Exception:
                    measurement.errors += 1
                    continue
                if not result:
                    measurement.errors += 1
                    continue
                measurement.runs += 1
                measurement.latencies_ms.append(1000 * (time.perf_counter() - began))

        began, cpu, pg = time.perf_counter(), time.process_time(), postgres_cpu()
        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
        measurement.seconds = time.perf_counter() - began
        measurement.server_cpu = time.process_time() - cpu
        measurement.postgres_cpu = postgres_cpu_since(pg)
        return measurement

    async def main() -> tuple[list[Measurement], Commits]:
        label = "async workflows, start_workflow_async + get_result"
        progress(f"  warm-up {args.warmup:g}s")
        await load(1, label, seconds=args.warmup)
        out = []
        for steps in (1, 3):
            progress(f"  DBOS {steps}-step, {args.seconds:g}s ...")
            measurement = await load(steps, label, seconds=args.seconds)
            progress(f"    {measurement.line()}")
            out.append(measurement)
        progress(f"  DBOS commits: {args.commit_runs} 1-step runs, {args.concurrency} in flight")
        stats = Stats(args.database_url, name, args.settle)
        batch, window = await stats.around(load(1, label, total=args.commit_runs), progress)
        result = commits_of("DBOS", "awaited in process (nothing to observe)", batch.runs, window, 0)
        progress(f"    {result.summary()} ({batch.runs} runs, {batch.errors} errors)")
        return out, result

    try:
        measurements, commits = asyncio.run(main())
    finally:
        DBOS.destroy()
    print(json.dumps({"measurements": [asdict(m) for m in measurements], "commits": asdict(commits)}), flush=True)


def run_dbos(args: argparse.Namespace, name: str) -> tuple[list[Measurement], Commits, str]:
    from importlib.metadata import version

    say("starting DBOS Transact in a child process ...")
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--dbos-child",
        "--dbos-database",
        name,
        "--database-url",
        args.database_url,
        "--seconds",
        str(args.seconds),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
        "--commit-runs",
        str(args.commit_runs),
        "--settle",
        str(args.settle),
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the DBOS child failed with exit code {done.returncode}")
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    measurements = [Measurement(**m) for m in payload["measurements"]]
    commits = Commits(**{**payload["commits"], "rows": {k: tuple(v) for k, v in payload["commits"]["rows"].items()}})
    return measurements, commits, version("dbos")


# --------------------------------------------------------------------------- report


def throughput_table(measurements: list[Measurement]) -> str:
    lines = [
        "| engine | configuration | steps | runs | runs/s | p50 ms | p95 ms | status reads/run | "
        "CPU ms/run: client | engine | Postgres |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in measurements:
        reads = f"{m.polls / m.runs:.1f}" if m.engine == "Hyphae" and m.runs else "-"
        client = f"{m.per_run_ms(m.client_cpu):.2f}" if m.engine == "Hyphae" else "(in engine)"
        lines.append(
            f"| {m.engine} | {m.config} | {m.steps} | {m.runs} | {m.rate:.1f} | {m.p(0.5):.1f} | {m.p(0.95):.1f} | "
            f"{reads} | {client} | {m.per_run_ms(m.server_cpu):.2f} | {m.per_run_ms(m.postgres_cpu):.2f} |"
        )
    return "\n".join(lines)


def commits_table(commits: list[Commits]) -> str:
    lines = [
        "| engine | batch | runs | xact_commit/run | client reads | engine xact_commit/run | write transactions/run |"
        " rows inserted/updated per run |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in commits:
        rows = ", ".join(
            f"{table.split('.', 1)[-1]} {ins / c.runs:.2f}/{upd / c.runs:.2f}"
            for table, (ins, upd) in sorted(c.rows.items())
            if c.runs and (ins + upd) / c.runs >= 0.05
        )
        reads = "in the server" if c.client_transactions is None else str(c.client_transactions)
        engine = "-" if c.engine_per_run is None else f"**{c.engine_per_run:.2f}**"
        lines.append(
            f"| {c.engine} | {c.batch} | {c.runs} | {c.per_run:.2f} | {reads} | {engine} | "
            f"**{c.writes_per_run:.2f}** | {rows} |"
        )
    return "\n".join(lines)


def code_path_table() -> str:
    lines = ["| transaction | per 1-step run | kind | what |", "|---|---|---|---|"]
    lines += [f"| {kind} | {count} | {rw} | {what} |" for kind, count, rw, what in HYPHAE_CODE_PATH]
    return "\n".join(lines)


@dataclass
class Report:
    args: argparse.Namespace
    hyphae: list[Measurement]
    dbos: list[Measurement]
    commits: list[Commits]
    dbos_version: str
    profile: Profile | None

    def best(self, engine: list[Measurement], steps: int) -> Measurement:
        return max((m for m in engine if m.steps == steps), key=lambda m: m.rate)

    def commits_of(self, engine: str, unobserved: bool = False) -> Commits | None:
        found = [c for c in self.commits if c.engine == engine]
        if engine == "Hyphae":
            found = [c for c in found if c.batch.startswith("not observed") == unobserved]
        return found[0] if found else None

    def verdicts(self) -> list[str]:
        h1, d1 = self.best(self.hyphae, 1), self.best(self.dbos, 1)
        h3, d3 = self.best(self.hyphae, 3), self.best(self.dbos, 3)
        ratio = h1.rate / d1.rate if d1.rate else 0.0
        out = [
            f"1-step throughput: Hyphae {h1.rate:.0f} runs/s ({h1.config}) vs DBOS {d1.rate:.0f} runs/s = "
            f"{ratio:.2f}x: {'meets' if ratio >= TARGET_RATIO else 'misses'} the target (>= {TARGET_RATIO:g}x)",
            f"1-step p50 latency: Hyphae {h1.p(0.5):.1f} ms vs DBOS {d1.p(0.5):.1f} ms: "
            f"{'meets' if h1.p(0.5) <= d1.p(0.5) else 'misses'} the target (no worse)",
        ]
        verdict = {True: "meets", False: "misses"}
        hyphae, dbos = self.commits_of("Hyphae", unobserved=True), self.commits_of("DBOS")
        if hyphae is not None and hyphae.engine_per_run is not None:
            other = "" if dbos is None else f" (DBOS {dbos.per_run:.2f} and {dbos.writes_per_run:.2f})"
            out.append(
                f"Postgres commits per 1-step run, engine only: Hyphae {hyphae.engine_per_run:.2f} (xact_commit), "
                f"{hyphae.writes_per_run:.2f} write transactions{other}: counted as xact_commit "
                f"{verdict[hyphae.engine_per_run <= TARGET_COMMITS]}, counting write transactions "
                f"{verdict[hyphae.writes_per_run <= TARGET_COMMITS]} the target (<= {TARGET_COMMITS:g})"
            )
        out.append(
            f"3-step throughput: Hyphae {h3.rate:.0f} runs/s vs DBOS {d3.rate:.0f} runs/s = "
            f"{(h3.rate / d3.rate if d3.rate else 0.0):.2f}x"
        )
        return out

    def reconcile(self) -> str:
        """The unobserved batch's counts read back as transactions per run by kind."""
        c = self.commits_of("Hyphae", unobserved=True)
        if c is None or c.engine_per_run is None:
            return ""
        return (
            f"Measured without observers: {c.engine_per_run:.2f} xact_commit/run = 2 (execute, commit) + "
            f"{c.engine_per_run - 2:.2f} claims and idle polls, of which {c.writes_per_run:.2f} wrote = 2 + "
            f"{c.writes_per_run - 2:.2f} claims that took a run (none for a run handed over at execute; a claim "
            "often takes several)."
        )

    def target_note(self) -> str:
        """What the 2x target asks of the CPU, from the best rows' own costs."""
        h1, d1 = self.best(self.hyphae, 1), self.best(self.dbos, 1)
        if not (h1.runs and d1.rate):
            return ""
        cores = os.cpu_count() or 1
        goal = TARGET_RATIO * d1.rate
        total = sum(h1.per_run_ms(x) for x in (h1.server_cpu, h1.postgres_cpu, h1.client_cpu))
        return (
            f"The {TARGET_RATIO:g}x target means {goal:.0f} runs/s here. Client, `hyphae serve` and Postgres together "
            f"spend {total:.2f} ms of CPU per 1-step run, so {cores} fully busy cores would give at most "
            f"{1000 * cores / total:.0f} runs/s, and `hyphae serve` alone (one event loop) at most "
            f"{1000 / h1.per_run_ms(h1.server_cpu) if h1.server_cpu else 0:.0f}. At {goal:.0f} runs/s the whole run "
            f"would have to fit in {1000 * cores / goal:.2f} ms of CPU. DBOS is a library called in its own process; "
            "a Hyphae run is two gRPC calls (ExecuteWorkflow, then a WatchRun stream of three events) through the "
            "Gatekeeper interceptor, two write statements and one or two reads."
            + (
                " Under cProfile (below) what remains is mostly the asyncio loop and gRPC's Cython callbacks (the "
                "`Context.run` line), not Hyphae's code or its SQL."
                if self.profile is not None
                else ""
            )
        )

    def breakdown(self) -> str:
        h1 = self.best(self.hyphae, 1)
        if not h1.breakdown_ms:
            return "(no breakdown: no run was read back with its step timestamps)"
        lines = ["| phase (mean over the runs read back) | ms |", "|---|---:|"]
        lines += [f"| {name} | {value:.1f} |" for name, value in h1.breakdown_ms.items()]
        return "\n".join(lines)

    def queued_note(self) -> str:
        """The 1-step rows whose runs mostly waited in the queue (fewer workers than runs in flight)."""
        rows = [
            m
            for m in self.hyphae
            if m.steps == 1 and m.breakdown_ms and int(m.config.split("=")[1]) < self.args.concurrency
        ]
        if not rows:
            return ""
        queued = ", ".join(
            f"{m.config}: {m.breakdown_ms['queued (run row -> first step starts)']:.0f} ms queued" for m in rows
        )
        return (
            f"With fewer workers than runs in flight, runs wait in the queue ({queued}, mean): a worker runs at most "
            "`HYPHAE_WORKERS` runs at a time; a run that ends frees its slot and wakes the worker, which claims the "
            "oldest queued runs at once (server/runtime/worker.py)."
        )

    def section(self) -> str:
        args = self.args
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        cores = os.cpu_count()
        h1 = self.best(self.hyphae, 1)
        d1 = self.best(self.dbos, 1)
        lines = "\n".join(f"- **{line}**" for line in self.verdicts())
        cpu_engine, cpu_pg, cpu_client = (h1.per_run_ms(x) for x in (h1.server_cpu, h1.postgres_cpu, h1.client_cpu))
        busy = 100 * h1.server_cpu / h1.seconds if h1.seconds else 0.0
        command = f"python3 scripts/uv.py run python bench/engine.py --seconds {args.seconds:g}" + (
            "" if args.profile else " --no-profile"
        )
        if args.completion == "watch":
            observing = (
                "follows\n  the run with the server-streaming WatchRun until its final event (latency: execute call ->"
                " final\n  event received). Every 10th run is read once more with GetRunStatus (`status reads/run`)"
                " for the\n  latency breakdown below."
            )
            observed_cost = (
                "WatchRun's reads (one per wake-up of the stream) happen in the server and\n"
                "cannot be told apart from the engine's."
            )
        else:
            observing = (
                f"polls\n  GetRunStatus every {args.poll_ms:g} ms (`status reads/run`); latency: execute call ->"
                " completion\n  observed, so it includes up to one poll interval."
            )
            observed_cost = "GetRunStatus calls, one transaction each, are subtracted in\n`engine xact_commit/run`."
        profile = ""
        if self.profile is not None:
            profile = f"""
`hyphae serve` under cProfile ({args.seconds:g}s of 1-step runs, {self.profile.measurement.config},
{self.profile.measurement.rate:.0f} runs/s while profiled): wall-clock own time of each Python function, grouped by the
library it lives in; start-up ({self.profile.startup:.1f} s) left out; gRPC's C core runs in its own threads, unseen:

{self.profile.table()}
"""
        queued = self.queued_note()
        return f"""{SECTION_START}
## Engine: Hyphae vs DBOS Transact, 1-step and 3-step workflows

Measured {now} by `{command}`.

- Machine: {cores} CPUs (nproc), {platform.system()} {platform.machine()}, Python {platform.python_version()}.
  **Client, engines and Postgres share these {cores} cores**; the engines run one after the other, never
  together. Postgres: one local server (fsync and synchronous_commit on), a scratch database per engine, dropped
  afterwards; other users of that server (tests) may have run meanwhile and count in the Postgres CPU column.
- Workflows: 1 or 3 steps, each a `matcher` of two 3-record inline lists on `id` (no HTTP: the engine is measured).
  {args.concurrency} workflows in flight, closed loop, {args.warmup:g}s warm-up per configuration, then
  {args.seconds:g}s per row.
- Hyphae: `hyphae serve` subprocess (`HYPHAE_WORKERS` as in the row, rate limit off, X-Org-Id trusted); one
  asyncio client process with a grpc.aio channel calls ExecuteWorkflow, then {observing}
- DBOS Transact {self.dbos_version}: a child process with DBOS on its scratch database (`system_database_url`),
  async workflows started with `DBOS.start_workflow_async` and awaited with `handle.get_result()` in the same
  process: DBOS is a library, so there is no API hop and nothing to poll; each step is an async `@DBOS.step()`
  calling the same `server.domain.matcher.match` as Hyphae's executor.
- CPU columns: CPU time per completed run of the client process, of the engine's process (DBOS's client is inside
  it) and of all local `postgres` processes.

{throughput_table(self.hyphae + self.dbos)}

{lines}

### Postgres commits per 1-step run

Batches of {args.commit_runs} 1-step runs, on the best 1-step configuration. `xact_commit`: of the engine's scratch
database (`pg_stat_database`), read {args.settle:g} s after the batch, since Postgres publishes an idle backend's
counters only after 10 s; it counts read-only transactions too (DBOS's SQLAlchemy pool sends a pre-ping, `;` in
autocommit, at every checkout, which Postgres counts as one more committed transaction; Hyphae's hot path sends
each transaction as one autocommit statement, without pre-ping). `write
transactions`: transaction ids assigned on the whole server during the batch, less the rate measured in the
{Stats.IDLE_SECONDS:g} s before it: the commits that write (and flush) WAL. Hyphae's first batch runs like the
rows above, so it includes the client's observation: {observed_cost} Its second batch paces executes at 80% of
the measured rate, observes nothing, and checks completion once at the end with ListRuns (those calls subtracted).
Idle polling (a Hyphae worker claims once a second, the scheduler and the interrupt sweeper poll; DBOS polls its
queues) is in the xact_commit numbers, a few per second.

{commits_table(self.commits)}

### Where a Hyphae run's cost goes

CPU per 1-step run at the best row ({h1.config}): `hyphae serve` {cpu_engine:.2f} ms, its process busy {busy:.0f}%
of one core (one event loop runs the API, the workers and the asyncio Postgres driver, so one core is its ceiling:
{1000 / cpu_engine if cpu_engine else 0:.0f} runs/s at this cost); Postgres {cpu_pg:.2f} ms; client {cpu_client:.2f} ms.
DBOS: {d1.per_run_ms(d1.server_cpu):.2f} ms in its process (client included), Postgres
{d1.per_run_ms(d1.postgres_cpu):.2f} ms.

{self.target_note()}

Transactions of one run, by kind, from the code path (server/services/runs.py, server/runtime/worker.py and
executor.py, server/store/runs.py): 2 + claims on the engine side, each ONE statement in autocommit on a direct
psycopg connection (server/store/db.py `DirectPool`), plus WatchRun's reads. {self.reconcile()}

{code_path_table()}
{profile}
Latency of the best 1-step row by phase, from the runs' own timestamps (Postgres `now()`, the start of the writing
transaction):

{self.breakdown()}

{queued}
{SECTION_END}
"""


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in bench/.\n"
    if SECTION_START in current and SECTION_END in current:
        before, rest = current.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1].lstrip("\n")
        updated = before + text + ("\n" + after if after else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(updated)


# --------------------------------------------------------------------------- main


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=6, help="length of each measured row (default 6)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up per engine configuration (default 2)")
    parser.add_argument("--concurrency", type=int, default=32, help="workflows in flight (default 32)")
    parser.add_argument(
        "--workers", default="8,16,32", help="HYPHAE_WORKERS values to try, comma-separated (default 8,16,32)"
    )
    parser.add_argument(
        "--completion",
        choices=("watch", "poll"),
        default="watch" if watch_available() else "poll",
        help="observe completion with WatchRun (the default where RunService has it) or by polling GetRunStatus",
    )
    parser.add_argument("--poll-ms", type=float, default=10, help="GetRunStatus interval (default 10)")
    parser.add_argument("--commit-runs", type=int, default=500, help="runs per commit-count batch (default 500)")
    parser.add_argument(
        "--settle", type=float, default=STATS_SETTLE_SECONDS, help="wait before reading Postgres statistics"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="Postgres server for scratch databases")
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="skip the cProfile run of hyphae serve"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    parser.add_argument("--dbos-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--dbos-database", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.commit_runs < 1:
        parser.error("--concurrency and --commit-runs must be positive")
    if args.completion == "watch" and not watch_available():
        parser.error("this checkout's RunService has no WatchRun; use --completion poll")
    if not args.dbos_child:
        try:
            args.workers = [int(part) for part in args.workers.split(",") if part.strip()]
        except ValueError:
            parser.error("--workers takes integers, e.g. 8,16")
        if not args.workers or min(args.workers) < 1:
            parser.error("--workers must name positive integers")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.dbos_child:
        dbos_child(args)
        return
    try:
        with psycopg.connect(args.database_url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        sys.exit(f"Postgres at {args.database_url} does not answer ({exc}); both engines need it")
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="hyphae-bench-") as tmp,
        scratch_database(args.database_url, "hyphae_bench") as (hyphae_name, hyphae_url),
        scratch_database(args.database_url, "dbos_bench") as (dbos_name, _),
    ):
        say(f"scratch databases {hyphae_name} (Hyphae) and {dbos_name} (DBOS) on {args.database_url}")
        hyphae, hyphae_commits_, profile = run_hyphae(args, hyphae_name, hyphae_url, Path(tmp))
        dbos, dbos_commits, dbos_version = run_dbos(args, dbos_name)
    report = Report(args, hyphae, dbos, [*hyphae_commits_, dbos_commits], dbos_version, profile)
    say("")
    say(throughput_table(hyphae + dbos))
    say("")
    say(commits_table(report.commits))
    say("")
    say("\n".join(report.verdicts()))
    say(f"(total {time.monotonic() - began:.0f} s)")
    if not args.no_write:
        write_results(report.section())
        say(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
