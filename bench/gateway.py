"""GetWorkflow throughput: REST gateway vs direct gRPC, against one `hyphae serve` this script starts itself.

    python3 -m uv run python bench/gateway.py [--seconds 10] [--concurrency 64] [--database-url URL]

Both sides read the same workflow with `--concurrency` requests in flight from one asyncio client process:
REST through httpx.AsyncClient (HTTP/1.1 keep-alive, a pool of `--concurrency` connections), gRPC through one
grpc.aio channel and the generated stub. After a warm-up the sides alternate (REST, gRPC, REST, gRPC), each for
`--seconds`; the report gives requests/s per side and the REST/gRPC ratio against the target (>= 0.8), and the
result replaces the "gateway" section of bench/RESULTS.md.

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
DEFINITION = ('{"actions":[{"type":"PbotApproval","properties":{"comment":"approve the invoice?",'
              '"zeta":1,"alpha":1152921504606846976,"mid":[1.5,42,[2,3]]}}]}')


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


@contextlib.contextmanager
def hyphae_serve(database_url: str | None, work_dir: Path) -> Iterator[Server]:
    """`hyphae serve` as a subprocess on free loopback ports; waits for /health, stops it with SIGTERM."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(HYPHAE_DATA_DIR=str(work_dir / "data"), HYPHAE_HOST="127.0.0.1", HYPHAE_HTTP_PORT=str(http_port),
               HYPHAE_GRPC_PORT=str(grpc_port), HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
               HYPHAE_TRUST_ORG_HEADER="1")
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
        yield Server(http_url, f"127.0.0.1:{grpc_port}", "external Postgres" if database_url else "embedded Postgres")
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

    def add(self, other: Tally) -> None:
        self.ok += other.ok
        self.errors += other.errors
        self.seconds += other.seconds

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def drive(call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float) -> Tally:
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

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    tally.seconds = time.perf_counter() - started
    return tally


async def measure(server: Server, seconds: float, warmup: float, concurrency: int,
                  rounds: int) -> tuple[Tally, Tally, list[tuple[str, Tally]]]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.http_url, headers={"X-Org-Id": ORG}, limits=limits,
                                 http1=True, http2=False, timeout=30) as http, \
            grpc.aio.insecure_channel(server.grpc_target) as channel:
        created = await http.post("/workflows", content=f'{{"name":"bench-{uuid.uuid4().hex[:8]}",'
                                  f'"definition":{DEFINITION}}}', headers={"Content-Type": "application/json"})
        created.raise_for_status()
        workflow_id: str = created.json()["id"]
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(channel)
        request = workflow_service_pb2.GetWorkflowRequest(id=workflow_id)
        metadata = (("x-org-id", ORG),)
        path = f"/workflows/{workflow_id}"

        async def rest_call() -> bool:
            response = await http.get(path)
            return response.status_code == 200 and bool(response.content)

        async def grpc_call() -> bool:
            response = await stub.GetWorkflow(request, metadata=metadata, timeout=30)
            return response.workflow.id == workflow_id

        sides = {"REST": rest_call, "gRPC": grpc_call}
        print(f"warm-up: {warmup:g}s per side, {concurrency} in flight", flush=True)
        for name, call in sides.items():
            tally = await drive(call, concurrency, warmup)
            print(f"  warm-up {name:<4} {tally.rate:9.0f} req/s", flush=True)
        totals = {name: Tally() for name in sides}
        runs: list[tuple[str, Tally]] = []
        steps = rounds * len(sides)
        step = 0
        for round_number in range(1, rounds + 1):
            for name, call in sides.items():
                step += 1
                print(f"[{step}/{steps}] {name:<4} round {round_number}: {seconds:g}s ...", end=" ", flush=True)
                tally = await drive(call, concurrency, seconds)
                print(f"{tally.rate:9.0f} req/s  ({tally.ok} ok, {tally.errors} errors)", flush=True)
                totals[name].add(tally)
                runs.append((f"{name} round {round_number}", tally))
        return totals["REST"], totals["gRPC"], runs


# --------------------------------------------------------------------------- report


def table(rest: Tally, grpc_tally: Tally, runs: list[tuple[str, Tally]]) -> str:
    lines = ["| run | requests | errors | seconds | requests/s |", "|---|---:|---:|---:|---:|"]
    for name, tally in runs:
        lines.append(f"| {name} | {tally.ok} | {tally.errors} | {tally.seconds:.1f} | {tally.rate:.0f} |")
    for name, tally in (("**REST total**", rest), ("**gRPC total**", grpc_tally)):
        lines.append(f"| {name} | {tally.ok} | {tally.errors} | {tally.seconds:.1f} | **{tally.rate:.0f}** |")
    return "\n".join(lines)


def section(args: argparse.Namespace, server: Server, rest: Tally, grpc_tally: Tally,
            runs: list[tuple[str, Tally]]) -> str:
    ratio = rest.rate / grpc_tally.rate if grpc_tally.rate else 0.0
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""{SECTION_START}
## Gateway: GetWorkflow, REST vs direct gRPC

Measured {now} by `python3 -m uv run python bench/gateway.py --seconds {args.seconds:g}`.

- Machine: {os.cpu_count()} CPUs (nproc), {platform.system()} {platform.machine()}, \
Python {platform.python_version()}. **Client and server share these {os.cpu_count()} cores** (and so does Postgres):
  the load generator's own CPU use (httpx is heavier per request than grpc.aio) comes out of the server's budget.
- Server: one `hyphae serve` subprocess, {server.database}, X-Org-Id trusted, rate limit off; the REST gateway
  calls the services over its loopback gRPC channel in the same process.
- Load: GetWorkflow of one stored workflow, {args.concurrency} requests in flight. REST: httpx.AsyncClient,
  HTTP/1.1 keep-alive, pool of {args.concurrency} connections. gRPC: one grpc.aio channel, generated stub.
  {args.warmup:g}s warm-up per side, then REST/gRPC alternated {args.rounds}x, {args.seconds:g}s each.

{table(rest, grpc_tally, runs)}

**REST / gRPC = {ratio:.2f}** ({rest.rate:.0f} vs {grpc_tally.rate:.0f} requests/s); target REST >= \
{TARGET_RATIO}x direct gRPC: {verdict} it.
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
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="Postgres server for a scratch database; embedded Postgres if unreachable")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hyphae-bench-") as tmp, contextlib.ExitStack() as stack:
        database_url: str | None = None
        if args.database_url and postgres_reachable(args.database_url):
            database_url = stack.enter_context(scratch_database(args.database_url))
        print("starting hyphae serve ("
              + ("scratch database on " + args.database_url if database_url else "embedded Postgres") + ") ...",
              flush=True)
        server = stack.enter_context(hyphae_serve(database_url, Path(tmp)))
        print(f"server up: REST {server.http_url}  gRPC {server.grpc_target}", flush=True)
        rest, grpc_tally, runs = asyncio.run(measure(server, args.seconds, args.warmup, args.concurrency,
                                                     args.rounds))

    ratio = rest.rate / grpc_tally.rate if grpc_tally.rate else 0.0
    print()
    print(table(rest, grpc_tally, runs))
    print(f"\nREST / gRPC = {ratio:.2f}  (target >= {TARGET_RATIO})")
    if not args.no_write:
        write_results(section(args, server, rest, grpc_tally, runs))
        print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
