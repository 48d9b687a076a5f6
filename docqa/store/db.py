"""Engine, sessions, migrations and cross-process locks, for SQLite (the default) and PostgreSQL.

- SQLite runs in WAL mode with `synchronous=FULL`, foreign keys on and a busy timeout, set on every
  connection. One process only: its locks (`lock()`) are in-process locks.
- PostgreSQL (`postgresql+psycopg://…`, psycopg 3) may be shared by several docqa instances: `lock()`
  is a session-level advisory lock (`pg_advisory_lock(namespace, hashtext(name))`) held on a
  connection of its own, so it spans processes and hosts and is released when the holder dies.
  Claims read with `SELECT … FOR UPDATE SKIP LOCKED` (see worker.py) where SQLite takes its write
  lock up front (`immediate()`).
- The schema is created and upgraded only by Alembic (`migrate()`), the same migrations for both.
- Failures that are the operator's, not a bug, become sentences: a full disk is 507 (SQLite's
  SQLITE_FULL, PostgreSQL's SQLSTATE 53100 disk_full); a database server that
  refuses or drops the connection, is shutting down or out of connections or memory, is 503.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from docqa.errors import DatabaseUnavailable, StorageFull

SQLITE_FULL = 13  # "database or disk is full"
PG_DISK_FULL = {"53100"}  # disk_full
# 08xxx connection exceptions; 53xxx other insufficient resources (out of memory, too many connections);
# 57P01-57P03 admin or crash shutdown, cannot connect now
PG_UNAVAILABLE_PREFIXES = ("08", "53", "57P0")

# Advisory-lock namespaces (the first key of pg_advisory_lock(int, int)).
LOCK_NAMESPACES = {"blob": 7101, "worker": 7102, "migrate": 7103}

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DISK_FULL = ("The server's disk is full: nothing was saved. Try again later or ask the operator to free space.")
UNAVAILABLE = ("The database server cannot be reached right now: nothing was changed. Try again in a moment, "
               "or ask the operator to check the database.")


def alembic_config(url: str) -> Config:
    cfg = Config(str(PROJECT_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


def migrate(url: str) -> None:
    """Upgrade the database at `url` to the newest schema. On PostgreSQL several instances may start at
    once: an advisory lock lets one migrate while the others wait, then find the schema at head."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if not is_postgres(url):
        command.upgrade(alembic_config(url), "head")
        return
    engine = make_engine(url)
    try:
        with _storage_errors(), engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:ns, 0)"), {"ns": LOCK_NAMESPACES["migrate"]})
            conn.commit()
            try:
                command.upgrade(alembic_config(url), "head")
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, 0)"), {"ns": LOCK_NAMESPACES["migrate"]})
                conn.commit()
    finally:
        engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def make_engine(url: str, **pool: int) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    options: dict[str, object] = {"pool_size": 10, "max_overflow": 20, **pool}
    if is_postgres(url):
        options["connect_args"] = {"connect_timeout": 5, "application_name": "docqa"}
    return create_engine(url, pool_pre_ping=True, **options)


def public_url(url: str) -> str:
    """The URL without its password and without query parameters (for health and logs): a query may carry
    `password=`, `sslpassword=`, `sslkey=` or other connection secrets."""
    parsed = make_url(url)
    parsed = parsed._replace(password=None).difference_update_query(list(parsed.query))
    return parsed.render_as_string(hide_password=False)


class Database:
    """The engine and a session factory; `with db.transaction() as s:` commits or rolls back."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name
        self.shared = self.dialect == "postgresql"  # several processes may use it at once
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Advisory locks live on connections of their own, from a pool that never makes a waiter wait for
        # a connection (a lock holder must always get one for its transaction).
        self._lock_engine = make_engine(url, pool_size=2, max_overflow=-1) if self.shared else None
        self._local_locks = {ns: threading.Lock() for ns in LOCK_NAMESPACES}

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with _storage_errors(), self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def immediate(self) -> Iterator[Session]:
        """A write transaction for claim-then-update sequences (job leases). SQLite takes its write lock up
        front (`BEGIN IMMEDIATE`), so what it reads cannot change before it writes, across threads and
        processes. PostgreSQL gets an ordinary transaction: its callers lock the rows they read
        (`with_for_update(skip_locked=True)`)."""
        with _storage_errors(), self._sessions() as session:
            if self.dialect == "sqlite":
                session.connection().exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with _storage_errors(), self._sessions() as session:
            yield session

    # -- locks across processes ----------------------------------------------------------------------

    @contextmanager
    def lock(self, namespace: str, name: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the lock `name` of `namespace` for the block; yields False (not held) when `wait` is False
        and someone else holds it. PostgreSQL: an advisory lock, across every instance on the database;
        SQLite: one in-process lock per namespace (SQLite serves one process)."""
        if self._lock_engine is None:
            local = self._local_locks[namespace]
            got = local.acquire(blocking=wait)
            try:
                yield got
            finally:
                if got:
                    local.release()
            return
        with _storage_errors(), self._lock_engine.connect() as conn:
            got = _advisory(conn, "pg_advisory_lock" if wait else "pg_try_advisory_lock", namespace, name)
            try:
                yield got
            finally:
                if got:
                    try:
                        _advisory(conn, "pg_advisory_unlock", namespace, name)
                    except Exception:  # noqa: BLE001 - never return a connection still holding the lock
                        conn.invalidate()

    def hold(self, namespace: str, name: str) -> Connection | None:
        """Take the lock for as long as the process lives (until `release`): a liveness marker others can
        test with `held_elsewhere`. None on SQLite."""
        if self._lock_engine is None:
            return None
        with _storage_errors():
            conn = self._lock_engine.connect()
            _advisory(conn, "pg_advisory_lock", namespace, name)
        return conn

    @staticmethod
    def release(conn: Connection | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):  # a connection already broken has lost its locks anyway
                conn.invalidate()  # closing the session drops its advisory locks
                conn.close()

    def held_elsewhere(self, namespace: str, name: str) -> bool | None:
        """True when another session holds the lock (its holder is alive); None on SQLite (cannot tell)."""
        if self._lock_engine is None:
            return None
        with _storage_errors(), self._lock_engine.connect() as conn:
            got = _advisory(conn, "pg_try_advisory_lock", namespace, name)
            if got:
                _advisory(conn, "pg_advisory_unlock", namespace, name)
            return not got

    # -- health ---------------------------------------------------------------------------------------

    def ping(self) -> float:
        """Seconds a `SELECT 1` round trip takes; raises DatabaseUnavailable when the database does not answer."""
        t0 = time.perf_counter()
        with self.reader() as s:
            s.execute(text("SELECT 1"))
        return time.perf_counter() - t0

    @property
    def public_url(self) -> str:
        return public_url(self.url)

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lock_engine is not None:
            self._lock_engine.dispose()


def _advisory(conn: Connection, fn: str, namespace: str, name: str) -> bool:
    """Run pg_advisory_lock / pg_try_advisory_lock / pg_advisory_unlock; False only when a try failed."""
    value = conn.execute(text(f"SELECT {fn}(:ns, hashtext(:name))"),
                         {"ns": LOCK_NAMESPACES[namespace], "name": name}).scalar()
    conn.commit()  # end the implicit transaction; session-level advisory locks outlive it
    return value is not False


def _sqlstate(exc: DBAPIError) -> str:
    return str(getattr(exc.orig, "sqlstate", None) or getattr(getattr(exc.orig, "diag", None), "sqlstate", "") or "")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A write that fails because the disk is full is the operator's problem, not a bug: 507 with a
    sentence (the transaction was rolled back, so nothing was half-written). A database server that cannot be
    reached is 503 with a sentence."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlite_errorcode", None) == SQLITE_FULL or _sqlstate(exc) in PG_DISK_FULL:
            raise StorageFull(DISK_FULL) from exc
        state = _sqlstate(exc)
        if state.startswith(PG_UNAVAILABLE_PREFIXES) or (
            isinstance(exc, OperationalError) and exc.connection_invalidated
        ) or (isinstance(exc, OperationalError) and not state and _is_psycopg(exc)):
            raise DatabaseUnavailable(UNAVAILABLE, retry_after=5) from exc
        raise


def _is_psycopg(exc: DBAPIError) -> bool:
    return type(exc.orig).__module__.startswith("psycopg")
