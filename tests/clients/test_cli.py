"""`hyphae runs | documents | tables` as a user runs them: subprocesses against a real `hyphae serve` (its own
database on the test Postgres, org header trusted). Their stdout is a pipe, so they print plain lines, no bars."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.cli.test_serve import HYPHAE, free_port, shared_database_environment, start, stop
from tests.conftest import create_database, drop_database


@dataclass(frozen=True)
class Served:
    grpc_target: str
    http_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def served(postgres_server_url: str, template_database: str) -> Iterator[Served]:
    name, url = create_database(postgres_server_url, template_database)
    data_dir = Path(tempfile.mkdtemp(prefix="hyphae-cli-", dir="/tmp"))
    data_dir.chmod(0o755)
    http_port, grpc_port = free_port(), free_port()
    env = shared_database_environment(url, data_dir, http_port, grpc_port)
    process = start(env, http_port)
    try:
        yield Served(f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", env)
    finally:
        stop(process)
        shutil.rmtree(data_dir, ignore_errors=True)
        drop_database(postgres_server_url, name)


@pytest.fixture
def org() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def hyphae(served: Served, org: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One client command, connection by flags (the environment has no HYPHAE_TARGET / HYPHAE_ORG_ID)."""
    command = [*HYPHAE, *args, "--target", served.grpc_target, "--org", org]
    done = subprocess.run(command, env=served.env, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_upload_then_download_gives_the_same_bytes(served: Served, org: str, tmp_path: Path) -> None:
    source = tmp_path / "notes.txt"
    source.write_bytes(b"".join(f"line {i}: some text to carry\n".encode() for i in range(120_000)))  # ~3.5 MiB
    assert source.stat().st_size > 3 * 1024 * 1024  # several 1 MiB chunks

    uploaded = hyphae(served, org, "documents", "upload", str(source), "--name", "Notes", "--tags", '["cli"]')
    assert uploaded.returncode == 0, uploaded.stderr
    found = re.search(rf"^{re.escape(str(source))}: (doc_[0-9a-f]+)$", uploaded.stdout, re.MULTILINE)
    assert found, uploaded.stdout
    document_id = found.group(1)

    again = hyphae(served, org, "documents", "upload", str(source))
    assert again.returncode == 0, again.stderr
    assert f"{source}: {document_id} deduplicated" in again.stdout

    target = tmp_path / "out" / "copy.txt"
    target.parent.mkdir()
    downloaded = hyphae(served, org, "documents", "download", document_id, "-o", str(target))
    assert downloaded.returncode == 0, downloaded.stderr
    assert target.read_bytes() == source.read_bytes()
    assert not list(target.parent.glob("*.part"))
    assert f"{target}: {source.stat().st_size} bytes (text/plain" in downloaded.stdout

    missing = hyphae(served, org, "documents", "download", "doc_" + "0" * 32, "-o", str(tmp_path / "none.txt"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("hyphae: ") and missing.stderr.count("\n") == 1
    assert not (tmp_path / "none.txt").exists()


def write_csv(path: Path, rows: int, bad_row: int | None = None) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sku", "qty", "price", "active"])
        for i in range(rows):
            qty = "many" if i == bad_row else str(i)
            writer.writerow([f"SKU-{i}", qty, f"{i}.25", "yes" if i % 2 else "no"])


def test_csv_import_in_batches_and_the_line_of_a_refused_value(served: Served, org: str, tmp_path: Path) -> None:
    created = hyphae(
        served, org, "tables", "create", "items", "sku:text!", "qty:integer", "price:numeric", "active:boolean"
    )
    assert created.returncode == 0, created.stderr
    good = tmp_path / "items.csv"
    write_csv(good, 3000)

    imported = hyphae(served, org, "tables", "import", "items", str(good), "--batch", "1000")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == [
        "items: 1000/3000 rows",
        "items: 2000/3000 rows",
        "items: 3000/3000 rows",
        "imported 3000 rows into items",
    ]
    listed = hyphae(served, org, "tables", "rows", "items", "--limit", "150")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 150 and listed.stderr.strip() == "150 of 3000 rows"
    assert {k: rows[1][k] for k in ("sku", "qty", "price", "active")} == {
        "sku": "SKU-1",
        "qty": 1,
        "price": 1.25,
        "active": True,
    }

    assert hyphae(served, org, "tables", "create", "partial", "sku:text", "qty:integer").returncode == 0
    bad = tmp_path / "bad.csv"
    with bad.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sku", "qty"])
        for i in range(2500):
            writer.writerow([f"multi\nline {i}" if i == 10 else f"S{i}", "many" if i == 1700 else str(i)])
    # row 1700 is the record after the header and 1700 others, one of which spans two lines: line 1 + 1 + 1700 + 1
    refused = hyphae(served, org, "tables", "import", "partial", str(bad), "--batch", "1000")
    assert refused.returncode == 1
    assert refused.stderr.startswith(f"hyphae: {bad} line 1703, field 'qty': must be a whole number"), refused.stderr
    assert "1000 rows were imported" in refused.stderr and refused.stderr.count("\n") == 1
    counted = hyphae(served, org, "tables", "rows", "partial", "--limit", "1")
    assert counted.stderr.strip() == "1 of 1000 rows"

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("sku,colour\nA,red\n")
    wrong = hyphae(served, org, "tables", "import", "partial", str(unknown))
    assert wrong.returncode == 1
    assert wrong.stderr == f"hyphae: {unknown} line 1: 'colour' is not a field of table partial (fields: sku, qty)\n"


def test_a_run_paused_for_approval_exits_2_with_the_answer_then_completes(served: Served, org: str) -> None:
    definition = {
        "actions": [
            {"type": "PbotApproval", "properties": {"comment": "Ship the order?"}},
        ]
    }
    with httpx.Client(base_url=served.http_url, headers={"X-Org-Id": org}, timeout=30) as api:
        created = api.post("/workflows", json={"name": "ship", "definition": definition})
        assert created.status_code == 201, created.text
        workflow_id = created.json()["id"]

        started = hyphae(served, org, "runs", "start", workflow_id, "--input", '{"order": "A-17"}', "--watch")
        assert started.returncode == 2, started.stdout + started.stderr
        run_id = re.search(r"^run: (\S+)$", started.stdout, re.MULTILINE)
        assert run_id, started.stdout
        run = run_id.group(1)
        lines = started.stdout.splitlines()
        assert any(line.endswith("run started (workflow " + workflow_id + ")") for line in lines), lines
        assert "status: paused (step 0 waits for an approval)" in lines
        assert f"answer: POST /approvals/{run}/0 with " in started.stdout
        assert f"hyphae runs approve {run} 0" in started.stdout

        again = hyphae(served, org, "runs", "watch", run)  # still paused: the same answer
        assert again.returncode == 2 and f"POST /approvals/{run}/0" in again.stdout

        answered = api.post(f"/approvals/{run}/0", json={"approved": True, "comment": "go"})
        assert answered.status_code == 200, answered.text

    done = hyphae(served, org, "runs", "watch", run)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.endswith("step 0 approved: go") for line in lines), lines
    assert lines[-1] == "status: completed" or "status: completed" in lines


def test_errors_are_one_line(served: Served, org: str, tmp_path: Path) -> None:
    port = free_port()
    unreachable = subprocess.run(
        [*HYPHAE, "runs", "watch", "run_x", "--target", f"127.0.0.1:{port}"],
        env=served.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr == (
        f"hyphae: cannot reach a Hyphae server at 127.0.0.1:{port} (gRPC): start one with `hyphae serve`, "
        "or point --target / HYPHAE_TARGET at it\n"
    )
    unknown = hyphae(served, org, "runs", "start", "wf_missing", "--input", "[1]")
    assert (unknown.returncode, unknown.stderr) == (1, "hyphae: --input: the run's input must be a JSON object\n")
    missing = hyphae(served, org, "tables", "import", "nope", str(tmp_path / "absent.csv"))
    assert missing.returncode == 1 and missing.stderr.startswith("hyphae: ") and "absent.csv" in missing.stderr
