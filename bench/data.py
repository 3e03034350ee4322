"""Data benchmarks, one report: custom-table bulk insert through the API vs raw COPY into a plain table.

    python3 scripts/uv.py run python bench/data.py [--rows 100000] [--batch 10000] [--rounds 3] [--database-url URL]

Bulk insert: `--rows` rows of five typed fields (text, numeric, integer, timestamptz, boolean) go into a custom table
through gRPC `TableService.BulkInsertRows`, `--batch` rows per call, against one `hyphae serve` subprocess; the
baseline is psycopg's `COPY ... FROM STDIN` of the same rows into a plain table (no indexes, no audit) on the same
Postgres. The sides alternate `--rounds` times; rows/s per side are total rows over total seconds, and the ratio
API/COPY is reported against the target (>= 0.5). What the API does beyond COPY: it parses and checks every value
by its declared type, keeps a btree index per field plus the primary key, writes one audit row per inserted row in
the same transaction, and answers with the stored rows.

Other data measures join the same report: a module `bench/data_upload.py` (document upload MB/s vs a plain file
write) that defines `measure_upload(context: DataContext) -> Measure` is run after the bulk insert when present
(see `MEASURES`). The report replaces this script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import grpc
import psycopg
from hyphae.api.v1 import json_pb2
from hyphae.tables.v1 import table_pb2, table_service_pb2, table_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- bench/data.py: start -->"
SECTION_END = "<!-- bench/data.py: end -->"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ORG = "bench-data-org"
BULK_TARGET = 0.5
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _load(name: str) -> ModuleType | None:
    """A sibling script as a module (bench/ is not a package, and bench/gateway.py's name clashes with gateway/)."""
    path = Path(__file__).with_name(f"{name}.py")
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _require(name: str) -> ModuleType:
    module = _load(name)
    if module is None:
        raise SystemExit(f"bench/{name}.py is missing")
    return module


bench_gateway = _require("gateway")  # the server helpers: scratch database, subprocesses, CPU time


@dataclass
class Measure:
    """One line of the report: the API's rate against its baseline's, measured in the same run."""

    name: str
    unit: str  # "rows/s", "MB/s"
    api: float
    baseline: float
    baseline_name: str
    target: float
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.api / self.baseline if self.baseline else 0.0


@dataclass
class DataContext:
    """What a data measure gets: the running server and the database it uses."""

    grpc_target: str
    database_url: str
    server_pid: int
    args: argparse.Namespace
    work_dir: Path


# --------------------------------------------------------------------------- bulk insert


def rows(count: int) -> list[tuple[str, str, int, dt.datetime, bool]]:
    return [
        (f"INV-{i:07d}", f"{i // 100}.{i % 100:02d}", i, START + dt.timedelta(seconds=i), i % 2 == 0)
        for i in range(count)
    ]


def as_json(row: tuple[str, str, int, dt.datetime, bool]) -> str:
    invoice_id, amount, attempts, processed_at, matched = row
    return (
        f'{{"invoice_id":{json.dumps(invoice_id)},"amount":{amount},"attempts":{attempts},'
        f'"processed_at":"{processed_at.isoformat()}","matched":{"true" if matched else "false"}}}'
    )


def api_insert(stub: table_service_pb2_grpc.TableServiceStub, table: str, batches: list[list[str]]) -> float:
    metadata = (("x-org-id", ORG),)
    started = time.perf_counter()
    for batch in batches:
        request = table_service_pb2.BulkInsertRowsRequest(name=table, rows=[json_pb2.Json(raw=r) for r in batch])
        answer = stub.BulkInsertRows(request, metadata=metadata, timeout=600)
        assert answer.inserted == len(batch)
    return time.perf_counter() - started


def copy_insert(database_url: str, table: str, data: list[tuple[str, str, int, dt.datetime, bool]]) -> float:
    with psycopg.connect(database_url) as connection:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            columns = "invoice_id, amount, attempts, processed_at, matched"
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:  # table: a name made below
                for row in data:
                    copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


def measure_bulk_insert(context: DataContext) -> Measure:
    args = context.args
    data = rows(args.rows)
    texts = [as_json(row) for row in data]
    batches = [texts[i : i + args.batch] for i in range(0, len(texts), args.batch)]
    fields = [
        table_pb2.TableField(name="invoice_id", type="text", required=True),
        table_pb2.TableField(name="amount", type="numeric"),
        table_pb2.TableField(name="attempts", type="integer"),
        table_pb2.TableField(name="processed_at", type="timestamptz"),
        table_pb2.TableField(name="matched", type="boolean"),
    ]
    api_seconds = copy_seconds = indexed_seconds = 0.0
    server_cpu = 0.0
    with grpc.insecure_channel(
        context.grpc_target,
        options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
    ) as channel:
        stub = table_service_pb2_grpc.TableServiceStub(channel)
        for round_number in range(args.rounds):
            name = f"bench_{round_number}_{uuid.uuid4().hex[:6]}"
            stub.CreateTable(
                table_service_pb2.CreateTableRequest(name=name, fields=fields), metadata=(("x-org-id", ORG),)
            )
            cpu_before = bench_gateway.process_cpu_seconds(context.server_pid)
            api_seconds += api_insert(stub, name, batches)
            server_cpu += bench_gateway.process_cpu_seconds(context.server_pid) - cpu_before
            plain = f"plain_{round_number}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(context.database_url, autocommit=True) as connection:
                connection.execute(
                    f"CREATE TABLE {plain} (id bigint GENERATED ALWAYS AS IDENTITY, invoice_id text, "
                    "amount numeric, attempts bigint, processed_at timestamptz, matched boolean)"
                )
            copy_seconds += copy_insert(context.database_url, plain, data)
            # the same rows by COPY into a table with the custom table's primary key and field indexes (no audit)
            indexed = f"indexed_{round_number}_{uuid.uuid4().hex[:6]}"
            with psycopg.connect(context.database_url, autocommit=True) as connection:
                connection.execute(
                    f"CREATE TABLE {indexed} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, invoice_id text, "
                    "amount numeric, attempts bigint, processed_at timestamptz, matched boolean)"
                )
                for column in ("invoice_id", "amount", "attempts", "processed_at", "matched"):
                    connection.execute(f"CREATE INDEX ON {indexed} ({column})")
            indexed_seconds += copy_insert(context.database_url, indexed, data)
    total = args.rows * args.rounds
    return Measure(
        name="Custom-table bulk insert (gRPC BulkInsertRows) vs COPY into a plain table",
        unit="rows/s",
        api=total / api_seconds,
        baseline=total / copy_seconds,
        baseline_name="COPY FROM STDIN",
        target=BULK_TARGET,
        notes=[
            f"{args.rows:,} rows x {args.rounds} rounds, {args.batch:,} rows per BulkInsertRows call",
            f"`hyphae serve` CPU during the API side: {100 * server_cpu / api_seconds:.0f}% of one core",
            f"COPY into a table with the same primary key and five field indexes (no audit): "
            f"{total / indexed_seconds:,.0f} rows/s, so the indexes alone bring COPY to "
            f"{copy_seconds / indexed_seconds:.2f}x of the plain table, and the API reaches "
            f"{indexed_seconds / api_seconds:.2f}x of that",
        ],
    )


# Each measure runs against the same server; bench/data_upload.py adds its own when present.
MEASURES: list[Callable[[DataContext], Measure]] = [measure_bulk_insert]
_upload = _load("data_upload")
if _upload is not None and hasattr(_upload, "measure_upload"):
    MEASURES.append(_upload.measure_upload)


# --------------------------------------------------------------------------- server and report


@contextlib.contextmanager
def serve(database_url: str, work_dir: Path) -> Iterator[tuple[str, int]]:
    http_port, grpc_port = bench_gateway.free_port(), bench_gateway.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(
        HYPHAE_DATA_DIR=str(work_dir / "data"),
        HYPHAE_HOST="127.0.0.1",
        HYPHAE_HTTP_PORT=str(http_port),
        HYPHAE_GRPC_PORT=str(grpc_port),
        HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
        HYPHAE_TRUST_ORG_HEADER="1",
        HYPHAE_WORKERS="0",
        HYPHAE_DATABASE_URL=database_url,
    )
    command = bench_gateway.hyphae_command("serve")
    with bench_gateway.process(command, env, f"http://127.0.0.1:{http_port}/health", work_dir / "serve.log") as pid:
        yield f"127.0.0.1:{grpc_port}", pid


def report(measures: list[Measure], args: argparse.Namespace) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        SECTION_START,
        "## Data: custom-table bulk insert (and uploads)",
        "",
        f"Measured {now} by `python3 scripts/uv.py run python bench/data.py --rows {args.rows} "
        f"--batch {args.batch} --rounds {args.rounds}`.",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}. Client, `hyphae serve` and Postgres share these cores, **and other engineers'"
        " test suites were running on the machine at the same time**: absolute rates are low and noisy; the ratio"
        " is measured in one run, the sides alternating.",
        "- The API side checks and coerces every value by its declared type, maintains a btree index per field and"
        " the primary key, writes an audit row per inserted row in the same transaction, and answers with the"
        " stored rows; COPY writes into a plain table without indexes.",
        "",
        "| measure | API | baseline | ratio | target |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in measures:
        verdict = "met" if m.ratio >= m.target else "**not met**"
        lines.append(
            f"| {m.name} | {m.api:,.0f} {m.unit} | {m.baseline:,.0f} {m.unit} ({m.baseline_name}) | "
            f"**{m.ratio:.2f}x** | >= {m.target}x ({verdict}) |"
        )
    lines.append("")
    for m in measures:
        lines += [f"- {m.name}: " + "; ".join(m.notes)] if m.notes else []
    lines += [SECTION_END, ""]
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by the scripts in bench/.\n"
    if SECTION_START in current and SECTION_END in current:
        before, rest = current.split(SECTION_START, 1)
        after = rest.split(SECTION_END, 1)[1].lstrip("\n")
        updated = before + text + ("\n" + after if after else "")
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--no-write", action="store_true", help="print the report without updating RESULTS.md")
    args = parser.parse_args()
    if not bench_gateway.postgres_reachable(args.database_url):
        raise SystemExit(f"no Postgres at {args.database_url.split('@')[-1]}; pass --database-url")
    with (
        tempfile.TemporaryDirectory() as tmp,
        bench_gateway.scratch_database(args.database_url) as database_url,
        serve(database_url, Path(tmp)) as (grpc_target, pid),
    ):
        context = DataContext(grpc_target, database_url, pid, args, Path(tmp))
        measures = []
        for measure in MEASURES:
            result = measure(context)
            print(f"{result.name}: {result.api:,.0f} vs {result.baseline:,.0f} {result.unit} = {result.ratio:.2f}x")
            measures.append(result)
    text = report(measures, args)
    print(text)
    if not args.no_write:
        write_results(text)


if __name__ == "__main__":
    main()
