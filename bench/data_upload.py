"""Document upload throughput, measured by bench/data.py in its one run: REST multipart upload vs a plain file write.

Against the `hyphae serve` that bench/data.py started (local blob store under its data dir), each round writes a
fresh file of `mib` MiB (random bytes, so dedup never short-cuts an upload), then alternately
- plain: reads it and writes it to a new file in the same data dir in 1 MiB pieces, then fsync (what the blob
  store does at the very least), and
- REST: uploads it with httpx as multipart/form-data to POST /documents (gateway -> gRPC client stream -> blob store:
  hashed, written, fsync'ed, renamed, rows committed) and waits for the 201.
MiB/s = MiB / seconds. The warm-up upload (1 MiB, so it is indexed in the background) is waited for until its
indexing is done, so that work does not overlap a measured round; the measured files are larger than the indexing
limit and never indexed. The server's peak resident memory (VmHWM) is reported next to the file size: it stays far
below the file size, because neither the gateway nor the server holds a whole file.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

PIECE = 1024 * 1024


@dataclass
class UploadResult:
    plain: float  # MiB/s, all plain rounds
    rest: float  # MiB/s, all REST rounds
    runs: list[tuple[str, float, float]]  # (run, MiB, seconds)
    rss_start_kib: int
    peak_kib: int


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def make_file(path: Path, mib: int) -> None:
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(PIECE))


def fresh_file(work: Path, mib: int) -> Path:
    path = work / f"upload-{uuid.uuid4().hex[:8]}.txt"
    make_file(path, mib)
    return path


def plain_write(source: Path, target: Path) -> float:
    os.sync()  # start clean: an fsync on ext4 also flushes other files' dirty pages (the fresh source file)
    started = time.perf_counter()
    with source.open("rb") as src, target.open("wb") as out:
        while piece := src.read(PIECE):
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    return time.perf_counter() - started


def rest_upload(client: httpx.Client, source: Path) -> tuple[float, str]:
    """(seconds, document id)."""
    os.sync()  # as for the plain write
    started = time.perf_counter()
    with source.open("rb") as handle:
        answer = client.post("/documents", files={"file": (source.name, handle, "text/plain")})
    elapsed = time.perf_counter() - started
    if answer.status_code != 201 or answer.json()["deduplicated"]:
        raise RuntimeError(f"upload failed: {answer.status_code} {answer.text[:300]}")
    return elapsed, answer.json()["document"]["id"]


def wait_indexed(client: httpx.Client, document_id: str, timeout: float = 300) -> None:
    """Until the document's background indexing is over (whatever its outcome)."""
    deadline = time.monotonic() + timeout
    while client.get(f"/documents/{document_id}").json()["document"]["index_status"] == "pending":
        if time.monotonic() > deadline:
            raise RuntimeError(f"document {document_id} was still being indexed after {timeout:g} s")
        time.sleep(0.2)


def measure(http_url: str, work_dir: Path, server_pid: int, mib: int, rounds: int) -> UploadResult:
    """Upload vs plain write against the server at `http_url` whose data dir is `work_dir / "data"`."""
    runs: list[tuple[str, float, float]] = []
    data_dir = work_dir / "data"
    rss_start = memory_kib(server_pid, "VmRSS")
    plain_copies: list[Path] = []
    with httpx.Client(base_url=http_url, headers={"X-Org-Id": "bench-upload"}, timeout=300) as client:
        warm = fresh_file(work_dir, 1)
        _, warm_id = rest_upload(client, warm)  # warm-up (connections, first rows)
        warm.unlink()
        wait_indexed(client, warm_id)
        for round_number in range(1, rounds + 1):
            source = fresh_file(work_dir, mib)
            # Kept until the end, as the uploaded blobs are: both sides always write to newly allocated blocks
            # (rewriting blocks just freed is several times faster on this virtual disk than fresh ones).
            plain_copy = data_dir / f"plain-write-{round_number}"
            plain_copies.append(plain_copy)
            runs.append((f"round {round_number}: plain write", mib, plain_write(source, plain_copy)))
            runs.append((f"round {round_number}: REST upload", mib, rest_upload(client, source)[0]))
            source.unlink()
            print(f"upload round {round_number}: " + ", ".join(f"{r[0]} {r[2]:.2f}s" for r in runs[-2:]))
    for plain_copy in plain_copies:
        plain_copy.unlink()
    plain = sum(r[1] for r in runs if "plain" in r[0]) / sum(r[2] for r in runs if "plain" in r[0])
    rest = sum(r[1] for r in runs if "REST" in r[0]) / sum(r[2] for r in runs if "REST" in r[0])
    return UploadResult(plain, rest, runs, rss_start, memory_kib(server_pid, "VmHWM"))
