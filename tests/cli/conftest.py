"""Fixtures of the process-level tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under /tmp and world-traversable: as root, the embedded Postgres runs as an unprivileged user.
    path = Path(tempfile.mkdtemp(prefix="hyphae-serve-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
