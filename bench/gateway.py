"""GetWorkflow throughput: REST gateway vs direct gRPC, against one `hyphae serve` this script starts itself.

    python3 scripts/uv.py run python bench/gateway.py [--seconds 10] [--concurrency 64] [--database-url URL]

Every side reads the same workflow with `--concurrency` requests in flight from one asyncio client process:
REST through one aiohttp ClientSession (HTTP/1.1 keep-alive, `--concurrency` connections; httpx's pool costs more CPU
than the server it loads, encode/httpx#3215) and gRPC through one grpc.aio channel and the generated stub, so both
clients are C-accelerated and comparably cheap. After a warm-up the sides
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

import aiohttp
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


def hyphae_command(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "hyphae"
    if script.exists():
        return [str(script), *args]
    found = shutil.which("hyphae")
    if found:
        return [found, *args]
    return [sys.executable, "-c", "from cli.main import main; main()", *args]


@dataclass(frozen=True)
class Server:
    http_url: str  # the gateway inside `hyphae serve`
    gateway_url: str  # a separate `hyphae gateway` process in front of the same gRPC server
    grpc_target: str
    database: str
    pids: tuple[int, int]  # hyphae serve, hyphae gateway


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


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], health_url: str, log_path: Path) -> Iterator[int]:
    """A subprocess that is up once `health_url` answers 200; stopped with SIGTERM."""
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"{command[1:]} exited with {child.returncode}:\n{log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[1:]} did not answer {health_url} in time:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield child.pid
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextlib.contextmanager
def hyphae_serve(database_url: str | None, work_dir: Path) -> Iterator[Server]:
    """`hyphae serve` and a separate `hyphae gateway` in front of it, as subprocesses on free loopback ports."""
    http_port, grpc_port, gateway_port = free_port(), free_port(), free_port()
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
    http_url, gateway_url = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{gateway_port}"
    grpc_target = f"127.0.0.1:{grpc_port}"
    with contextlib.ExitStack() as stack:
        serve_pid = stack.enter_context(
            process(hyphae_command("serve"), env, f"{http_url}/health", work_dir / "serve.log")
        )
        gateway_env = {**env, "HYPHAE_HTTP_PORT": str(gateway_port)}
        gateway_pid = stack.enter_context(
            process(
                hyphae_command("gateway", "--grpc-target", grpc_target),
                gateway_env,
                f"{gateway_url}/health",
                work_dir / "gateway.log",
            )
        )
        database = "external Postgres" if database_url else "embedded Postgres"
        yield Server(http_url, gateway_url, grpc_target, database, (serve_pid, gateway_pid))


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


async def drive(
    call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float, server_pids: tuple[int, ...]
) -> Tally:
    """`concurrency` workers calling `call` back to back for `seconds`."""
    tally = Tally()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            try:
                ok = await call()
            except (aiohttp.ClientError, grpc.RpcError):
                ok = False
            if ok:
                tally.ok += 1
            else:
                tally.errors += 1

    started, client_cpu, server_cpu = time.perf_counter(), time.process_time(), process_cpu_seconds(*server_pids)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    tally.client_cpu = time.process_time() - client_cpu
    tally.server_cpu = process_cpu_seconds(*server_pids) - server_cpu
    return tally


REST = "REST"
REST_SPLIT = "REST split"
GRPC = "gRPC"


def side_label(name: str, args: argparse.Namespace) -> str:
    return {
        REST: "REST, gateway in `hyphae serve`",
        REST_SPLIT: "REST, gateway as its own process",
        GRPC: "gRPC direct",
    }[name]


async def measure(server: Server, args: argparse.Namespace) -> tuple[dict[str, Tally], list[tuple[str, Tally]]]:
    """Warm-up, then `args.rounds` alternations of every side; totals per side and every run."""
    concurrency: int = args.concurrency
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(
                    url,
                    connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency),
                    headers={"X-Org-Id": ORG},
                )
            )
            for url in (server.http_url, server.gateway_url)
        ]
        http, split = sessions
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.grpc_target))
        body = f'{{"name":"bench-{uuid.uuid4().hex[:8]}","definition":{DEFINITION}}}'
        async with http.post("/workflows", data=body, headers={"Content-Type": "application/json"}) as created:
            created.raise_for_status()
            workflow_id: str = (await created.json())["id"]
        path = f"/workflows/{workflow_id}"
        async with http.get(path) as first:
            expected = await first.read()
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        request = workflow_service_pb2.GetWorkflowRequest(id=workflow_id)
        metadata = (("x-org-id", ORG),)

        async def rest_call() -> bool:
            async with http.get(path) as response:
                return response.status == 200 and await response.read() == expected

        async def rest_split_call() -> bool:
            async with split.get(path) as response:
                return response.status == 200 and await response.read() == expected

        async def grpc_call() -> bool:
            response = await stub.GetWorkflow(request, metadata=metadata, timeout=30)
            return response.workflow.id == workflow_id

        sides: dict[str, Callable[[], Awaitable[bool]]] = {
            REST: rest_call,
            REST_SPLIT: rest_split_call,
            GRPC: grpc_call,
        }
        pids = {REST: server.pids[:1], REST_SPLIT: server.pids, GRPC: server.pids[:1]}
        width = max(len(side_label(name, args)) for name in sides)
        print(f"warm-up: {args.warmup:g}s per side, {concurrency} in flight", flush=True)
        for name, call in sides.items():
            tally = await drive(call, concurrency, args.warmup, pids[name])
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
                tally = await drive(call, concurrency, args.seconds, pids[name])
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
    lines = "\n".join(f"- **{line}**" for line in verdicts(totals, args))
    return f"""{SECTION_START}
## Gateway: GetWorkflow, REST vs direct gRPC

Measured {now} by `python3 scripts/uv.py run python bench/gateway.py --seconds {args.seconds:g}`.

- Machine: {cores} CPUs (nproc), {platform.system()} {platform.machine()}, Python {platform.python_version()}.
  **Client, server and Postgres share these {cores} cores**: the load generator's CPU use comes out of the server's
  budget (see the CPU columns).
- Server: one `hyphae serve` subprocess, {server.database}, X-Org-Id trusted, rate limit off. Two REST
  topologies, both calling the services over a loopback gRPC channel: the gateway inside `hyphae serve` (the
  default: one process, one event loop) and a separate `hyphae gateway --grpc-target` process in front of the same
  server (the gateway then runs on the other core). In one process the gateway's HTTP parsing, transcoding and
  loopback gRPC client share one event loop (one core) with the services, so each REST request costs the
  services' time plus the gateway's; as its own process the gateway overlaps with the services.
- Load: GetWorkflow of one stored workflow, {args.concurrency} requests in flight from one asyncio process.
  REST: aiohttp ClientSession, HTTP/1.1 keep-alive, {args.concurrency} connections. gRPC: one grpc.aio channel,
  generated stub. {args.warmup:g}s warm-up per side, then the sides alternate {args.rounds}x, {args.seconds:g}s each.
- CPU columns: CPU time / wall time of the load generator and of the server processes (`hyphae serve`, plus
  `hyphae gateway` for the split row; 100% = one core; Postgres not counted).

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
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="Postgres server for a scratch database; embedded Postgres if unreachable",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be positive")

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
