"""Run uv, installing it first if this machine has none: `python3 scripts/uv.py <uv arguments>`.

Looks for `uv` on PATH, then for the `uv` Python package; otherwise creates a private virtual environment in
.hyphae/tools and installs uv from PyPI there (this works even where the system pip refuses to install packages).
Where Python has no `venv`/`ensurepip` (e.g. Debian without python3-venv), falls back to `pip install --user uv`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".hyphae" / "tools"
WINDOWS = os.name == "nt"


def _installed_module() -> list[str] | None:
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]
    except ImportError:
        return None
    return [str(find_uv_bin())]


def _private_venv() -> list[str] | None:
    binary = TOOLS / ("Scripts/uv.exe" if WINDOWS else "bin/uv")
    if binary.exists():
        return [str(binary)]
    print("uv not found: installing it into .hyphae/tools (one time)...", file=sys.stderr, flush=True)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  cannot create a virtual environment here ({exc}); trying pip --user", file=sys.stderr)
        shutil.rmtree(TOOLS, ignore_errors=True)
        return None
    python = TOOLS / ("Scripts/python.exe" if WINDOWS else "bin/python")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "uv"], check=True)
    return [str(binary)]


def _user_pip() -> list[str]:
    base = [sys.executable, "-m", "pip", "install", "--user", "--quiet", "uv"]
    if subprocess.run(base).returncode != 0 and subprocess.run([*base, "--break-system-packages"]).returncode != 0:
        raise SystemExit(
            "could not install uv: install it yourself (see https://docs.astral.sh/uv/) or install python3-venv"
        )
    return [sys.executable, "-m", "uv"]


def find_uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    return _installed_module() or _private_venv() or _user_pip()


def main() -> None:
    command = [*find_uv(), *sys.argv[1:]]
    os.chdir(ROOT)
    if WINDOWS:
        raise SystemExit(subprocess.call(command))
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
