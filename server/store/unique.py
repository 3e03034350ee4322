"""Turn a unique-constraint violation into the domain error the caller chose."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from server.errors import HyphaeError

UNIQUE_VIOLATION = "23505"


@contextlib.contextmanager
def unique_violation(error: HyphaeError) -> Iterator[None]:
    try:
        yield
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
            raise error from None
        raise
