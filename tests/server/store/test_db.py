"""server/store/db.py helpers that need no database."""

from __future__ import annotations

import logging

import psycopg
import pytest

from server.errors import Unavailable
from server.store.db import log_will_retry

log = logging.getLogger("hyphae.test")


@pytest.mark.parametrize(
    "error",
    [Unavailable("the database is unreachable; retry shortly"), psycopg.OperationalError("connection is bad\nmore")],
)
def test_a_lost_database_is_one_line_without_traceback(caplog: pytest.LogCaptureFixture, error: Exception) -> None:
    with caplog.at_level(logging.WARNING, "hyphae.test"):
        try:
            raise error
        except Exception:
            log_will_retry(log, "could not claim %s; will retry", "runs")
    [record] = caplog.records
    assert record.exc_info is None
    first_line = str(error).splitlines()[0]
    assert record.getMessage() == f"could not claim runs; will retry (database unreachable: {first_line})"


def test_other_failures_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "hyphae.test"):
        try:
            raise KeyError("bug")
        except Exception:
            log_will_retry(log, "could not fire schedules; will retry")
    [record] = caplog.records
    assert record.getMessage() == "could not fire schedules; will retry"
    assert record.exc_info is not None and record.exc_info[0] is KeyError
