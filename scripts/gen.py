"""Regenerate everything under generated/ from proto/.

    uv run python scripts/gen.py          # regenerate
    uv run python scripts/gen.py --check  # regenerate, then fail if generated/ differs from git

Steps: stage the googleapis protos we import from the googleapis-common-protos wheel into third_party/ (ignored by
git, also read by `buf lint`), run protoc (grpcio-tools) for Python messages, gRPC stubs, mypy-protobuf .pyi stubs
and a descriptor set with source info, then write the OpenAPI 3.1 document from that descriptor set.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
THIRD_PARTY = ROOT / "third_party" / "googleapis"
OUT = ROOT / "generated"
PY_OUT = OUT / "python"
DESCRIPTORS = OUT / "descriptors.binpb"
GOOGLEAPIS_FILES = ["google/api/annotations.proto", "google/api/http.proto", "google/api/field_behavior.proto"]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: run `uv sync` first")
    return Path(next(iter(spec.submodule_search_locations)))


def stage_googleapis() -> None:
    wheel_root = _package_dir("google.api").parent.parent
    for rel in GOOGLEAPIS_FILES:
        target = THIRD_PARTY / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel_root / rel, target)


def run_protoc() -> None:
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    if PY_OUT.exists():
        shutil.rmtree(PY_OUT)
    PY_OUT.mkdir(parents=True)
    well_known = _package_dir("grpc_tools") / "_proto"
    bin_dir = Path(sys.executable).parent
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO}",
        f"-I{THIRD_PARTY}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={PY_OUT}",
        f"--grpc_python_out={PY_OUT}",
        f"--mypy_out=quiet:{PY_OUT}",
        f"--mypy_grpc_out=quiet:{PY_OUT}",
        f"--descriptor_set_out={DESCRIPTORS}",
        "--include_source_info",
        "--include_imports",
        *protos,
    ]
    subprocess.run(args, check=True, cwd=ROOT)
    for directory in [PY_OUT / "hyphae", *(d for d in (PY_OUT / "hyphae").rglob("*") if d.is_dir())]:
        (directory / "__init__.py").write_text("")
    (PY_OUT / "hyphae" / "py.typed").write_text("")


def write_openapi() -> None:
    sys.path[:0] = [str(PY_OUT), str(ROOT)]
    from gateway.openapi import write_document

    write_document(DESCRIPTORS, OUT / "openapi.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when generated/ differs from what git has")
    args = parser.parse_args()
    stage_googleapis()
    run_protoc()
    write_openapi()
    print(f"generated/ written from {len(list(PROTO.rglob('*.proto')))} proto files")
    if args.check:
        diff = subprocess.run(
            ["git", "status", "--porcelain", "--", "generated"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        if diff:
            print("generated/ is stale; run `uv run python scripts/gen.py` and commit:\n" + diff, file=sys.stderr)
            raise SystemExit(1)


if __name__ == "__main__":
    main()
