"""A real PostgreSQL server for tests and benchmarks, on a free 127.0.0.1 port.

Usage::

    with PgHarness() as pg:
        url = pg.create_database("t1")      # postgresql://postgres@127.0.0.1:<port>/t1
        ...

or, in pytest, the ``pg_server`` fixture below (session-scoped). The server gets its own
data directory from ``initdb`` in a fresh temporary directory; it is stopped and the
directory removed when the ``with`` block ends, whatever happens inside.

PostgreSQL refuses to run as root. When this process is root (CI containers, a fresh
Debian 12 machine running the project as root), initdb and the server are started as the
unprivileged ``postgres`` user that the Debian ``postgresql`` package creates (falling
back to ``nobody``), via ``subprocess``'s ``user=``/``group=`` (setuid in the child, no
``su``/``runuser``/PAM needed). The temporary directory is created under the system temp
directory, not under pytest's ``tmp_path``: pytest's base directory is private to root
(mode 0700), which the server user could not enter.

The binaries are found via ``$PG_BIN``, then the newest ``/usr/lib/postgresql/<v>/bin``
(Debian puts them there, off ``$PATH``), then ``$PATH``. Durability is switched off
(``fsync=off``): tests never survive a power cut, and it makes them much faster.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from harness.mosquitto import free_port

SUPERUSER = "postgres"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class PgHarnessError(RuntimeError):
    """PostgreSQL could not be found, initialised or started."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``."""
    env = os.environ.get("PG_BIN")
    if env:
        return Path(env)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    for candidate in reversed(versions):
        if (candidate / "initdb").exists():
            return candidate
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise PgHarnessError("PostgreSQL binaries not found: install postgresql or set PG_BIN")


def _run_as() -> tuple[str, str] | None:
    """(user, group) to run the server as, or None to run as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return name, grp.getgrgid(entry.pw_gid).gr_name
    raise PgHarnessError("running as root but there is no postgres or nobody user")


class PgHarness:
    """One PostgreSQL server in a temporary directory; see the module docstring."""

    def __init__(self, *, extra_settings: dict[str, str] | None = None) -> None:
        self.bin_dir = find_bin_dir()
        self.port = free_port()
        self.host = "127.0.0.1"
        self._settings = {
            "listen_addresses": self.host,
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            **(extra_settings or {}),
        }
        self._account = _run_as()
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        assert self._root is not None
        return self._root / "data"

    @property
    def log_path(self) -> Path:
        assert self._root is not None
        return self._root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        user, group = self._account if self._account else (None, None)
        return subprocess.run(
            args, user=user, group=group, extra_groups=[] if user else None,
            capture_output=True, check=False, cwd=self._root, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="pg-harness-"))
        if self._account:
            shutil.chown(self._root, *self._account)
        done = self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        if done.returncode != 0:
            raise PgHarnessError(f"initdb failed: {done.stderr.decode(errors='replace')}")
        args = [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        # The socket directory must be writable by the server user; the default
        # (/var/run/postgresql) may not exist or belong to another cluster.
        args += ["-k", str(self._root)]
        for key, value in self._settings.items():
            args += ["-c", f"{key}={value}"]
        user, group = self._account if self._account else (None, None)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                args, user=user, group=group, extra_groups=[] if user else None,
                stdout=log, stderr=subprocess.STDOUT, cwd=self._root,
            )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise PgHarnessError(f"postgres exited: {self.log_path.read_text()[-2000:]}")
            ready = self._run(
                str(self.bin_dir / "pg_isready"), "-h", self.host, "-p", str(self.port), "-q"
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise PgHarnessError(f"postgres not ready after {STARTUP_TIMEOUT_S}s")

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        done = self._run(
            str(self.bin_dir / "createdb"), "-h", self.host, "-p", str(self.port),
            "-U", SUPERUSER, name,
        )  # fmt: skip
        if done.returncode != 0:
            raise PgHarnessError(f"createdb {name}: {done.stderr.decode(errors='replace')}")
        return self.url(name)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: abort sessions, exit cleanly
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        root, self._root = self._root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
