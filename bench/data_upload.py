"""Document upload throughput: REST multipart upload vs a plain file write of the same bytes, in one run.

    python3 scripts/uv.py run python bench/data_upload.py [--mib 48] [--rounds 3] [--database-url URL]

One `hyphae serve` subprocess (scratch database, local blob store under a temporary data dir). Each round writes a
fresh file of `--mib` MiB (random bytes, so dedup never short-cuts an upload), then alternately
- plain: reads it and writes it to a new file in the same data dir in 1 MiB pieces, then fsync (what the blob
  store does at the very least), and
- REST: uploads it with httpx as multipart/form-data to POST /documents (gateway -> gRPC client stream -> blob store:
  hashed, written, fsync'ed, renamed, rows committed) and waits for the 201.
MB/s = MiB / seconds. The server's peak resident memory (VmHWM) is reported next to the file size: it stays far
below the file size, because neither the gateway nor the server holds a whole file. The report replaces this
script's section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION_START = "<!-- bench/data_upload.py: start -->"
SECTION_END = "<!-- bench/data_upload.py: end -->"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_RATIO = 0.5
PIECE = 1024 * 1024


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    name = f"hyphae_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')  # name generated above
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
    return [found, *args] if found else [sys.executable, "-c", "from cli.main import main; main()", *args]


@contextlib.contextmanager
def hyphae_serve(database_url: str, work_dir: Path) -> Iterator[tuple[str, int]]:
    """(REST URL, pid) of a `hyphae serve` subprocess; stopped with SIGTERM."""
    http_port, grpc_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYPHAE_")}
    env.update(
        HYPHAE_DATABASE_URL=database_url,
        HYPHAE_DATA_DIR=str(work_dir / "data"),
        HYPHAE_HOST="127.0.0.1",
        HYPHAE_HTTP_PORT=str(http_port),
        HYPHAE_GRPC_PORT=str(grpc_port),
        HYPHAE_RATE_LIMIT_PER_MINUTE="100000000",
        HYPHAE_TRUST_ORG_HEADER="1",
    )
    url = f"http://127.0.0.1:{http_port}"
    log_path = work_dir / "serve.log"
    with log_path.open("w") as log:
        child = subprocess.Popen(hyphae_command("serve"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hyphae serve did not start:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        yield url, child.pid
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def make_file(path: Path, mib: int) -> None:
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(PIECE))


def plain_write(source: Path, target: Path) -> float:
    started = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as out:
        while piece := src.read(PIECE):
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def rest_upload(client: httpx.Client, source: Path) -> float:
    started = time.perf_counter()
    with source.open("rb") as handle:
        answer = client.post("/documents", files={"file": (source.name, handle, "text/plain")})
    elapsed = time.perf_counter() - started
    if answer.status_code != 201 or answer.json()["deduplicated"]:
        raise RuntimeError(f"upload failed: {answer.status_code} {answer.text[:300]}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=48, help="file size in MiB (at most 50)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.environ.get("HYPHAE_TEST_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--no-write", action="store_true", help="print the section, do not update RESULTS.md")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="hyphae-bench-upload-") as tmp:
        work = Path(tmp)
        with scratch_database(args.database_url) as database, hyphae_serve(database, work) as (url, pid):
            rss_start = memory_kib(pid, "VmRSS")
            data_dir = work / "data"
            with httpx.Client(base_url=url, headers={"X-Org-Id": "bench-upload"}, timeout=300) as client:
                rest_upload(client, _fresh(work, 1))  # warm-up (connections, first rows)
                for round_number in range(1, args.rounds + 1):
                    source = _fresh(work, args.mib)
                    rows.append((f"round {round_number}: plain write", args.mib, plain_write(source, data_dir / "p")))
                    rows.append((f"round {round_number}: REST upload", args.mib, rest_upload(client, source)))
                    source.unlink()
            peak_kib = memory_kib(pid, "VmHWM")
    plain = sum(r[1] for r in rows if "plain" in r[0]) / sum(r[2] for r in rows if "plain" in r[0])
    rest = sum(r[1] for r in rows if "REST" in r[0]) / sum(r[2] for r in rows if "REST" in r[0])
    ratio = rest / plain
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    lines = [
        SECTION_START,
        "## Documents: REST upload vs a plain file write",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by "
        f"`python3 scripts/uv.py run python bench/data_upload.py --mib {args.mib} --rounds {args.rounds}`.",
        "",
        f"- Machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python "
        f"{platform.python_version()}. **Busy**: five other engineers' tests and benchmarks share these cores and "
        "this disk, so absolute numbers move between runs; both sides run alternately in the same minute.",
        "- plain: read the file, write it in 1 MiB pieces to the data dir, fsync. REST: multipart POST /documents "
        "(httpx) -> gateway (streaming multipart parser) -> gRPC client stream -> blob store (SHA-256, temp file, "
        "fsync, rename) -> rows committed -> 201. Random bytes each round (no dedup).",
        f"- Server memory: {rss_start // 1024} MiB resident at start, peak {peak_kib // 1024} MiB over the run, "
        f"for {args.mib} MiB files: no file is ever held whole.",
        "",
        "| run | MiB | seconds | MiB/s |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {mib:g} | {seconds:.2f} | {mib / seconds:.0f} |" for name, mib, seconds in rows),
        f"| **total: plain write** | | | **{plain:.0f}** |",
        f"| **total: REST upload** | | | **{rest:.0f}** |",
        "",
        f"- **REST upload / plain write = {ratio:.2f} ({rest:.0f} vs {plain:.0f} MiB/s): {verdict} the target "
        f"(>= {TARGET_RATIO})**",
        SECTION_END,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        current = RESULTS.read_text()
        if SECTION_START in current and SECTION_END in current:
            before, rest_text = current.split(SECTION_START, 1)
            after = rest_text.split(SECTION_END, 1)[1].lstrip("\n")
            current = before + text + ("\n" + after if after else "")
        else:
            current = current.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(current)


def _fresh(work: Path, mib: int) -> Path:
    path = work / f"upload-{uuid.uuid4().hex[:8]}.txt"
    make_file(path, mib)
    return path


if __name__ == "__main__":
    main()
