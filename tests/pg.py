"""A throwaway PostgreSQL server for the tests: Debian's `postgresql` package (`make test` installs it),
`initdb` into a temp folder, listening on a free loopback port, stopped and deleted afterwards.

PostgreSQL refuses to run as root: as root the cluster runs as the package's `postgres` user (or a
`docqa-pg` user created for it). Clients log in as `docqa` with a password (scram-sha-256), as a real
deployment would. The cluster runs with fsync off: it is deleted after the run, and durability is not
what these tests check (correctness across connections and processes is).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from tests.browser import free_port

USER = "docqa"
PASSWORD = "s3cret-pw-for-tests"


def pg_bindir() -> Path | None:
    """Where initdb and pg_ctl are: Debian keeps them in /usr/lib/postgresql/<major>/bin, off PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when the tests run as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "docqa-pg"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "docqa-pg"], check=True)
    return pwd.getpwnam("docqa-pg")


class Cluster:
    """`initdb`, `pg_ctl start`, databases made from a template, `pg_ctl stop`."""

    def __init__(self, root: Path | None = None, port: int | None = None, initdb_args: tuple[str, ...] = (),
                 **settings: str) -> None:
        bindir = pg_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: `make pg-deps` (or apt-get install postgresql)")
        self.bindir = bindir
        self.root = root or Path(tempfile.mkdtemp(prefix="docqa-pg-"))
        self.own_root = root is None
        self.data = self.root / "cluster"
        self.port = port or free_port()
        self.settings = {"fsync": "off", "full_page_writes": "off", "max_connections": "300",
                         "shared_buffers": "32MB", **settings}
        self.user = run_as()
        self.initdb_args = initdb_args
        self.started = False

    # -- life cycle -------------------------------------------------------------------------------------

    def _cmd(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        return subprocess.run([str(self.bindir / args[0]), *args[1:]], check=check, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, env={**os.environ, "LC_ALL": "C.UTF-8"}, **extra)

    def start(self) -> Cluster:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        self._cmd("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "--locale=C.UTF-8", *self.initdb_args)
        pwfile.unlink()
        conf = {"listen_addresses": "'127.0.0.1'", "port": str(self.port),
                "unix_socket_directories": f"'{self.root}'", **self.settings}
        with (self.data / "postgresql.conf").open("a") as fh:
            fh.writelines(f"{k} = {v}\n" for k, v in conf.items())
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.started = True
        return self

    def restart(self) -> None:
        """Start the stopped server again on the same data (and port)."""
        self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._cmd("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)
            self.started = False

    def kill(self) -> None:
        """Stop the server at once (immediate shutdown): clients see their connections refused."""
        self.stop("immediate")

    def remove(self) -> None:
        self.stop()
        if self.own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n:])
        return "(no log)"

    # -- databases ----------------------------------------------------------------------------------------

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str, database: str = "postgres") -> list[tuple[Any, ...]]:
        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, dbname=database,
                             autocommit=True) as conn:
            cur = conn.execute(sql)  # type: ignore[arg-type]  # test-built SQL
            return cur.fetchall() if cur.description else []

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        for attempt in range(20):  # a template still in use by a just-closed connection: try again
            try:
                self.admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
                return name
            except psycopg.errors.ObjectInUse:
                if attempt == 19:
                    raise
                time.sleep(0.1)
        raise AssertionError("unreachable")

    def drop_database(self, name: str) -> None:
        with contextlib.suppress(psycopg.Error):
            self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
