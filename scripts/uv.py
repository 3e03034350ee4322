"""Run uv, installing it first if this machine has none: `python3 scripts/uv.py <uv arguments>`.

Looks for `uv` on PATH, then for the `uv` Python package; otherwise creates a private virtual environment in
.hyphae/tools (which works even where the system pip refuses to install packages) and installs uv from PyPI there.
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


def find_uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found]

        return str(find_uv_bin())
    except ImportError:
        pass
    binary = TOOLS / ("Scripts/uv.exe" if os.name == "nt" else "bin/uv")
    if not binary.exists():
        print("uv not found: installing it into .hyphae/tools (one time)...", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        python = TOOLS / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "uv"], check=True)
    return str(binary)


def main() -> None:
    uv = find_uv()
    os.chdir(ROOT)
    if os.name == "nt":
        raise SystemExit(subprocess.call([uv, *sys.argv[1:]]))
    os.execv(uv, [uv, *sys.argv[1:]])


if __name__ == "__main__":
    main()
