"""GetWorkflow throughput: REST gateway vs direct gRPC, against one `hyphae serve` this script starts itself.

    python3 -m uv run python bench/gateway.py [--seconds 10] [--concurrency 64] [--database-url URL]

Every side reads the same workflow with `--concurrency` requests in flight from one asyncio client process:
REST through httpx.AsyncClient (HTTP/1.1 keep-alive, one pool of `--concurrency` connections), REST again with the
same connections split over `--rest-pools` AsyncClients (httpx's pool costs CPU that grows with its size, see
encode/httpx#3215), and gRPC through one grpc.aio channel and the generated stub. After a warm-up the sides
alternate, `--rounds` times, each for `--seconds`; the report gives requests/s per side (with client and server
CPU use) and each REST/gRPC ratio against the target (>= 0.8), and replaces this script's section of
bench/RESULTS.md.

Postgres: a scratch database on `--database-url`'s server (default postgresql://postgres@127.0.0.1:5432/postgres)
when it answers, dropped afterwards; otherwise `hyphae serve` runs its embedded Postgres in a temporary data dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import psycopg
from hyphae.workflows.v1 import workflow_service_pb2, workflow_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- bench/gateway.py: start -->"
SECTION_END = "<!-- bench/gateway.py: end -->"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.8
ORG = "bench-org"
DEFINITION = (
    '{"actions":[{"type":"PbotApproval","properties":{"comment":"approve the invoice?",'
    '"zeta":1,"alpha":1152921504606846976,"mid":[1.5,42,[2,3]]}}]}'
)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A fresh database on `server_url`'s Postgres (a postgresql:// URL), dropped on exit."""
    name = f"hyphae_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name is generated above
    try:
        yield urllib.parse.urlsplit(server_url)._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(server_url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def hyphae_command() -> list[str]:
    script = Path(sys.executable).parent / "hyphae"
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("hyphae")
    if found:
        return [found, "serve"]
    return [sys.executable, "-c", "from server.cli import main; main()", "serve"]


@dataclass(frozen=True)
class Server:
    http_url: str
    grpc_target: str
    database: str
    pid: int


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; 0.0 where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def hyphae_serve(database_url: str | None, work_dir: Path) -> Iterator[Server]:
    """`hyphae serve` as a subprocess on free loopback ports; waits for /health, stops it with SIGTERM."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(
        HYPHAE_DATA_DIR=str(work_dir / "data"),
        HYPHAE_HOST="127.0.0.1",
        HYPHAE_HTTP_PORT=str(http_port),
        HYPHAE_GRPC_PORT=str(grpc_port),
        HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
        HYPHAE_TRUST_ORG_HEADER="1",
    )
    if database_url:
        env["HYPHAE_DATABASE_URL"] = database_url
    log_path = work_dir / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(hyphae_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    http_url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"hyphae serve exited with {process.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hyphae serve did not answer /health in time:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{http_url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield Server(
            http_url,
            f"127.0.0.1:{grpc_port}",
            "external Postgres" if database_url else "embedded Postgres",
            process.pid,
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --------------------------------------------------------------------------- load


@dataclass
class Tally:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0  # CPU seconds of this (load generating) process
    server_cpu: float = 0.0  # CPU seconds of the hyphae serve process (Postgres not included)

    def add(self, other: Tally) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds
        self.client_cpu += other.client_cpu
        self.server_cpu += other.server_cpu

    def cpu_percent(self, cpu_seconds: float) -> float:
        """100 = one core busy for the whole run."""
        return 100 * cpu_seconds / self.seconds if self.seconds else 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def drive(call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float, server_pid: int) -> Tally:
    """`concurrency` workers calling `call` back to back for `seconds`."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            try:
                ok = await call()
            except (httpx.HTTPError, grpc.RpcError):
                ok = False
            if ok:
                tally.ok += 1
            else:
                tally.errors += 1

    started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_seconds(server_pid)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    tally.client_cpu = time.process_time() - client_cpu
    tally.server_cpu = process_cpu_seconds(server_pid) - server_cpu
    return tally


REST = "REST"
REST_SHARDED = "REST sharded"
GRPC = "gRPC"


def side_label(name: str, args: argparse.Namespace) -> str:
    if name == REST:
        return f"REST (1 pool x {args.concurrency})"
    if name == REST_SHARDED:
        return f"REST ({args.rest_pools} pools x {args.concurrency // args.rest_pools})"
    return "gRPC (1 channel)"


async def measure(server: Server, args: argparse.Namespace) -> tuple[dict[str, Tally], list[tuple[str, Tally]]]:
    """Warm-up, then `args.rounds` alternations of every side; totals per side and every run."""
    concurrency: int = args.concurrency

    def rest_client(connections: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        return httpx.AsyncClient(
            base_url=server.http_url, headers={"X-Org-Id": ORG}, limits=limits, http1=True, http2=False, timeout=30
        )

    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(rest_client(concurrency))
        shards = [
            await stack.enter_async_context(rest_client(concurrency // args.rest_pools))
            for _ in range(args.rest_pools if args.rest_pools > 1 else 0)
        ]
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.grpc_target))

        created = await http.post(
            "/workflows",
            content=f'{{"name":"bench-{uuid.uuid4().hex[:8]}","definition":{DEFINITION}}}',
            headers={"Content-Type": "application/json"},
        )
        created.raise_for_status()
        workflow_id: str = created.json()["id"]
        expected = (await http.get(f"/workflows/{workflow_id}")).content
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        request = workflow_service_pb2.GetWorkflowRequest(id=workflow_id)
        metadata = (("x-org-id", ORG),)
        path = f"/workflows/{workflow_id}"

        async def rest_call() -> bool:
            response = await http.get(path)
            return response.status_code == 200 and response.content == expected

        turn = 0

        async def rest_sharded_call() -> bool:
            nonlocal turn
            turn += 1
            response = await shards[turn % len(shards)].get(path)
            return response.status_code == 200 and response.content == expected

        async def grpc_call() -> bool:
            response = await stub.GetWorkflow(request, metadata=metadata, timeout=30)
            return response.workflow.id == workflow_id

        sides: dict[str, Callable[[], Awaitable[bool]]] = {REST: rest_call}
        if shards:
            sides[REST_SHARDED] = rest_sharded_call
        sides[GRPC] = grpc_call
        width = max(len(side_label(name, args)) for name in sides)
        print(f"warm-up: {args.warmup:g}s per side, {concurrency} in flight", flush=True)
        for name, call in sides.items():
            tally = await drive(call, concurrency, args.warmup, server.pid)
            print(f"  warm-up {side_label(name, args):<{width}} {tally.rate:7.0f} req/s", flush=True)
        totals = {name: Tally() for name in sides}
        runs: list[tuple[str, Tally]] = []
        steps = args.rounds * len(sides)
        step = 0
        for round_number in range(1, args.rounds + 1):
            for name, call in sides.items():
                step += 1
                print(
                    f"[{step}/{steps}] round {round_number} {side_label(name, args):<{width}} {args.seconds:g}s ...",
                    end=" ",
                    flush=True,
                )
                tally = await drive(call, concurrency, args.seconds, server.pid)
                print(
                    f"{tally.rate:7.0f} req/s  ({tally.ok} ok, {tally.errors} errors; CPU client "
                    f"{tally.cpu_percent(tally.client_cpu):.0f}%, server {tally.cpu_percent(tally.server_cpu):.0f}%)",
                    flush=True,
                )
                totals[name].add(tally)
                runs.append((f"round {round_number}: {side_label(name, args)}", tally))
        return totals, runs


# --------------------------------------------------------------------------- report


def ratio(totals: dict[str, Tally], name: str) -> float:
    return totals[name].rate / totals[GRPC].rate if totals[GRPC].rate else 0.0


def table(totals: dict[str, Tally], runs: list[tuple[str, Tally]], args: argparse.Namespace) -> str:
    lines = [
        "| run | requests | errors | seconds | requests/s | client CPU | server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, tally: Tally, rate: str) -> str:
        return (
            f"| {name} | {tally.ok} | {tally.errors} | {tally.seconds:.1f} | {rate} | "
            f"{tally.cpu_percent(tally.client_cpu):.0f}% | {tally.cpu_percent(tally.server_cpu):.0f}% |"
        )

    lines += [row(name, tally, f"{tally.rate:.0f}") for name, tally in runs]
    lines += [
        row(f"**total: {side_label(name, args)}**", tally, f"**{tally.rate:.0f}**") for name, tally in totals.items()
    ]
    return "\n".join(lines)


def verdicts(totals: dict[str, Tally], args: argparse.Namespace) -> list[str]:
    out = []
    for name in totals:
        if name == GRPC:
            continue
        value = ratio(totals, name)
        out.append(
            f"{side_label(name, args)} / gRPC = {value:.2f} ({totals[name].rate:.0f} vs "
            f"{totals[GRPC].rate:.0f} requests/s): {'meets' if value >= TARGET_RATIO else 'misses'} "
            f"the target (>= {TARGET_RATIO})"
        )
    return out


def section(args: argparse.Namespace, server: Server, totals: dict[str, Tally], runs: list[tuple[str, Tally]]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = os.cpu_count()
    sharded = ""
    shard = f"{args.rest_pools} AsyncClients of {args.concurrency // args.rest_pools}"
    if REST_SHARDED in totals:
        sharded = f"""
- Why two REST rows: the plain client, one httpx.AsyncClient with a pool of {args.concurrency}, is itself a
  bottleneck here: httpcore's pool bookkeeping grows with the number of connections and waiting requests
  (encode/httpx#3215), so that client burns most of a core while the server idles (see the CPU columns). The
  same {args.concurrency} keep-alive connections split over {shard} load the server instead; that row
  is the better measure of the gateway. Both run in every round, interleaved with gRPC."""
    lines = "\n".join(f"- **{line}**" for line in verdicts(totals, args))
    return f"""{SECTION_START}
## Gateway: GetWorkflow, REST vs direct gRPC

Measured {now} by `python3 -m uv run python bench/gateway.py --seconds {args.seconds:g}`.

- Machine: {cores} CPUs (nproc), {platform.system()} {platform.machine()}, Python {platform.python_version()}.
  **Client, server and Postgres share these {cores} cores**: the load generator's own CPU use (httpx costs far more
  per request than grpc.aio) comes out of the server's budget, which penalises the REST side.
- Server: one `hyphae serve` subprocess, {server.database}, X-Org-Id trusted, rate limit off; the REST gateway
  calls the services over its loopback gRPC channel in the same process (one event loop).
- Load: GetWorkflow of one stored workflow, {args.concurrency} requests in flight from one asyncio process.
  REST: httpx.AsyncClient, HTTP/1.1 keep-alive, {args.concurrency} connections. gRPC: one grpc.aio channel,
  generated stub. {args.warmup:g}s warm-up per side, then the sides alternate {args.rounds}x, {args.seconds:g}s each.
- CPU columns: CPU time / wall time of the load generator and of the `hyphae serve` process (100% = one core;
  Postgres not counted).{sharded}

{table(totals, runs, args)}

{lines}
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10, help="length of each measured run (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up per side in seconds (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="REST/gRPC alternations (default 2)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    parser.add_argument(
        "--rest-pools",
        type=int,
        default=8,
        help="also measure REST with the connections split over this many AsyncClients "
        "(default 8; 1 turns that side off)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="Postgres server for a scratch database; embedded Postgres if unreachable",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.rest_pools < 1 or args.concurrency % args.rest_pools:
        parser.error("--concurrency must be a positive multiple of --rest-pools")

    with tempfile.TemporaryDirectory(prefix="hyphae-bench-") as tmp, contextlib.ExitStack() as stack:
        database_url: str | None = None
        if args.database_url and postgres_reachable(args.database_url):
            database_url = stack.enter_context(scratch_database(args.database_url))
        print(
            "starting hyphae serve ("
            + ("scratch database on " + args.database_url if database_url else "embedded Postgres")
            + ") ...",
            flush=True,
        )
        server = stack.enter_context(hyphae_serve(database_url, Path(tmp)))
        print(f"server up: REST {server.http_url}  gRPC {server.grpc_target}", flush=True)
        totals, runs = asyncio.run(measure(server, args))

    print()
    print(table(totals, runs, args))
    print()
    print("\n".join(verdicts(totals, args)))
    if not args.no_write:
        write_results(section(args, server, totals, runs))
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
